"""Chain keys at rest: encryption round trip, wrong secrets, and what is actually stored."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import select
from sqlalchemy.orm import Session

from parkgrid.crypto import KeyBox, KeyDecryptionError, load_local_account, new_chain_account
from parkgrid.models import ChainAccount, Enterprise, Feeder, Park, Substation, Transformer

SECRET = "test-platform-secret-0123456789"


def test_round_trip() -> None:
    box = KeyBox(SECRET)
    raw = bytes(range(32))
    blob = box.encrypt(raw)
    assert raw not in blob
    assert box.decrypt(blob) == raw
    assert KeyBox(SECRET).decrypt(blob) == raw  # same secret, new instance: same derived key
    assert box.encrypt(raw) != blob  # random IV per encryption


def test_wrong_secret_fails_clearly() -> None:
    blob = KeyBox(SECRET).encrypt(b"k" * 32)
    with pytest.raises(KeyDecryptionError, match="platform secret"):
        KeyBox(SECRET + "x").decrypt(blob)


def test_damaged_blob_fails_clearly() -> None:
    blob = bytearray(KeyBox(SECRET).encrypt(b"k" * 32))
    blob[40] ^= 1
    with pytest.raises(KeyDecryptionError):
        KeyBox(SECRET).decrypt(bytes(blob))


def test_empty_secret_is_refused_and_repr_hides_it() -> None:
    with pytest.raises(ValueError):
        KeyBox("")
    assert SECRET not in repr(KeyBox(SECRET))


def _enterprise(session: Session) -> Enterprise:
    park = Park(code="P", name="园区")
    feeder = Feeder(
        code="F1",
        name="一线",
        thermal_limit_kva=Decimal(5000),
        transformer=Transformer(
            code="T1",
            name="1号主变",
            rated_kva=Decimal(31500),
            max_load_rate=Decimal("0.8"),
            substation=Substation(park=park, code="S1", name="站", voltage_kv=Decimal(110)),
        ),
    )
    enterprise = Enterprise(
        park=park, feeder=feeder, code="E1", name="企业", contracted_kva=Decimal(800)
    )
    session.add(enterprise)
    return enterprise


def test_new_account_stores_only_the_encrypted_key(db_session: Session) -> None:
    box = KeyBox(SECRET)
    enterprise = _enterprise(db_session)
    account = new_chain_account(db_session, box, "enterprise", enterprise=enterprise)
    db_session.commit()
    assert enterprise.chain_account is account and account.enterprise is enterprise

    db_session.expire_all()
    stored = db_session.scalar(select(ChainAccount))
    local = load_local_account(box, stored)
    raw = bytes(local.key)
    assert local.address == stored.address and len(stored.address) == 42
    assert raw not in stored.encrypted_key
    assert raw.hex().encode() not in stored.encrypted_key
    assert raw.hex() not in repr(stored) and "encrypted_key" not in repr(stored)

    # The loaded account really signs as the stored address.
    signed = local.sign_message(encode_defunct(text="parkgrid"))
    recovered = Account.recover_message(encode_defunct(text="parkgrid"), signature=signed.signature)
    assert recovered == stored.address

    with pytest.raises(KeyDecryptionError):
        load_local_account(KeyBox("another secret"), stored)


def test_a_key_that_does_not_match_its_address_is_rejected(db_session: Session) -> None:
    box = KeyBox(SECRET)
    first = new_chain_account(db_session, box, "operator")
    second = new_chain_account(db_session, box, "staff")
    assert first.address != second.address
    first.encrypted_key = second.encrypted_key
    with pytest.raises(KeyDecryptionError, match="does not belong"):
        load_local_account(box, first)


def test_purpose_is_validated(db_session: Session) -> None:
    box = KeyBox(SECRET)
    with pytest.raises(ValueError, match="purpose"):
        new_chain_account(db_session, box, "treasury")
    with pytest.raises(ValueError, match="needs its enterprise"):
        new_chain_account(db_session, box, "enterprise")
