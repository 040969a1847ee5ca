"""The demo park: deterministic from its seed, realistic in shape, and loaded exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from parkgrid.crypto import KeyBox, load_local_account
from parkgrid.demo import DEMO_LOGINS, DEMO_SEED, generate_demo_park, load_demo_park
from parkgrid.models import (
    ChainAccount,
    Electrician,
    Enterprise,
    Feeder,
    MeteringPoint,
    Park,
    Provider,
    Transformer,
    User,
)

TODAY = date(2026, 11, 23)
SEEDS = (DEMO_SEED, 1, 2, 3, 17, 99, 2024, 31337)


def test_same_seed_gives_identical_data() -> None:
    assert generate_demo_park(today=TODAY) == generate_demo_park(DEMO_SEED, today=TODAY)
    assert generate_demo_park(5, today=TODAY) != generate_demo_park(6, today=TODAY)


def test_identical_in_another_process_with_other_hash_seed() -> None:
    # String hashing is randomised per process; the generator must not depend on it.
    code = (
        "from datetime import date; from parkgrid.demo import generate_demo_park; "
        "print(repr(generate_demo_park(today=date(2026, 11, 23))))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == repr(generate_demo_park(today=TODAY))


@pytest.mark.parametrize("seed", SEEDS)
def test_counts_are_in_the_stated_ranges(seed: int) -> None:
    demo = generate_demo_park(seed, today=TODAY)
    assert demo.code == "DEMO" and demo.name == "示范产业园"
    assert demo.substation.voltage_kv == Decimal(110)
    assert [t.rated_kva for t in demo.transformers] == [
        Decimal(31500),
        Decimal(40000),
        Decimal(50000),
        Decimal(63000),
    ]
    # One transformer is derated so that bids behind it meet congestion at the peak.
    rates = sorted(t.max_load_rate for t in demo.transformers)
    assert rates[1:] == [Decimal("0.80")] * 3 and Decimal("0.3") < rates[0] < Decimal("0.80")
    assert all(3 <= len(t.feeders) <= 4 for t in demo.transformers)
    assert 55 <= len(demo.enterprises) <= 65
    assert all(1 <= len(e.metering_points) <= 3 for e in demo.enterprises)

    codes = [e.code for e in demo.enterprises]
    names = [e.name for e in demo.enterprises]
    meters = [m.code for e in demo.enterprises for m in e.metering_points]
    assert len(set(codes)) == len(codes) and len(set(names)) == len(names)
    assert len(set(meters)) == len(meters)
    assert all(name.endswith("公司") for name in names)

    assert len(demo.providers) == 5
    assert Counter(p.alliance for p in demo.providers) == {
        "shared_electricians": 3,
        "energy_cloud_butler": 2,
    }
    for provider in demo.providers:
        assert 3 <= provider.licence_level <= 5
        assert provider.licence_expiry.year == TODAY.year + 1
        assert 10 <= len(provider.electricians) <= 14
        for electrician in provider.electricians:
            assert electrician.certificate_expiry > TODAY
            assert electrician.certificate_type in electrician.skills
            assert abs(electrician.home_lat - Decimal("31.3")) < Decimal("0.2")


@pytest.mark.parametrize("seed", SEEDS)
def test_contracted_capacity_is_skewed_and_fits_the_grid(seed: int) -> None:
    demo = generate_demo_park(seed, today=TODAY)
    sizes = [e.contracted_kva for e in demo.enterprises]
    small = [s for s in sizes if Decimal(315) <= s <= Decimal(2500)]
    large = [s for s in sizes if Decimal(5000) <= s <= Decimal(12500)]
    assert len(small) + len(large) == len(sizes)
    assert 3 <= len(large) <= 10 and len(small) >= 4 * len(large)

    by_transformer = demo.contracted_kva_by_transformer()
    by_feeder = demo.contracted_kva_by_feeder()
    for transformer in demo.transformers:
        # Sum of contracts against the rating: enough that trading can make the transformer
        # bind (its allowed load is 80 %), not so much that the base load alone breaks it.
        ratio = by_transformer[transformer.code] / transformer.rated_kva
        assert Decimal("0.45") <= ratio <= Decimal("1.0"), (transformer.code, ratio)
        limits = [f.thermal_limit_kva for f in transformer.feeders]
        assert all(limit < transformer.rated_kva for limit in limits)
        assert sum(limits) >= transformer.allowed_kva
        for feeder in transformer.feeders:
            assert by_feeder[feeder.code] <= feeder.thermal_limit_kva
    first, second = demo.enterprises[:2]
    assert demo.transformer_of(first) != demo.transformer_of(second)


def test_users_match_the_published_logins() -> None:
    demo = generate_demo_park(today=TODAY)
    assert [(u.role, u.username, u.password) for u in demo.users] == DEMO_LOGINS
    users = {u.username: u for u in demo.users}
    assert users["enterprise"].enterprise_code == demo.enterprises[0].code
    assert users["enterprise2"].enterprise_code == demo.enterprises[1].code
    assert users["provider"].provider_code == demo.providers[0].code


def _count(session: Session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_loads_into_sqlite_once(db_session: Session) -> None:
    demo = generate_demo_park(today=TODAY)
    keybox = KeyBox("demo-test-secret")
    steps: list[tuple[str, int]] = []
    counts = load_demo_park(db_session, keybox, demo, progress=lambda s, n: steps.append((s, n)))
    db_session.commit()

    n_meters = sum(len(e.metering_points) for e in demo.enterprises)
    n_electricians = sum(len(p.electricians) for p in demo.providers)
    assert counts == {
        "parks": 1,
        "substations": 1,
        "transformers": 4,
        "feeders": len(demo.feeders),
        "enterprises": len(demo.enterprises),
        "metering_points": n_meters,
        "providers": 5,
        "electricians": n_electricians,
        "chain_accounts": len(demo.enterprises) + 1,
        "users": len(DEMO_LOGINS),
        "already_loaded": 0,
    }
    assert sum(n for _, n in steps) == len(demo.enterprises) + len(demo.providers) + len(demo.users)
    for model, key in [
        (Park, "parks"),
        (Transformer, "transformers"),
        (Feeder, "feeders"),
        (Enterprise, "enterprises"),
        (MeteringPoint, "metering_points"),
        (Provider, "providers"),
        (Electrician, "electricians"),
        (ChainAccount, "chain_accounts"),
        (User, "users"),
    ]:
        assert _count(db_session, model) == counts[key], key

    db_session.expire_all()
    for role, username, password in DEMO_LOGINS:
        user = db_session.scalar(select(User).where(User.username == username))
        assert user.role == role and user.check_password(password)
        assert not user.check_password(password + "x")
    assert (
        db_session.scalar(select(User).where(User.username == "enterprise")).enterprise.code
        == "E001"
    )
    assert db_session.scalar(select(User).where(User.username == "provider")).provider.code == "P01"

    enterprises = db_session.scalars(select(Enterprise).order_by(Enterprise.code)).all()
    for enterprise in enterprises:
        account = enterprise.chain_account
        assert account.purpose == "enterprise" and account.enterprise is enterprise
        assert enterprise.supply_path()[-1].code == "S1"
    assert load_local_account(keybox, enterprises[0].chain_account).address == (
        enterprises[0].chain_account.address
    )
    operators = db_session.scalars(select(ChainAccount).where(ChainAccount.purpose == "operator"))
    assert len(operators.all()) == 1
    for electrician in db_session.scalars(select(Electrician)):
        assert electrician.certificate_type in electrician.skill_list
    assert db_session.scalar(select(Provider).order_by(Provider.code)).status == "approved"

    # Second load: nothing added, and it says so.
    again = load_demo_park(db_session, keybox, generate_demo_park(today=TODAY))
    db_session.commit()
    assert again["already_loaded"] == 1
    assert all(v == 0 for k, v in again.items() if k != "already_loaded")
    assert _count(db_session, Enterprise) == len(demo.enterprises)
    assert _count(db_session, ChainAccount) == len(demo.enterprises) + 1
    assert _count(db_session, User) == len(DEMO_LOGINS)


def test_alliance_extras_give_sites_and_custody_contracts(db_session: Session, tmp_path) -> None:
    from datetime import UTC, datetime

    from parkgrid.demo import load_demo_alliance
    from parkgrid.models import OmContract
    from parkgrid.storage import FileStorage

    demo = generate_demo_park(today=TODAY)
    assert [c.frequency for c in demo.alliance.contracts] == ["weekly", "daily"]
    butlers = {p.code for p in demo.providers if p.alliance == "energy_cloud_butler"}
    assert {c.provider_code for c in demo.alliance.contracts} == butlers
    load_demo_park(db_session, KeyBox("demo-test-secret"), demo)
    counts = load_demo_alliance(db_session, FileStorage(tmp_path / "files"), demo,
                                now=datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    db_session.commit()
    assert counts["sites"] == len(demo.enterprises) and counts["contracts"] == 2
    for enterprise in db_session.scalars(select(Enterprise)):
        assert abs(enterprise.site_lat - Decimal("31.3")) < Decimal("0.05")
        assert abs(enterprise.site_lon - Decimal("120.7")) < Decimal("0.05")
    contracts = db_session.scalars(select(OmContract).order_by(OmContract.code)).all()
    assert len(contracts) == 2
    for contract in contracts:
        assert contract.provider.code in butlers and contract.active
        assert contract.starts_on == TODAY.replace(day=1) and contract.ends_on is None
        assert 3 <= len(contract.items) <= 5
        site = (contract.enterprise.site_lat, contract.enterprise.site_lon)
        for item in contract.items:
            assert abs(item.lat - site[0]) < Decimal("0.001")
            assert abs(item.lon - site[1]) < Decimal("0.001")
    again = load_demo_alliance(db_session, FileStorage(tmp_path / "files"), demo)
    assert again["already_loaded"] == 1 and again["contracts"] == 0
