"""Chain private keys encrypted at rest with a key derived from the platform secret."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session

from parkgrid.models import AccountPurpose, ChainAccount, Enterprise, User

# Fixed labels: changing either makes every stored key unreadable, so they are versioned.
_HKDF_SALT = b"parkgrid/keybox/salt/v1"
_HKDF_INFO = b"parkgrid/keybox/chain-account-keys/v1"


class KeyDecryptionError(Exception):
    """A stored key could not be decrypted: wrong platform secret or a damaged blob."""


class KeyBox:
    """Encrypts and decrypts private keys with a Fernet key derived from the platform secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("KeyBox needs a non-empty platform secret")
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO
        ).derive(secret.encode("utf-8"))
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, raw: bytes) -> bytes:
        return self._fernet.encrypt(raw)

    def decrypt(self, blob: bytes) -> bytes:
        try:
            return self._fernet.decrypt(blob)
        except InvalidToken:
            # Fernet cannot tell a wrong key from tampering; both mean "not with this secret".
            raise KeyDecryptionError(
                "cannot decrypt a stored chain key: the platform secret differs from the one "
                "it was encrypted with, or the stored value is damaged"
            ) from None

    def __repr__(self) -> str:
        return "<KeyBox>"


def new_chain_account(
    session: Session,
    keybox: KeyBox,
    purpose: str,
    enterprise: Enterprise | None = None,
    user: User | None = None,
) -> ChainAccount:
    """A fresh Ethereum account, added to ``session`` with only its encrypted key.

    An ``enterprise`` account becomes that enterprise's ``chain_account``.
    """
    if purpose not in AccountPurpose.ALL:
        raise ValueError(f"purpose must be one of {AccountPurpose.ALL}, not {purpose!r}")
    if purpose == AccountPurpose.ENTERPRISE and enterprise is None:
        raise ValueError("an enterprise chain account needs its enterprise")
    local = Account.create()
    account = ChainAccount(
        address=local.address,
        encrypted_key=keybox.encrypt(bytes(local.key)),
        purpose=purpose,
        enterprise=enterprise,
        user=user,
    )
    session.add(account)
    if purpose == AccountPurpose.ENTERPRISE and enterprise is not None:
        enterprise.chain_account = account
    return account


def load_local_account(keybox: KeyBox, chain_account: ChainAccount) -> LocalAccount:
    """The signing account for a stored chain account; checks the key matches the address."""
    local = Account.from_key(keybox.decrypt(chain_account.encrypted_key))
    if local.address != chain_account.address:
        raise KeyDecryptionError(
            f"stored key of chain account {chain_account.id} does not belong to its address"
        )
    return local
