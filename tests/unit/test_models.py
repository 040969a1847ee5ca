"""The mapped schema: constraints the database enforces, supply paths, passwords and tokens."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from parkgrid.models import (
    ApiToken,
    AuditLogEntry,
    ChainAccount,
    ChainStatus,
    Enterprise,
    Feeder,
    MeteringPoint,
    Order,
    OrderAction,
    OrderActionKind,
    OrderPeriod,
    OrderSide,
    OrderStatus,
    Park,
    Provider,
    Role,
    Substation,
    TaskRun,
    Transformer,
    User,
)

CST = ZoneInfo("Asia/Shanghai")


def build_topology(session: Session) -> Enterprise:
    park = Park(code="P1", name="测试园区")
    substation = Substation(park=park, code="S1", name="1号站", voltage_kv=Decimal("110"))
    transformer = Transformer(
        substation=substation,
        code="T1",
        name="1号主变",
        rated_kva=Decimal("40000"),
        max_load_rate=Decimal("0.8"),
    )
    feeder = Feeder(
        transformer=transformer, code="F1", name="一线", thermal_limit_kva=Decimal("12000")
    )
    enterprise = Enterprise(
        park=park, feeder=feeder, code="E1", name="企业一", contracted_kva=Decimal("1250")
    )
    session.add(enterprise)
    session.flush()
    return enterprise


def test_defaults_and_exact_types(db_session: Session) -> None:
    enterprise = build_topology(db_session)
    db_session.add(MeteringPoint(enterprise=enterprise, code="M1", name="计量点"))
    db_session.commit()
    db_session.expire_all()

    park = db_session.scalar(select(Park))
    assert park.timezone == "Asia/Shanghai"
    assert park.gate_closure_time.hour == 12 and park.gate_closure_time.minute == 0
    assert park.period_minutes == 60 and park.periods_per_day == 24
    transformer = db_session.scalar(select(Transformer))
    assert isinstance(transformer.rated_kva, Decimal)
    assert transformer.rated_kva == Decimal("40000.0")
    assert transformer.max_load_rate == Decimal("0.8000")
    assert transformer.allowed_kva == Decimal("32000")
    assert db_session.scalar(select(MeteringPoint)).multiplier == Decimal(1)
    created = db_session.scalar(select(Enterprise)).created_at
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)


def test_supply_path_runs_from_enterprise_up_to_substation(db_session: Session) -> None:
    enterprise = build_topology(db_session)
    path = enterprise.supply_path()
    assert [type(asset).__name__ for asset in path] == [
        "Enterprise",
        "Feeder",
        "Transformer",
        "Substation",
    ]
    assert [asset.code for asset in path] == ["E1", "F1", "T1", "S1"]
    assert enterprise.transformer is path[2]
    assert enterprise.substation is path[3]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rated_kva", Decimal(0)),
        ("rated_kva", Decimal(-100)),
        ("max_load_rate", Decimal(0)),
        ("max_load_rate", Decimal("1.0001")),
        ("max_load_rate", Decimal("-0.5")),
    ],
)
def test_transformer_limits_are_checked(db_session: Session, field: str, value: Decimal) -> None:
    enterprise = build_topology(db_session)
    setattr(enterprise.transformer, field, value)
    with pytest.raises(IntegrityError, match="ck_transformers_"):
        db_session.flush()


@pytest.mark.parametrize("rate", [Decimal(1), Decimal("0.0001"), Decimal("0.8")])
def test_transformer_load_rate_bounds_are_inclusive_at_one(db_session: Session, rate) -> None:
    enterprise = build_topology(db_session)
    enterprise.transformer.max_load_rate = rate
    db_session.flush()


@pytest.mark.parametrize(
    ("obj", "field"),
    [("enterprise", "contracted_kva"), ("feeder", "thermal_limit_kva")],
)
def test_capacities_must_be_positive(db_session: Session, obj: str, field: str) -> None:
    enterprise = build_topology(db_session)
    target = enterprise if obj == "enterprise" else enterprise.feeder
    setattr(target, field, Decimal(0))
    with pytest.raises(IntegrityError, match="_positive"):
        db_session.flush()


@pytest.mark.parametrize(
    ("minutes", "ok"), [(15, True), (30, True), (60, True), (45, False), (20, False), (120, False)]
)
def test_period_length_divides_the_hour(db_session: Session, minutes: int, ok: bool) -> None:
    db_session.add(Park(code="X", name="x", period_minutes=minutes))
    if ok:
        db_session.flush()
    else:
        with pytest.raises(IntegrityError, match="period_minutes_valid"):
            db_session.flush()


def _user(role: str, **kw) -> User:
    user = User(username=f"u-{role}", display_name="测试", role=role, **kw)
    user.set_password("pw")
    return user


@pytest.mark.parametrize(
    ("role", "bind_enterprise", "bind_provider", "constraint"),
    [
        (Role.ENTERPRISE, False, False, "enterprise_binding"),
        (Role.ADMIN, True, False, "enterprise_binding"),
        (Role.SETTLEMENT, True, False, "enterprise_binding"),
        (Role.PROVIDER, False, False, "provider_binding"),
        (Role.AUDITOR, False, True, "provider_binding"),
        (Role.ENTERPRISE, True, True, "provider_binding"),
        ("superuser", False, False, "role_valid"),
    ],
)
def test_role_binding_is_enforced(
    db_session: Session, role: str, bind_enterprise: bool, bind_provider: bool, constraint: str
) -> None:
    enterprise = build_topology(db_session)
    provider = Provider(code="PR1", name="服务商", alliance="shared_electricians")
    db_session.add(provider)
    db_session.add(
        _user(
            role,
            enterprise=enterprise if bind_enterprise else None,
            provider=provider if bind_provider else None,
        )
    )
    with pytest.raises(IntegrityError, match=constraint):
        db_session.flush()


def test_valid_role_bindings_are_accepted(db_session: Session) -> None:
    enterprise = build_topology(db_session)
    provider = Provider(code="PR1", name="服务商", alliance="energy_cloud_butler", licence_level=5)
    db_session.add_all(
        [
            _user(Role.ENTERPRISE, enterprise=enterprise),
            _user(Role.PROVIDER, provider=provider),
            _user(Role.SETTLEMENT),
            _user(Role.AUDITOR),
            _user(Role.ADMIN),
        ]
    )
    db_session.flush()
    assert set(db_session.scalars(select(User.role))) == set(Role.ALL)
    assert provider.status == "applied"


@pytest.mark.parametrize(
    ("alliance", "level"),
    [("electricians_club", 3), ("shared_electricians", 0), ("shared_electricians", 6)],
)
def test_provider_alliance_and_licence_level_are_checked(db_session, alliance, level) -> None:
    db_session.add(Provider(code="PR1", name="x", alliance=alliance, licence_level=level))
    with pytest.raises(IntegrityError, match="ck_providers_"):
        db_session.flush()


def test_password_is_stored_as_scrypt_hash(db_session: Session) -> None:
    user = _user(Role.ADMIN)
    user.set_password("correct horse")
    assert user.password_hash.startswith("scrypt:")
    assert "correct horse" not in user.password_hash
    assert user.check_password("correct horse")
    assert not user.check_password("correct horse ")
    assert not user.check_password("")
    first = user.password_hash
    user.set_password("correct horse")
    assert user.password_hash != first  # salted


def test_api_token_stores_only_the_sha256_of_the_token(db_session: Session) -> None:
    user = _user(Role.ADMIN)
    db_session.add(user)
    token, plaintext = ApiToken.issue(user, "laptop", ttl=timedelta(days=30))
    db_session.add(token)
    db_session.flush()

    assert len(plaintext) >= 40
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert ApiToken.hash_token("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert plaintext not in token.token_hash
    found = db_session.scalar(
        select(ApiToken).where(ApiToken.token_hash == ApiToken.hash_token(plaintext))
    )
    assert found is token and found.user is user
    assert token.expires_at - token.created_at == timedelta(days=30)
    assert token.is_usable()
    assert not token.is_usable(now=token.created_at + timedelta(days=31))
    token.revoked = True
    assert not token.is_usable()

    other, other_plain = ApiToken.issue(user, "ci")
    assert other_plain != plaintext and other.expires_at is None


def test_timestamps_must_be_aware_and_come_back_in_utc(db_session: Session) -> None:
    at = datetime(2026, 11, 23, 20, 30, tzinfo=CST)
    db_session.add(AuditLogEntry(action="test", created_at=at))
    db_session.commit()
    db_session.expire_all()
    stored = db_session.scalar(select(AuditLogEntry)).created_at
    assert stored == at and stored.tzinfo == UTC and stored.hour == 12

    db_session.add(AuditLogEntry(action="naive", created_at=datetime(2026, 11, 23, 12, 0)))
    with pytest.raises(StatementError, match="naive datetime"):
        db_session.flush()


def _order(enterprise: Enterprise, user: User, **kw) -> Order:
    values = dict(
        enterprise=enterprise,
        created_by=user,
        side=OrderSide.SELL,
        delivery_day=date(2026, 11, 24),
        price=Decimal("0.0350"),
        content_hash="0x" + "ab" * 32,
    )
    values.update(kw)
    return Order(**values)


def test_order_defaults_periods_actions_and_cascade(db_session: Session) -> None:
    enterprise = build_topology(db_session)
    user = _user(Role.ENTERPRISE, enterprise=enterprise)
    db_session.add(user)
    db_session.flush()
    order = _order(
        enterprise,
        user,
        periods=[
            OrderPeriod(period_index=9, quantity_kva=Decimal("200.0")),
            OrderPeriod(period_index=8, quantity_kva=Decimal("150.5")),
        ],
        actions=[OrderAction(version=1, action=OrderActionKind.NEW,
                             content_hash="0x" + "ab" * 32, document="{}",
                             requested_by_id=user.id)],
    )
    assert len(order.public_id) == 36  # known before the row is written
    db_session.add(order)
    db_session.commit()
    db_session.expire_all()

    order = db_session.scalar(select(Order))
    assert (order.status, order.chain_status) == (OrderStatus.ACTIVE, ChainStatus.PENDING)
    assert order.all_or_none is False and order.version == 1 and order.chain_version == 0
    assert [p.period_index for p in order.periods] == [8, 9]
    assert order.price == Decimal("0.0350")
    assert [a.chain_status for a in order.actions] == [ChainStatus.PENDING]
    db_session.delete(order)
    db_session.flush()
    assert db_session.scalar(select(OrderPeriod)) is None
    assert db_session.scalar(select(OrderAction)) is None


@pytest.mark.parametrize(
    ("kwargs", "periods", "constraint"),
    [
        ({"status": "maybe"}, [(0, "1")], "ck_orders_status_valid"),
        ({"side": "swap"}, [(0, "1")], "ck_orders_side_valid"),
        ({"price": Decimal(0)}, [(0, "1")], "ck_orders_price_positive"),
        ({"min_fraction": Decimal("1.5")}, [(0, "1")], "ck_orders_min_fraction"),
        ({"version": 1, "chain_version": 2}, [(0, "1")], "ck_orders_versions"),
        ({}, [(0, "0")], "ck_order_periods_quantity_kva_positive"),
        ({}, [(-1, "5")], "ck_order_periods_period_index_nonnegative"),
        ({}, [(3, "5"), (3, "6")], "UNIQUE"),
    ],
)
def test_order_constraints(db_session: Session, kwargs, periods, constraint) -> None:
    enterprise = build_topology(db_session)
    user = _user(Role.ENTERPRISE, enterprise=enterprise)
    db_session.add(
        _order(
            enterprise,
            user,
            **kwargs,
            periods=[OrderPeriod(period_index=i, quantity_kva=Decimal(q)) for i, q in periods],
        )
    )
    with pytest.raises(IntegrityError, match=constraint):
        db_session.flush()


def test_task_runs_are_unique_per_name_and_key(db_session: Session) -> None:
    db_session.add(TaskRun(task_name="record_order", key="42"))
    db_session.add(TaskRun(task_name="record_order", key="43"))
    db_session.add(TaskRun(task_name="other", key="42"))
    db_session.flush()
    db_session.add(TaskRun(task_name="record_order", key="42", status="done"))
    with pytest.raises(IntegrityError, match="UNIQUE"):
        db_session.flush()


def test_chain_account_address_is_checksummed_and_key_never_shown(db_session) -> None:
    address = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
    account = ChainAccount(address=address, encrypted_key=b"secret-blob", purpose="operator")
    assert account.address == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert "secret-blob" not in repr(account) and account.address in repr(account)
    with pytest.raises(ValueError, match="checksum"):
        ChainAccount(
            address="0x5AAeb6053f3e94c9b9a09f33669435e7ef1beaed",
            encrypted_key=b"",
            purpose="operator",
        )
    with pytest.raises(ValueError, match="not an Ethereum address"):
        ChainAccount(address="0x1234", encrypted_key=b"", purpose="operator")
    db_session.add(ChainAccount(address="0x" + "11" * 20, encrypted_key=b"x", purpose="enterprise"))
    with pytest.raises(IntegrityError, match="enterprise_account_bound"):
        db_session.flush()
