"""Relational mapping of the park, its parties, chain accounts, listings and bookkeeping rows."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from eth_utils import is_checksum_address, is_hex_address, to_checksum_address
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    Time,
    UniqueConstraint,
    event,
    false,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator
from werkzeug.security import check_password_hash, generate_password_hash

from alliance.lifecycle import ACTIVE_STATUSES as CORE_ACTIVE_STATUSES
from alliance.lifecycle import JobKind as CoreJobKind
from alliance.lifecycle import JobStatus as CoreJobStatus
from parkgrid.db import Base

# Exact decimal shapes: kVA to 0.1, load rates like 0.8000, prices to 0.0001 yuan.
KVA = Numeric(12, 1)
LOAD_RATE = Numeric(5, 4)
PRICE = Numeric(12, 4)
COORDINATE = Numeric(9, 6)


def utcnow() -> datetime:
    """The current instant, timezone-aware in UTC (the only form timestamps are stored in)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that accepts only aware values and always returns UTC.

    SQLite has no timezone-aware type, so values are normalised to UTC before they are
    written (keeping text order equal to time order) and tagged UTC again when read back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            # A naive time is ambiguous (CST or UTC?); refusing it beats storing a wrong instant.
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL text for ``column IN (...)``, built from the constants so code and schema agree."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


# --------------------------------------------------------------------------- vocabularies


class Role:
    """User roles; one per person, checked by the database."""

    ENTERPRISE = "enterprise"
    PROVIDER = "provider"
    SETTLEMENT = "settlement"
    AUDITOR = "auditor"
    ADMIN = "admin"
    ALL: tuple[str, ...] = (ENTERPRISE, PROVIDER, SETTLEMENT, AUDITOR, ADMIN)


class Alliance:
    """The two industry alliances a provider can belong to."""

    SHARED_ELECTRICIANS = "shared_electricians"
    ENERGY_CLOUD_BUTLER = "energy_cloud_butler"
    ALL: tuple[str, ...] = (SHARED_ELECTRICIANS, ENERGY_CLOUD_BUTLER)


class ProviderStatus:
    """Membership states of a provider (not constrained in the schema: the workflow may grow)."""

    APPLIED = "applied"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    ALL: tuple[str, ...] = (APPLIED, APPROVED, REJECTED, SUSPENDED)


class AccountPurpose:
    """What a chain account signs for."""

    OPERATOR = "operator"
    ENTERPRISE = "enterprise"
    STAFF = "staff"
    ALL: tuple[str, ...] = (OPERATOR, ENTERPRISE, STAFF)


class OrderSide:
    SELL = "sell"
    BUY = "buy"
    ALL: tuple[str, ...] = (SELL, BUY)


class OrderStatus:
    """An order is active until its owner cancels it (before gate closure)."""

    ACTIVE = "active"
    CANCELLED = "cancelled"
    ALL: tuple[str, ...] = (ACTIVE, CANCELLED)


class OrderActionKind:
    NEW = "new"
    AMEND = "amend"
    CANCEL = "cancel"
    ALL: tuple[str, ...] = (NEW, AMEND, CANCEL)


class ChainPath:
    """How an order's actions reach the chain: one transaction each, or in batches (events)."""

    SINGLE = "single"
    BATCH = "batch"
    ALL: tuple[str, ...] = (SINGLE, BATCH)


class ChainStatus:
    """Where a record stands with the chain: written locally first, then recorded (or not)."""

    PENDING = "pending"
    RECORDED = "recorded"
    FAILED = "failed"
    ALL: tuple[str, ...] = (PENDING, RECORDED, FAILED)


class ClearingStatus:
    CLEARED = "cleared"
    PUBLISHED = "published"
    VOIDED = "voided"
    ALL: tuple[str, ...] = (CLEARED, PUBLISHED, VOIDED)


class TaskStatus:
    """States of an idempotent task run."""

    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    ALL: tuple[str, ...] = (STARTED, DONE, FAILED)


# --------------------------------------------------------------------------- topology


class Park(Base):
    """An industrial park: its clock, market calendar defaults and everything under it."""

    __tablename__ = "parks"
    __table_args__ = (
        # 60 % n == 0 holds for every allowed value; the list is the stricter statement.
        CheckConstraint("period_minutes IN (15, 30, 60)", name="period_minutes_valid"),
        CheckConstraint(_one_of("trade_scope", ("park", "substation", "transformer")),
                        name="trade_scope_valid"),
        CheckConstraint(_one_of("pricing_rule", ("zonal", "pay_as_bid")),
                        name="pricing_rule_valid"),
        CheckConstraint(_one_of("tie_rule", ("pro_rata", "time_priority")),
                        name="tie_rule_valid"),
        CheckConstraint("price_min > 0 AND price_max >= price_min", name="price_range_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    gate_closure_time: Mapped[time] = mapped_column(Time, default=time(12, 0))
    period_minutes: Mapped[int] = mapped_column(Integer, default=60)
    # Market rules: who may trade with whom, price range, clearing price rule, tie rule.
    trade_scope: Mapped[str] = mapped_column(String(16), default="park")
    price_min: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0.0001"))
    price_max: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("10.0000"))
    pricing_rule: Mapped[str] = mapped_column(String(16), default="zonal")
    tie_rule: Mapped[str] = mapped_column(String(16), default="pro_rata")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    substations: Mapped[list[Substation]] = relationship(
        back_populates="park", order_by="Substation.code"
    )
    enterprises: Mapped[list[Enterprise]] = relationship(
        back_populates="park", order_by="Enterprise.code"
    )

    @property
    def periods_per_day(self) -> int:
        return 24 * 60 // self.period_minutes

    def __repr__(self) -> str:
        return f"<Park {self.code}>"


class Substation(Base):
    """A substation feeding the park (top of every supply path)."""

    __tablename__ = "substations"
    __table_args__ = (UniqueConstraint("park_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    voltage_kv: Mapped[Decimal] = mapped_column(Numeric(6, 1))

    park: Mapped[Park] = relationship(back_populates="substations")
    transformers: Mapped[list[Transformer]] = relationship(
        back_populates="substation", order_by="Transformer.code"
    )

    def __repr__(self) -> str:
        return f"<Substation {self.code}>"


class Transformer(Base):
    """A main transformer: rated capacity and the highest load rate it may run at."""

    __tablename__ = "transformers"
    __table_args__ = (
        UniqueConstraint("substation_id", "code"),
        CheckConstraint("rated_kva > 0", name="rated_kva_positive"),
        CheckConstraint("max_load_rate > 0 AND max_load_rate <= 1", name="max_load_rate_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    substation_id: Mapped[int] = mapped_column(ForeignKey("substations.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    rated_kva: Mapped[Decimal] = mapped_column(KVA)
    max_load_rate: Mapped[Decimal] = mapped_column(LOAD_RATE)

    substation: Mapped[Substation] = relationship(back_populates="transformers")
    feeders: Mapped[list[Feeder]] = relationship(
        back_populates="transformer", order_by="Feeder.code"
    )

    @property
    def allowed_kva(self) -> Decimal:
        """The load the transformer may carry: rated kVA times the maximum load rate."""
        return self.rated_kva * self.max_load_rate

    def __repr__(self) -> str:
        return f"<Transformer {self.code} {self.rated_kva} kVA>"


class Feeder(Base):
    """A feeder out of a main transformer, limited by its thermal rating."""

    __tablename__ = "feeders"
    __table_args__ = (
        UniqueConstraint("transformer_id", "code"),
        CheckConstraint("thermal_limit_kva > 0", name="thermal_limit_kva_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transformer_id: Mapped[int] = mapped_column(ForeignKey("transformers.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    thermal_limit_kva: Mapped[Decimal] = mapped_column(KVA)

    transformer: Mapped[Transformer] = relationship(back_populates="feeders")
    enterprises: Mapped[list[Enterprise]] = relationship(
        back_populates="feeder", order_by="Enterprise.code"
    )

    def __repr__(self) -> str:
        return f"<Feeder {self.code}>"


# --------------------------------------------------------------------------- parties


class Enterprise(Base):
    """A park enterprise with contracted supply capacity, fed by one feeder."""

    __tablename__ = "enterprises"
    __table_args__ = (
        CheckConstraint("contracted_kva > 0", name="contracted_kva_positive"),
        CheckConstraint("(site_lat IS NULL) = (site_lon IS NULL)", name="site_complete"),
        CheckConstraint("(site_lat IS NULL OR site_lat BETWEEN -90 AND 90)"
                        " AND (site_lon IS NULL OR site_lon BETWEEN -180 AND 180)",
                        name="site_in_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"), index=True)
    feeder_id: Mapped[int] = mapped_column(ForeignKey("feeders.id"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    contracted_kva: Mapped[Decimal] = mapped_column(KVA)
    # Where the enterprise's site is (its main switch room): alarm jobs are sent there.
    site_lat: Mapped[Decimal | None] = mapped_column(COORDINATE, nullable=True)
    site_lon: Mapped[Decimal | None] = mapped_column(COORDINATE, nullable=True)
    # enterprises <-> chain_accounts reference each other; use_alter lets the FK be added
    # after both tables exist (and dropped before either goes).
    chain_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("chain_accounts.id", use_alter=True), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    park: Mapped[Park] = relationship(back_populates="enterprises")
    feeder: Mapped[Feeder] = relationship(back_populates="enterprises")
    metering_points: Mapped[list[MeteringPoint]] = relationship(
        back_populates="enterprise", order_by="MeteringPoint.code"
    )
    # post_update: the enterprise row and its account row each point at the other, so one
    # pointer has to be written by a second UPDATE once both rows exist.
    chain_account: Mapped[ChainAccount | None] = relationship(
        foreign_keys=[chain_account_id], post_update=True
    )

    @property
    def transformer(self) -> Transformer:
        return self.feeder.transformer

    @property
    def substation(self) -> Substation:
        return self.feeder.transformer.substation

    def supply_path(self) -> list[Enterprise | Feeder | Transformer | Substation]:
        """The assets from this enterprise up to its substation, nearest first."""
        feeder = self.feeder
        transformer = feeder.transformer
        return [self, feeder, transformer, transformer.substation]

    def __repr__(self) -> str:
        return f"<Enterprise {self.code}>"


class MeteringPoint(Base):
    """A meter of an enterprise; readings times ``multiplier`` give primary-side values."""

    __tablename__ = "metering_points"
    __table_args__ = (CheckConstraint("multiplier > 0", name="multiplier_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    multiplier: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=Decimal(1))

    enterprise: Mapped[Enterprise] = relationship(back_populates="metering_points")

    def __repr__(self) -> str:
        return f"<MeteringPoint {self.code}>"


# Provider, Electrician and Certificate live in the alliance section at the end.


class User(Base):
    """A person who logs in; enterprise and provider users are bound to their organisation."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_one_of("role", Role.ALL), name="role_valid"),
        CheckConstraint(
            "(role = 'enterprise' AND enterprise_id IS NOT NULL)"
            " OR (role <> 'enterprise' AND enterprise_id IS NULL)",
            name="enterprise_binding",
        ),
        CheckConstraint(
            "(role = 'provider' AND provider_id IS NOT NULL)"
            " OR (role <> 'provider' AND provider_id IS NULL)",
            name="provider_binding",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    enterprise_id: Mapped[int | None] = mapped_column(
        ForeignKey("enterprises.id"), nullable=True, index=True
    )
    provider_id: Mapped[int | None] = mapped_column(
        ForeignKey("providers.id"), nullable=True, index=True
    )
    locale: Mapped[str] = mapped_column(String(8), default="zh")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    enterprise: Mapped[Enterprise | None] = relationship()
    # providers.decided_by_id also points at users: name the column this one follows.
    provider: Mapped[Provider | None] = relationship(foreign_keys=[provider_id])
    api_tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method="scrypt")

    def check_password(self, password: str) -> bool:
        if not self.password_hash:
            return False
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role}>"


class ApiToken(Base):
    """A bearer token for the HTTP API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship(back_populates="api_tokens")

    @staticmethod
    def hash_token(token: str) -> str:
        """SHA-256 hex of a plaintext token (tokens are random, so no salt is needed)."""
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    @classmethod
    def issue(cls, user: User, label: str, ttl: timedelta | None = None) -> tuple[ApiToken, str]:
        """A new token for ``user`` and its plaintext, which is shown once and never stored.

        The token joins the user's session through the relationship; add it explicitly if
        the user is not in a session yet.
        """
        plaintext = secrets.token_urlsafe(32)
        now = utcnow()
        token = cls(
            user=user,
            token_hash=cls.hash_token(plaintext),
            label=label,
            created_at=now,
            expires_at=now + ttl if ttl is not None else None,
            revoked=False,
        )
        return token, plaintext

    def is_usable(self, now: datetime | None = None) -> bool:
        """Not revoked and not expired at ``now`` (default: the current time)."""
        if self.revoked:
            return False
        if self.expires_at is None:
            return True
        return (now or utcnow()) < self.expires_at

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} user={self.user_id} {self.label!r}>"


# --------------------------------------------------------------------------- chain


class ChainAccount(Base):
    """An Ethereum account whose private key is kept here, encrypted with the platform secret."""

    __tablename__ = "chain_accounts"
    __table_args__ = (
        CheckConstraint(_one_of("purpose", AccountPurpose.ALL), name="purpose_valid"),
        CheckConstraint("length(address) = 42", name="address_length"),
        CheckConstraint(
            "purpose <> 'enterprise' OR enterprise_id IS NOT NULL", name="enterprise_account_bound"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(42), unique=True)
    encrypted_key: Mapped[bytes] = mapped_column(LargeBinary)
    purpose: Mapped[str] = mapped_column(String(16))
    enterprise_id: Mapped[int | None] = mapped_column(
        ForeignKey("enterprises.id"), nullable=True, index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    enterprise: Mapped[Enterprise | None] = relationship(foreign_keys=[enterprise_id])
    user: Mapped[User | None] = relationship()

    @validates("address")
    def _checksum_address(self, _key: str, value: str) -> str:
        if not is_hex_address(value):
            raise ValueError(f"not an Ethereum address: {value!r}")
        if value != value.lower() and not is_checksum_address(value):
            # Mixed case that fails the checksum is a typo, not a style choice.
            raise ValueError(f"bad address checksum: {value!r}")
        return to_checksum_address(value)

    def __repr__(self) -> str:
        # Deliberately leaves out encrypted_key.
        return f"<ChainAccount {self.address} {self.purpose}>"


class ChainDeployment(Base):
    """Where a contract was deployed on which chain, so the adapter can find it again."""

    __tablename__ = "chain_deployments"
    __table_args__ = (UniqueConstraint("contract_name", "chain_id", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_name: Mapped[str] = mapped_column(String(64))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    address: Mapped[str] = mapped_column(String(42))
    tx_hash: Mapped[str] = mapped_column(String(66))
    block_number: Mapped[int] = mapped_column(BigInteger)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<ChainDeployment {self.contract_name} chain={self.chain_id} {self.address}>"


# --------------------------------------------------------------------------- market


def new_public_id() -> str:
    return str(uuid.uuid4())


class Order(Base):
    """An enterprise's sell listing or buy bid for some periods of one delivery day.

    The row holds the order's current content; every change is an ``OrderAction`` (the
    outbox of chain writes), and ``chain_version`` says which version the chain has.
    """

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint(_one_of("side", OrderSide.ALL), name="side_valid"),
        CheckConstraint(_one_of("status", OrderStatus.ALL), name="status_valid"),
        CheckConstraint(_one_of("chain_status", ChainStatus.ALL), name="chain_status_valid"),
        CheckConstraint(_one_of("chain_path", ChainPath.ALL), name="chain_path_valid"),
        CheckConstraint("min_fraction IS NULL OR (min_fraction > 0 AND min_fraction <= 1)",
                        name="min_fraction_range"),
        CheckConstraint("version >= 1 AND chain_version >= 0 AND chain_version <= version",
                        name="versions_valid"),
        Index("ix_orders_enterprise_id_delivery_day", "enterprise_id", "delivery_day"),
        Index("ix_orders_delivery_day_side", "delivery_day", "side"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_public_id)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    side: Mapped[str] = mapped_column(String(4))
    delivery_day: Mapped[date] = mapped_column(Date)
    # Yuan per kVA per hour: the floor of a sell listing, the maximum of a buy bid.
    price: Mapped[Decimal] = mapped_column(PRICE)
    all_or_none: Mapped[bool] = mapped_column(Boolean, default=False)
    min_fraction: Mapped[Decimal | None] = mapped_column(Numeric(5, 4), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.ACTIVE)
    version: Mapped[int] = mapped_column(Integer, default=1)
    content_hash: Mapped[str] = mapped_column(String(66))
    chain_status: Mapped[str] = mapped_column(String(16), default=ChainStatus.PENDING,
                                              index=True)
    chain_version: Mapped[int] = mapped_column(Integer, default=0)
    chain_path: Mapped[str] = mapped_column(String(8), default=ChainPath.SINGLE,
                                            server_default=ChainPath.SINGLE)
    chain_tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    chain_block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    chain_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When a single-transaction write of the first version was first about to be sent
    # (committed before sending). Such an order keeps to the single path: the chain may hold
    # it before the database knows, so it must never go in a batch as well.
    single_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    enterprise: Mapped[Enterprise] = relationship()
    created_by: Mapped[User] = relationship()
    periods: Mapped[list[OrderPeriod]] = relationship(
        back_populates="order",
        order_by="OrderPeriod.period_index",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    actions: Mapped[list[OrderAction]] = relationship(
        back_populates="order", order_by="OrderAction.version", cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def __init__(self, **kwargs: Any) -> None:
        # Set at construction, not at flush: the content hash covers the public id and is
        # computed before the row is written.
        kwargs.setdefault("public_id", new_public_id())
        super().__init__(**kwargs)

    def __repr__(self) -> str:
        return f"<Order {self.side} {self.public_id} v{self.version} {self.status}>"


class OrderPeriod(Base):
    """The quantity an order offers or asks in one period of its delivery day."""

    __tablename__ = "order_periods"
    __table_args__ = (
        UniqueConstraint("order_id", "period_index"),
        CheckConstraint("period_index >= 0", name="period_index_nonnegative"),
        CheckConstraint("quantity_kva > 0", name="quantity_kva_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    period_index: Mapped[int] = mapped_column(Integer)
    quantity_kva: Mapped[Decimal] = mapped_column(KVA)

    order: Mapped[Order] = relationship(back_populates="periods")

    def __repr__(self) -> str:
        return f"<OrderPeriod {self.order_id}#{self.period_index} {self.quantity_kva} kVA>"


class OrderAction(Base):
    """One change of an order (new, amend, cancel): the outbox entry of its chain write."""

    __tablename__ = "order_actions"
    __table_args__ = (
        UniqueConstraint("order_id", "version"),
        CheckConstraint(_one_of("action", OrderActionKind.ALL), name="action_valid"),
        CheckConstraint(_one_of("chain_status", ChainStatus.ALL), name="chain_status_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(8))
    content_hash: Mapped[str] = mapped_column(String(66))
    # The canonical document this version's hash covers, so the version the chain holds
    # can be used (and re-hashed by an auditor) even after a later amendment failed.
    document: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    chain_status: Mapped[str] = mapped_column(String(16), default=ChainStatus.PENDING,
                                              index=True)
    chain_tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    chain_block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    chain_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The batch (bytes32 hex) that carries this action, fixed before the batch is sent so a
    # retried task finds it on chain instead of sending it again.
    chain_batch_id: Mapped[str | None] = mapped_column(String(66), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship(back_populates="actions")

    def __repr__(self) -> str:
        return f"<OrderAction {self.order_id} v{self.version} {self.action}>"


class ChainWriteRequest(Base):
    """How many order actions of an enterprise were committed since its chain writer last
    started: the first one queues the writer, which takes all of them, so orders arriving
    together cost one task and go in one batch."""

    __tablename__ = "chain_write_requests"

    enterprise_id: Mapped[int] = mapped_column(
        ForeignKey("enterprises.id", ondelete="CASCADE"), primary_key=True)
    waiting: Mapped[int] = mapped_column(Integer, default=0)


class DemandProfile(Base):
    """An enterprise's expected own demand per period: declared for a day, or a standing
    profile (``delivery_day`` NULL) taken from its recent metered demand."""

    __tablename__ = "demand_profiles"
    __table_args__ = (
        UniqueConstraint("enterprise_id", "delivery_day", "period_index"),
        CheckConstraint("demand_kva >= 0", name="demand_kva_nonnegative"),
        CheckConstraint(_one_of("source", ("declared", "metered")), name="source_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    delivery_day: Mapped[date | None] = mapped_column(Date, nullable=True)
    period_index: Mapped[int] = mapped_column(Integer)
    demand_kva: Mapped[Decimal] = mapped_column(KVA)
    source: Mapped[str] = mapped_column(String(8), default="metered")

    def __repr__(self) -> str:
        return f"<DemandProfile {self.enterprise_id} {self.delivery_day} #{self.period_index}>"


class ClearingRun(Base):
    """One clearing of one park's delivery day: its canonical result and its publication."""

    __tablename__ = "clearing_runs"
    __table_args__ = (
        UniqueConstraint("park_id", "delivery_day", "run_number"),
        CheckConstraint(_one_of("status", ClearingStatus.ALL), name="status_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"))
    delivery_day: Mapped[date] = mapped_column(Date)
    run_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=ClearingStatus.CLEARED)
    pricing_rule: Mapped[str] = mapped_column(String(16))
    tie_rule: Mapped[str] = mapped_column(String(16))
    result_hash: Mapped[str] = mapped_column(String(66))
    result_root: Mapped[str] = mapped_column(String(66))
    result_file: Mapped[bytes] = mapped_column(LargeBinary)
    # The network, limits, base loads and rules the run was cleared with (published with the
    # result, so the day can be cleared again from the on-chain orders); None before 0006.
    input_file: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    summary: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    publish_tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    publish_block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    void_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    voided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    park: Mapped[Park] = relationship()
    allocations: Mapped[list[ClearingAllocation]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(ClearingAllocation.order_id, ClearingAllocation.period_index)")

    def __repr__(self) -> str:
        return f"<ClearingRun {self.delivery_day} #{self.run_number} {self.status}>"


class ClearingAllocation(Base):
    """What one order got in one period of a clearing run, and at which price."""

    __tablename__ = "clearing_allocations"
    __table_args__ = (UniqueConstraint("run_id", "order_id", "period_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("clearing_runs.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    period_index: Mapped[int] = mapped_column(Integer)
    quantity_kva: Mapped[Decimal] = mapped_column(KVA)
    price: Mapped[Decimal] = mapped_column(PRICE)

    run: Mapped[ClearingRun] = relationship(back_populates="allocations")
    order: Mapped[Order] = relationship()


# --------------------------------------------------------------------------- bookkeeping


class TaskRun(Base):
    """One run of a task for one idempotency key; a second run with the same key is refused."""

    __tablename__ = "task_runs"
    __table_args__ = (
        UniqueConstraint("task_name", "key"),
        CheckConstraint(_one_of("status", TaskStatus.ALL), name="status_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_name: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.STARTED)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<TaskRun {self.task_name}[{self.key}] {self.status}>"


class AuditLogEntry(Base):
    """Who did what to which object, for the operator and the auditor."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    user: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<AuditLogEntry {self.id} {self.action} {self.target}>"


# --------------------------------------------------------------------------- settlement


class ImportStatus:
    ACCEPTED = "accepted"
    REFUSED = "refused"
    ALL: tuple[str, ...] = (ACCEPTED, REFUSED)


class SettlementKind:
    """Run types, as in settlement codes: a first (initial) run, a final run refused while a
    required interval is missing, re-runs after corrections or disputes, a month's roll-up."""

    INITIAL = "initial"
    FINAL = "final"
    RERUN = "rerun"
    MONTHLY = "monthly"
    ALL: tuple[str, ...] = (INITIAL, FINAL, RERUN, MONTHLY)


class SettlementStatus:
    QUEUED = "queued"
    RUNNING = "running"
    COMPUTED = "computed"  # result stored, not yet anchored on chain
    PUBLISHED = "published"
    FAILED = "failed"
    ALL: tuple[str, ...] = (QUEUED, RUNNING, COMPUTED, PUBLISHED, FAILED)


class DisputeStatus:
    OPEN = "open"
    ACCEPTED = "accepted"  # a re-run was made for it
    REJECTED = "rejected"
    ALL: tuple[str, ...] = (OPEN, ACCEPTED, REJECTED)


class DeviationRuleVersion(Base):
    """One version of a deviation rule, stored as the canonical bytes settlement hashes."""

    __tablename__ = "deviation_rules"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    rule_hash: Mapped[str] = mapped_column(String(66))
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<DeviationRuleVersion {self.name} v{self.version}>"


class SettlementSettings(Base):
    """A park's settlement rules: its deviation rule version, dispute window, materiality."""

    __tablename__ = "settlement_settings"
    __table_args__ = (
        CheckConstraint("dispute_days >= 0", name="dispute_days_nonnegative"),
        CheckConstraint("materiality_fen >= 0", name="materiality_nonnegative"),
        CheckConstraint("reference_price > 0", name="reference_price_positive"),
    )

    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"), primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("deviation_rules.id"))
    dispute_days: Mapped[int] = mapped_column(Integer, default=20)
    materiality_fen: Mapped[int] = mapped_column(BigInteger, default=1000)
    # Penalty price basis (yuan per kVA·h) in periods without a clearing price.
    reference_price: Mapped[Decimal] = mapped_column(PRICE, default=Decimal("0.0500"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    park: Mapped[Park] = relationship()
    rule: Mapped[DeviationRuleVersion] = relationship()


class MeteringImport(Base):
    """One metering file or upload: what it held, what was refused and why.

    A refused file keeps only this record (its reason and line); none of its readings.
    """

    __tablename__ = "metering_imports"
    __table_args__ = (
        CheckConstraint(_one_of("status", ImportStatus.ALL), name="status_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    file_format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16))
    readings: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    point_days: Mapped[int] = mapped_column(Integer, default=0)
    refusal: Mapped[str | None] = mapped_column(Text, nullable=True)
    report: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of problems
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<MeteringImport {self.id} {self.file_format} {self.status}>"


class MeterDayVersion(Base):
    """One version of one metering point's day of 15-minute values; corrections add versions.

    `watts` holds the interval values as little-endian int64 watts, `quality` one flag byte
    per interval (the order of `settlement.metering.QUALITY_ORDER`).
    """

    __tablename__ = "meter_days"
    __table_args__ = (
        UniqueConstraint("metering_point_id", "day", "version"),
        Index("ix_meter_days_day", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    metering_point_id: Mapped[int] = mapped_column(ForeignKey("metering_points.id"))
    day: Mapped[date] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer)
    watts: Mapped[bytes] = mapped_column(LargeBinary)
    quality: Mapped[bytes] = mapped_column(LargeBinary)
    notes: Mapped[str] = mapped_column(Text, default="{}")  # JSON {interval: explanation}
    source: Mapped[str] = mapped_column(String(16))  # import | substitute
    import_id: Mapped[int | None] = mapped_column(ForeignKey("metering_imports.id"),
                                                  nullable=True, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    metering_point: Mapped[MeteringPoint] = relationship()

    def __repr__(self) -> str:
        return f"<MeterDayVersion {self.metering_point_id} {self.day} v{self.version}>"


class MeteringOutage(Base):
    """A marked supply outage: estimation never fills or bridges it."""

    __tablename__ = "metering_outages"
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="ends_after_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"), index=True)
    metering_point_id: Mapped[int | None] = mapped_column(ForeignKey("metering_points.id"),
                                                          nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    metering_point: Mapped[MeteringPoint | None] = relationship()


class DeviationExemption(Base):
    """A period excused from deviation charges (documented outage, force majeure)."""

    __tablename__ = "deviation_exemptions"
    __table_args__ = (UniqueConstraint("enterprise_id", "day", "period_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    period_index: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    enterprise: Mapped[Enterprise] = relationship()


class SettlementRun(Base):
    """One settlement run of a park's day (or month): its result file, roots and anchoring."""

    __tablename__ = "settlement_runs"
    __table_args__ = (
        UniqueConstraint("park_id", "period_id", "run_number"),
        CheckConstraint(_one_of("kind", SettlementKind.ALL), name="kind_valid"),
        CheckConstraint(_one_of("status", SettlementStatus.ALL), name="status_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"))
    # YYYYMMDD for a day, YYYYMM00 for a month: the key the chain records runs under.
    period_id: Mapped[int] = mapped_column(Integer, index=True)
    day: Mapped[date | None] = mapped_column(Date, nullable=True)
    # The chain's run number, given at publication (runs that never publish have none).
    run_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=SettlementStatus.QUEUED)
    progress: Mapped[int] = mapped_column(Integer, default=0)  # percent
    reason: Mapped[str] = mapped_column(Text, default="")
    previous_run_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_runs.id"),
                                                        nullable=True)
    dispute_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("deviation_rules.id"))
    inputs_file: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    result_file: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    result_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    metering_root: Mapped[str | None] = mapped_column(String(66), nullable=True)
    rule_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    statements_root: Mapped[str | None] = mapped_column(String(66), nullable=True)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    publish_tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    publish_block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    park: Mapped[Park] = relationship()
    rule: Mapped[DeviationRuleVersion] = relationship()
    previous_run: Mapped[SettlementRun | None] = relationship(remote_side=[id])
    lines: Mapped[list[StatementLine]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True,
        order_by="StatementLine.position")

    def __repr__(self) -> str:
        return f"<SettlementRun {self.period_id} #{self.run_number} {self.kind} {self.status}>"


class StatementLine(Base):
    """One line of a run: `section` full (the run's whole settlement) or difference (what
    this run pays against the previous one). Positive fen: the account pays."""

    __tablename__ = "statement_lines"
    __table_args__ = (
        UniqueConstraint("run_id", "position"),
        Index("ix_statement_lines_run_account", "run_id", "account"),
        CheckConstraint("section IN ('full', 'difference')", name="section_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("settlement_runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # index of its Merkle leaf
    section: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    period_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reference: Mapped[str] = mapped_column(String(64), default="")
    fen: Mapped[int] = mapped_column(BigInteger)

    run: Mapped[SettlementRun] = relationship(back_populates="lines")


class Dispute(Base):
    """An enterprise's dispute of a published run, raised within the park's dispute window."""

    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint(_one_of("status", DisputeStatus.ALL), name="status_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("settlement_runs.id"), index=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    claimed_fen: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DisputeStatus.OPEN)
    resolution: Mapped[str] = mapped_column(Text, default="")
    resolving_run_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_runs.id"),
                                                         nullable=True)
    raised_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    run: Mapped[SettlementRun] = relationship(foreign_keys=[run_id])
    enterprise: Mapped[Enterprise] = relationship()


# --------------------------------------------------------------------------- alliance
# Membership (providers, their electricians and certificates) and dispatched jobs with their
# append-only event log. The rules live in the `alliance` core; these rows hold its inputs
# and the states it returns. Job vocabularies are taken from the core so the schema's check
# constraints and the state machine cannot drift apart (a change there needs a migration).

JOB_KINDS: tuple[str, ...] = tuple(k.value for k in CoreJobKind)
JOB_STATUSES: tuple[str, ...] = tuple(s.value for s in CoreJobStatus)
# Statuses in which a job holds its electrician (the no-double-booking rule).
ACTIVE_JOB_STATUSES: tuple[str, ...] = tuple(
    s.value for s in CoreJobStatus if s in CORE_ACTIVE_STATUSES)
# Statuses in which a job has an electrician assigned (active, or waiting for the sign-off).
ASSIGNED_JOB_STATUSES: tuple[str, ...] = (*ACTIVE_JOB_STATUSES,
                                          CoreJobStatus.AWAITING_SIGN_OFF.value)


class JobEventKind:
    """What a `job_events` row records: the job's creation, then one lifecycle event each."""

    CREATED = "created"
    OFFER = "offer"
    ACCEPT = "accept"
    DECLINE = "decline"
    OFFER_EXPIRED = "offer_expired"
    START_TRAVEL = "start_travel"
    CHECK_IN = "check_in"
    NO_SHOW = "no_show"
    START_WORK = "start_work"
    ATTACH_PHOTO = "attach_photo"
    REQUEST_SIGN_OFF = "request_sign_off"
    SIGN_OFF = "sign_off"
    CANCEL = "cancel"
    CANNOT_COMPLETE = "cannot_complete"
    ESCALATE = "escalate"
    ALL: tuple[str, ...] = (CREATED, OFFER, ACCEPT, DECLINE, OFFER_EXPIRED, START_TRAVEL,
                            CHECK_IN, NO_SHOW, START_WORK, ATTACH_PHOTO, REQUEST_SIGN_OFF,
                            SIGN_OFF, CANCEL, CANNOT_COMPLETE, ESCALATE)


class AttachmentKind:
    PHOTO = "photo"
    SIGNATURE = "signature"
    ALL: tuple[str, ...] = (PHOTO, SIGNATURE)


IMAGE_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")


def _sql_in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# The partial unique index's condition: an electrician holds at most one active urgent job.
ACTIVE_URGENT_JOB = f"urgent AND status IN {_sql_in(ACTIVE_JOB_STATUSES)}"


def _skill_list(text_value: str) -> list[str]:
    return [s.strip() for s in (text_value or "").split(",") if s.strip()]


class Provider(Base):
    """An alliance service provider (a company), as applied for or admitted.

    `receives_offers`, `standing_reasons` (JSON list of {code, figures}) and
    `standing_checked_on` cache the core's standing of the day it was last checked, so
    pages can tell the provider why it gets no offers; dispatch checks standing afresh.
    """

    __tablename__ = "providers"
    __table_args__ = (
        CheckConstraint(_one_of("alliance", Alliance.ALL), name="alliance_valid"),
        CheckConstraint(
            "licence_level IS NULL OR licence_level BETWEEN 1 AND 5", name="licence_level_range"
        ),
        CheckConstraint(
            "licence_issued IS NULL OR licence_expiry IS NULL OR licence_issued <= licence_expiry",
            name="licence_dates_valid",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    alliance: Mapped[str] = mapped_column(String(32))
    licence_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    licence_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    licence_issued: Mapped[date | None] = mapped_column(Date, nullable=True)
    licence_expiry: Mapped[date | None] = mapped_column(Date, nullable=True)
    status: Mapped[str] = mapped_column(String(32), default=ProviderStatus.APPLIED)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", use_alter=True), nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    receives_offers: Mapped[bool] = mapped_column(Boolean, default=False,
                                                  server_default=false())
    standing_reasons: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    standing_checked_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    electricians: Mapped[list[Electrician]] = relationship(
        back_populates="provider", order_by="Electrician.id"
    )
    # post_update: users reference providers and a provider references the deciding user.
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id],
                                                   post_update=True)

    def __repr__(self) -> str:
        return f"<Provider {self.code} {self.alliance}>"


class Electrician(Base):
    """An electrician employed by a provider: certificates, skills, shift, home and position.

    The shift is a local time-of-day interval (the park's zone, Asia/Shanghai) worked on the
    weekdays set in `weekdays` (bit 0 Monday … bit 6 Sunday); a shift that ends at or before
    its start runs past midnight into the next day (start = end: round the clock).
    """

    __tablename__ = "electricians"
    __table_args__ = (
        UniqueConstraint("provider_id", "code"),
        CheckConstraint("weekdays BETWEEN 0 AND 127", name="weekdays_range"),
        CheckConstraint("(shift_start IS NULL) = (shift_end IS NULL)", name="shift_complete"),
        CheckConstraint(
            "(last_lat IS NULL AND last_lon IS NULL AND last_seen_at IS NULL)"
            " OR (last_lat IS NOT NULL AND last_lon IS NOT NULL AND last_seen_at IS NOT NULL)",
            name="last_position_complete",
        ),
        CheckConstraint(
            "(home_lat IS NULL OR home_lat BETWEEN -90 AND 90)"
            " AND (home_lon IS NULL OR home_lon BETWEEN -180 AND 180)"
            " AND (last_lat IS NULL OR last_lat BETWEEN -90 AND 90)"
            " AND (last_lon IS NULL OR last_lon BETWEEN -180 AND 180)",
            name="positions_in_range",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    # Comma-separated skill codes, e.g. "low_voltage,cable"; see skill_list.
    skills: Mapped[str] = mapped_column(String(255), default="")
    shift_start: Mapped[time | None] = mapped_column(Time, nullable=True)
    shift_end: Mapped[time | None] = mapped_column(Time, nullable=True)
    weekdays: Mapped[int] = mapped_column(Integer, default=0b1111111,
                                          server_default="127")
    home_lat: Mapped[Decimal | None] = mapped_column(COORDINATE, nullable=True)
    home_lon: Mapped[Decimal | None] = mapped_column(COORDINATE, nullable=True)
    last_lat: Mapped[Decimal | None] = mapped_column(COORDINATE, nullable=True)
    last_lon: Mapped[Decimal | None] = mapped_column(COORDINATE, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    provider: Mapped[Provider] = relationship(back_populates="electricians")
    certificates: Mapped[list[Certificate]] = relationship(
        back_populates="electrician", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(Certificate.expires, Certificate.id)")

    @property
    def skill_list(self) -> list[str]:
        return _skill_list(self.skills)

    @property
    def weekday_list(self) -> list[int]:
        """ISO weekdays worked (1 Monday … 7 Sunday)."""
        return [d + 1 for d in range(7) if self.weekdays >> d & 1]

    @property
    def certificate_type(self) -> str | None:
        """The type of the certificate valid longest (None without one): the electrician's
        main trade, for lists that show one."""
        if not self.certificates:
            return None
        return self.certificates[-1].type

    def __repr__(self) -> str:
        return f"<Electrician {self.code} of provider {self.provider_id}>"


class Certificate(Base):
    """A special-operation electrician certificate (特种作业操作证) of one electrician."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("electrician_id", "type", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    electrician_id: Mapped[int] = mapped_column(
        ForeignKey("electricians.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    number: Mapped[str] = mapped_column(String(64))
    expires: Mapped[date] = mapped_column(Date)

    electrician: Mapped[Electrician] = relationship(back_populates="certificates")

    def __repr__(self) -> str:
        return f"<Certificate {self.type} {self.number} until {self.expires}>"


class Job(Base):
    """A dispatched job (repair request, alarm, patrol, inspection) and its current state.

    `provider_id` is the enterprise's O&M provider for an energy-cloud-butler job and NULL
    for a shared-electricians job (the shared pool). The state columns mirror the core's
    `JobState`; every change goes through the core's `apply` and adds a `job_events` row.
    `version` makes concurrent updates of one job fail instead of overwriting each other.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_one_of("kind", JOB_KINDS), name="kind_valid"),
        CheckConstraint(_one_of("alliance", Alliance.ALL), name="alliance_valid"),
        CheckConstraint(_one_of("status", JOB_STATUSES), name="status_valid"),
        CheckConstraint(
            "(alliance = 'shared_electricians' AND provider_id IS NULL)"
            " OR (alliance = 'energy_cloud_butler' AND provider_id IS NOT NULL)",
            name="provider_matches_alliance",
        ),
        CheckConstraint(
            "(urgent AND on_site_deadline IS NOT NULL)"
            " OR (NOT urgent AND on_site_deadline IS NULL)",
            name="deadline_when_urgent",
        ),
        CheckConstraint(f"status NOT IN {_sql_in(ASSIGNED_JOB_STATUSES)}"
                        " OR electrician_id IS NOT NULL", name="assigned_has_electrician"),
        CheckConstraint("status <> 'offered' OR offer_expires_at IS NOT NULL",
                        name="offer_has_expiry"),
        CheckConstraint("window_start IS NULL OR window_end IS NULL OR window_end > window_start",
                        name="window_valid"),
        CheckConstraint("service_minutes > 0", name="service_minutes_positive"),
        CheckConstraint("photos >= 0", name="photos_nonnegative"),
        CheckConstraint("lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180",
                        name="position_in_range"),
        CheckConstraint("version >= 1", name="version_positive"),
        # No double booking, held by the database itself: one active urgent job per person.
        Index("uq_jobs_active_urgent_electrician", "electrician_id", unique=True,
              sqlite_where=text(ACTIVE_URGENT_JOB), postgresql_where=text(ACTIVE_URGENT_JOB)),
        Index("ix_jobs_status_offer_expires_at", "status", "offer_expires_at"),
        UniqueConstraint("contract_item_id", "due_on"),
        CheckConstraint("(contract_item_id IS NULL) = (due_on IS NULL)",
                        name="contract_due_complete"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"), index=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    alliance: Mapped[str] = mapped_column(String(32))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"), nullable=True,
                                                    index=True)
    urgent: Mapped[bool] = mapped_column(Boolean)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    lat: Mapped[Decimal] = mapped_column(COORDINATE)
    lon: Mapped[Decimal] = mapped_column(COORDINATE)
    # Comma-separated skill codes the job needs; see skill_list.
    required_skills: Mapped[str] = mapped_column(String(255), default="low_voltage")
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    service_minutes: Mapped[int] = mapped_column(Integer, default=60)
    status: Mapped[str] = mapped_column(String(24), default=CoreJobStatus.NEW.value)
    electrician_id: Mapped[int | None] = mapped_column(ForeignKey("electricians.id"),
                                                       nullable=True, index=True)
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    offer_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    on_site_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The first check-in: stops the on-site clock for good (kept when the job is re-dispatched).
    clock_stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    photos: Mapped[int] = mapped_column(Integer, default=0)
    signed_off_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    signer_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    last_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The time of the last event applied: the core refuses older events.
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A patrol or inspection generated by an O&M contract: the equipment and the day it is
    # due (one job per item and day, so generating twice adds nothing).
    contract_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("om_contract_items.id"), nullable=True)
    due_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    # The planned-work plan the job is in: who, in which order, from when.
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("dispatch_plans.id"), nullable=True,
                                                index=True)
    planned_electrician_id: Mapped[int | None] = mapped_column(
        ForeignKey("electricians.id"), nullable=True)
    planned_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    planned_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    park: Mapped[Park] = relationship()
    enterprise: Mapped[Enterprise] = relationship()
    provider: Mapped[Provider | None] = relationship()
    electrician: Mapped[Electrician | None] = relationship(foreign_keys=[electrician_id])
    planned_electrician: Mapped[Electrician | None] = relationship(
        foreign_keys=[planned_electrician_id])
    contract_item: Mapped[OmContractItem | None] = relationship()
    plan: Mapped[DispatchPlan | None] = relationship()
    exclusions: Mapped[list[JobExclusion]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True,
        order_by="JobExclusion.id")
    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.seq")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="job", order_by="Attachment.id")

    @property
    def skill_list(self) -> list[str]:
        return _skill_list(self.required_skills)

    def __repr__(self) -> str:
        return f"<Job {self.code} {self.kind} {self.status}>"


class JobExclusion(Base):
    """An electrician never offered this job again: declined, let the offer expire, did not
    show or could not complete it."""

    __tablename__ = "job_exclusions"
    __table_args__ = (
        UniqueConstraint("job_id", "electrician_id"),
        CheckConstraint(_one_of("reason", (JobEventKind.DECLINE, JobEventKind.OFFER_EXPIRED,
                                           JobEventKind.NO_SHOW, JobEventKind.CANNOT_COMPLETE)),
                        name="reason_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    electrician_id: Mapped[int] = mapped_column(ForeignKey("electricians.id"), index=True)
    reason: Mapped[str] = mapped_column(String(24))
    excluded_at: Mapped[datetime] = mapped_column(UTCDateTime)

    job: Mapped[Job] = relationship(back_populates="exclusions")


class JobEvent(Base):
    """One event of a job, in order (`seq` from 1, the job's creation). Append-only: the ORM
    refuses to update or delete a row."""

    __tablename__ = "job_events"
    __table_args__ = (
        UniqueConstraint("job_id", "seq"),
        CheckConstraint("seq >= 1", name="seq_positive"),
        CheckConstraint(_one_of("kind", JobEventKind.ALL), name="kind_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    electrician_id: Mapped[int | None] = mapped_column(ForeignKey("electricians.id"),
                                                       nullable=True, index=True)
    data: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="events")
    actor: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<JobEvent {self.job_id}#{self.seq} {self.kind}>"


@event.listens_for(JobEvent, "before_update")
@event.listens_for(JobEvent, "before_delete")
def _job_events_are_append_only(_mapper, _connection, target: JobEvent) -> None:
    raise ValueError(f"job events are append-only: {target!r} cannot change")


class Attachment(Base):
    """A photo or the customer's signature of a job; the bytes live in the file storage under
    `storage_key` (their SHA-256), only checked images are ever stored."""

    __tablename__ = "attachments"
    __table_args__ = (
        CheckConstraint(_one_of("kind", AttachmentKind.ALL), name="kind_valid"),
        CheckConstraint(_one_of("content_type", IMAGE_TYPES), name="content_type_valid"),
        CheckConstraint("kind <> 'signature' OR content_type = 'image/png'",
                        name="signature_is_png"),
        CheckConstraint("size_bytes > 0", name="size_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    # The event it came with (created: a photo of the request; attach_photo; sign_off).
    event_id: Mapped[int | None] = mapped_column(ForeignKey("job_events.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    storage_key: Mapped[str] = mapped_column(String(128))
    content_type: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    job: Mapped[Job] = relationship(back_populates="attachments")

    def __repr__(self) -> str:
        return f"<Attachment {self.id} {self.kind} of job {self.job_id}>"


# --------------------------------------------------------------------------- O&M operations
# Custody O&M contracts of the energy-cloud butler, alarms from power monitoring, and plans
# of planned work. The rules (patrol calendars, alarm rules, routing) live in the `alliance`
# core; these rows keep their inputs and results.


class PatrolFrequency:
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    ALL: tuple[str, ...] = (DAILY, WEEKLY, MONTHLY)


class OmContract(Base):
    """A custody O&M contract (托管运维): an energy-cloud-butler provider looks after an
    enterprise's equipment, patrolling (or inspecting) it at a frequency within a local
    time-of-day window, from `starts_on` to `ends_on` (open-ended when NULL)."""

    __tablename__ = "om_contracts"
    __table_args__ = (
        CheckConstraint(_one_of("frequency", PatrolFrequency.ALL), name="frequency_valid"),
        CheckConstraint("job_kind IN ('patrol', 'inspection')", name="job_kind_valid"),
        CheckConstraint("window_end > window_start", name="window_valid"),
        CheckConstraint("ends_on IS NULL OR ends_on >= starts_on", name="dates_valid"),
        CheckConstraint("service_minutes > 0", name="service_minutes_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), index=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    frequency: Mapped[str] = mapped_column(String(16))
    job_kind: Mapped[str] = mapped_column(String(16), default="patrol")
    # Local time of day (the park's zone) within which each visit happens.
    window_start: Mapped[time] = mapped_column(Time)
    window_end: Mapped[time] = mapped_column(Time)
    service_minutes: Mapped[int] = mapped_column(Integer, default=30)
    required_skills: Mapped[str] = mapped_column(String(255), default="low_voltage")
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    provider: Mapped[Provider] = relationship()
    enterprise: Mapped[Enterprise] = relationship()
    items: Mapped[list[OmContractItem]] = relationship(
        back_populates="contract", cascade="all, delete-orphan", passive_deletes=True,
        order_by="OmContractItem.id")

    @property
    def skill_list(self) -> list[str]:
        return _skill_list(self.required_skills)

    def __repr__(self) -> str:
        return f"<OmContract {self.code} {self.frequency}>"


class OmContractItem(Base):
    """One piece of equipment under an O&M contract, where it stands."""

    __tablename__ = "om_contract_items"
    __table_args__ = (
        UniqueConstraint("contract_id", "name"),
        CheckConstraint("lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180",
                        name="position_in_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("om_contracts.id", ondelete="CASCADE"),
                                             index=True)
    name: Mapped[str] = mapped_column(String(128))
    equipment_kind: Mapped[str] = mapped_column(String(32), default="")
    lat: Mapped[Decimal] = mapped_column(COORDINATE)
    lon: Mapped[Decimal] = mapped_column(COORDINATE)

    contract: Mapped[OmContract] = relationship(back_populates="items")

    def __repr__(self) -> str:
        return f"<OmContractItem {self.name} of contract {self.contract_id}>"


class AlarmRule:
    LOAD_RATE = "load_rate"
    METERING_GAP = "metering_gap"
    ABNORMAL_READING = "abnormal_reading"
    ALL: tuple[str, ...] = (LOAD_RATE, METERING_GAP, ABNORMAL_READING)


class Alarm(Base):
    """An alarm raised by a power-monitoring rule over metering data, and the job it opened.

    `key` names what the alarm is about (rule, object, first interval) so that checking the
    same data twice raises nothing new."""

    __tablename__ = "alarms"
    __table_args__ = (
        CheckConstraint(_one_of("rule", AlarmRule.ALL), name="rule_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"), index=True)
    rule: Mapped[str] = mapped_column(String(24))
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"),
                                                      nullable=True, index=True)
    transformer_id: Mapped[int | None] = mapped_column(ForeignKey("transformers.id"),
                                                       nullable=True)
    metering_point_id: Mapped[int | None] = mapped_column(ForeignKey("metering_points.id"),
                                                          nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the rule's figures
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), nullable=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    enterprise: Mapped[Enterprise | None] = relationship()
    transformer: Mapped[Transformer | None] = relationship()
    metering_point: Mapped[MeteringPoint | None] = relationship()
    job: Mapped[Job | None] = relationship()

    def __repr__(self) -> str:
        return f"<Alarm {self.key}>"


class DispatchPlan(Base):
    """One solve of planned work (patrols, inspections, non-urgent repairs) for a park's day
    and one dispatch scope: the shared pool (`provider_id` NULL) or one butler provider.

    The jobs it placed point at it (`jobs.plan_id`); `unplaced` is a JSON list of
    {job, reason} for jobs it could not fit. A newer plan of the same scope and day
    supersedes it."""

    __tablename__ = "dispatch_plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    alliance: Mapped[str] = mapped_column(String(32))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"), nullable=True)
    engine: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # the solver's status
    solve_s: Mapped[float] = mapped_column(Float)
    placed: Mapped[int] = mapped_column(Integer)
    travel_minutes: Mapped[int] = mapped_column(Integer)
    unplaced: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    park: Mapped[Park] = relationship()
    provider: Mapped[Provider | None] = relationship()

    def __repr__(self) -> str:
        return f"<DispatchPlan {self.id} {self.day} {self.alliance}>"
