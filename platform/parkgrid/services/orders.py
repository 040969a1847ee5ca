"""Orders (sell listings and buy bids): check, store, amend, cancel, record on chain."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, contains_eager, joinedload, selectinload

from ..canonical import canonical_json, content_hash, order_document, uuid_to_bytes32
from ..chain import ChainRevertError, ChainTimeoutError, enterprise_key
from ..crypto import load_local_account
from ..models import (
    ChainPath,
    ChainStatus,
    ChainWriteRequest,
    Enterprise,
    Feeder,
    Order,
    OrderAction,
    OrderActionKind,
    OrderPeriod,
    OrderSide,
    OrderStatus,
    Role,
    User,
    new_public_id,
)
from . import calendar, grid
from .errors import N_, Conflict, FieldProblem, Forbidden, NotFound, ValidationFailed

STAFF = (Role.SETTLEMENT, Role.AUDITOR, Role.ADMIN)
# Orders per batch request and per batch transaction (about 4,000 gas per item on chain).
MAX_BATCH = 500


@dataclass(frozen=True)
class OrderInput:
    """An order as a user typed it; every field is checked before anything is written."""

    side: str
    delivery_day: str | date | None
    periods: dict  # period index -> quantity in kVA (text or number)
    price: str | Decimal | float | int | None
    all_or_none: bool = False
    min_fraction: str | Decimal | None = None
    enterprise_code: str | None = None


def _decimal(raw, places: int) -> Decimal | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite() or value != value.quantize(Decimal(1).scaleb(-places)):
        return None
    return value


def _own_enterprise(session: Session, user: User, code: str | None) -> Enterprise:
    if user.role != Role.ENTERPRISE or user.enterprise_id is None:
        raise Forbidden(N_("Only an enterprise user can place orders."))
    # The order's checks need its park, feeder and transformer: loaded with it in one query
    # (the limits read the other enterprises' figures they need themselves).
    own = session.get(Enterprise, user.enterprise_id, options=(
        joinedload(Enterprise.park),
        joinedload(Enterprise.feeder).joinedload(Feeder.transformer)))
    if code and code != own.code:
        raise Forbidden(N_("You can only place orders for your own enterprise (%(code)s)."),
                        code=own.code)
    return own


def _check_day(park, raw, now: datetime, problems: list[FieldProblem]) -> date | None:
    open_day = calendar.open_delivery_day(park, now)
    day = raw
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day.strip())
        except ValueError:
            day = None
    if not isinstance(day, date):
        problems.append(FieldProblem("delivery_day", N_("Give the delivery day as YYYY-MM-DD.")))
        return None
    if calendar.park_today(park, now) < day < open_day:
        problems.append(FieldProblem(
            "delivery_day", N_("Gate closure for %(day)s has passed; orders now go to %(open)s."),
            {"day": day.isoformat(), "open": open_day.isoformat()}))
    elif day != open_day:
        problems.append(FieldProblem(
            "delivery_day", N_("Orders are taken for delivery on %(open)s only, not %(day)s."),
            {"open": open_day.isoformat(), "day": day.isoformat()}))
    return day


def validate_order(session: Session, user: User, data: OrderInput, now: datetime, *,
                   replacing: Order | None = None):
    """Every rule an order must meet; a refusal names the rule and the figure that broke it."""
    enterprise = _own_enterprise(session, user, data.enterprise_code)
    park = enterprise.park
    problems: list[FieldProblem] = []
    if data.side not in OrderSide.ALL:
        problems.append(FieldProblem("side", N_("An order is either 'sell' or 'buy'.")))
    day = _check_day(park, data.delivery_day, now, problems)

    n_periods = calendar.periods_per_day(park)
    periods: dict[int, Decimal] = {}
    if not data.periods:
        problems.append(FieldProblem("periods", N_("Give a quantity for at least one period.")))
    for raw_index, raw_qty in (data.periods or {}).items():
        try:
            index = int(raw_index)
        except (TypeError, ValueError):
            index = -1
        if str(raw_index).strip() != str(index) or not 0 <= index < n_periods:
            problems.append(FieldProblem(
                "periods",
                N_("Period %(period)s is not a period of the delivery day (0 to %(last)s)."),
                {"period": raw_index, "last": n_periods - 1}))
            continue
        qty = _decimal(raw_qty, 1)
        if qty is None:
            problems.append(FieldProblem(
                "quantity_kva", N_("Quantity %(value)s is not a number with at most one decimal."),
                {"value": raw_qty}))
        elif qty <= 0:
            problems.append(FieldProblem(
                "quantity_kva", N_("Quantity must be more than 0 kVA (period %(period)s)."),
                {"period": index}))
        else:
            periods[index] = qty

    price = _decimal(data.price, 4)
    if price is None:
        problems.append(FieldProblem(
            "price", N_("The price must be a number with at most 4 decimals.")))
    elif not park.price_min <= price <= park.price_max:
        problems.append(FieldProblem(
            "price", N_("The price must be between %(min)s and %(max)s yuan/kVA·h."),
            {"min": park.price_min, "max": park.price_max}))

    min_fraction = None
    if data.min_fraction not in (None, ""):
        min_fraction = _decimal(data.min_fraction, 4)
        if min_fraction is None or not 0 < min_fraction <= 1:
            problems.append(FieldProblem(
                "min_fraction", N_("The minimum accepted fraction must be above 0 and at most 1.")))

    if day is not None and periods and data.side in OrderSide.ALL and not problems:
        limits = grid.order_limits(session, enterprise, day, data.side,
                                   exclude_order_id=replacing.id if replacing else None)
        for index, qty in sorted(periods.items()):
            limit = limits[index]
            if qty > limit.available:
                problems.append(FieldProblem("quantity_kva", limit.message, {
                    **limit.params, "period": index, "qty": qty}))
    if problems:
        raise ValidationFailed(problems)
    return enterprise, day, periods, price, min_fraction


def _apply(order: Order, enterprise: Enterprise, day, periods, price, min_fraction,
           data: OrderInput, user: User, action: str) -> OrderAction:
    order.delivery_day = day
    order.price = price
    order.all_or_none = bool(data.all_or_none)
    order.min_fraction = min_fraction
    existing = {p.period_index: p for p in order.periods}
    for index in set(existing) - set(periods):
        order.periods.remove(existing[index])
    for index, qty in periods.items():
        if index in existing:
            existing[index].quantity_kva = qty
        else:
            order.periods.append(OrderPeriod(period_index=index, quantity_kva=qty))
    order.periods.sort(key=lambda p: p.period_index)
    return _record_version(order, enterprise, user, action)


def _record_version(order: Order, enterprise: Enterprise, user: User,
                    action: str) -> OrderAction:
    document = order_document(order, enterprise.code)
    order.content_hash = content_hash(document)
    order.chain_status = ChainStatus.PENDING
    order.updated_at = calendar.utcnow()
    entry = OrderAction(version=order.version, action=action, content_hash=order.content_hash,
                        document=canonical_json(document).decode(), requested_by_id=user.id)
    order.actions.append(entry)
    return entry


def create_order(session: Session, user: User, data: OrderInput, now: datetime) -> Order:
    """Check an order and store it with its first action pending on chain; caller commits."""
    enterprise, day, periods, price, min_fraction = validate_order(session, user, data, now)
    # The enterprise is given as well as its id: the answer shows its code, read from here.
    order = Order(enterprise_id=enterprise.id, enterprise=enterprise, created_by_id=user.id,
                  side=data.side, version=1, chain_version=0, status=OrderStatus.ACTIVE,
                  periods=[], actions=[])
    _apply(order, enterprise, day, periods, price, min_fraction, data, user,
           OrderActionKind.NEW)
    session.add(order)
    session.flush()
    return order


def create_orders(session: Session, user: User, items: list[OrderInput],
                  now: datetime) -> list[Order]:
    """Check and store many orders at once, all or none; they go on chain in one batch.

    Each order is checked against the ones before it in the list, as if placed in turn.
    """
    if not 1 <= len(items) <= MAX_BATCH:
        raise ValidationFailed([FieldProblem(
            "orders", N_("Send between 1 and %(max)s orders at once."), {"max": MAX_BATCH})])
    orders, problems = [], []
    for index, data in enumerate(items):
        try:
            order = create_order(session, user, data, now)
        except ValidationFailed as exc:
            problems.extend(FieldProblem(f"orders[{index}].{p.field}", p.message, p.params)
                            for p in exc.problems)
            continue
        order.chain_path = ChainPath.BATCH
        orders.append(order)
    if problems:
        raise ValidationFailed(problems)
    return orders


def _owned_open_order(session: Session, user: User, public_id: str, now: datetime) -> Order:
    order = get_order(session, user, public_id)
    if user.role != Role.ENTERPRISE or order.enterprise_id != user.enterprise_id:
        raise Forbidden(N_("Only the enterprise that placed an order can change it."))
    if order.status == OrderStatus.CANCELLED:
        raise Conflict(N_("This order is cancelled."))
    park = order.enterprise.park
    if now >= calendar.gate_closure(park, order.delivery_day):
        raise Conflict(N_("Gate closure for %(day)s has passed; the order can no longer change."),
                       day=order.delivery_day.isoformat())
    if order.chain_version == 0:
        raise Conflict(N_("The order is not on the chain yet; change it once it is recorded."))
    return order


def amend_order(session: Session, user: User, public_id: str, data: OrderInput,
                now: datetime) -> Order:
    order = _owned_open_order(session, user, public_id, now)
    if data.side != order.side:
        raise ValidationFailed([FieldProblem("side", N_("An order's side cannot change."))])
    enterprise, day, periods, price, min_fraction = validate_order(
        session, user, data, now, replacing=order)
    if day != order.delivery_day:
        raise ValidationFailed([FieldProblem("delivery_day",
                                             N_("An order's delivery day cannot change."))])
    order.version += 1
    _apply(order, enterprise, day, periods, price, min_fraction, data, user,
           OrderActionKind.AMEND)
    session.flush()
    return order


def cancel_order(session: Session, user: User, public_id: str, now: datetime) -> Order:
    order = _owned_open_order(session, user, public_id, now)
    order.version += 1
    order.status = OrderStatus.CANCELLED
    _record_version(order, order.enterprise, user, OrderActionKind.CANCEL)
    session.flush()
    return order


def visible_orders(session: Session, user: User, limit: int = 500) -> list[Order]:
    """An enterprise sees its own orders; staff and auditors see all."""
    query = select(Order).options(selectinload(Order.periods)).order_by(Order.id.desc())
    if user.role == Role.ENTERPRISE:
        query = query.where(Order.enterprise_id == user.enterprise_id)
    elif user.role not in STAFF:
        raise Forbidden(N_("Your role cannot see orders."))
    return list(session.scalars(query.limit(limit)))


def get_order(session: Session, user: User, public_id: str) -> Order:
    if user.role not in (Role.ENTERPRISE, *STAFF):
        raise Forbidden(N_("Your role cannot see orders."))
    order = session.scalar(select(Order).where(Order.public_id == public_id))
    if order is None or (user.role == Role.ENTERPRISE
                         and order.enterprise_id != user.enterprise_id):
        raise NotFound(N_("No such order."))
    return order


def request_chain_write(session: Session, order: Order) -> bool:
    """Count the order's new action as waiting for its enterprise's chain writer, as the last
    statement before the commit. True when it is the first since the writer last started:
    the caller then queues the writer (`record_enterprise_orders`) after the commit.

    The count's row stays locked until the commit, and the writer resets it before reading
    what is pending, so every committed action is either read by a writer already running
    or counted from zero again (and queues a new one): none is left without a writer.
    """
    statement = _count_write_request(session.bind.dialect.name)
    return session.scalar(statement, {"enterprise": order.enterprise_id}) == 1


@functools.cache
def _count_write_request(dialect: str):
    """INSERT … ON CONFLICT DO UPDATE … RETURNING for the database at hand (built once: it
    runs with every order)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(ChainWriteRequest)
            .values(enterprise_id=bindparam("enterprise"), waiting=1)
            .on_conflict_do_update(index_elements=[ChainWriteRequest.enterprise_id],
                                   set_={"waiting": ChainWriteRequest.waiting + 1})
            .returning(ChainWriteRequest.waiting))


def record_enterprise_orders(platform, enterprise_id: int) -> int:
    """An enterprise's chain writer: write every pending action of its orders, those waiting
    together in one batch per day (see `outbox_groups`); returns how many orders it took."""
    with platform.unit_of_work() as session:
        session.execute(update(ChainWriteRequest)
                        .where(ChainWriteRequest.enterprise_id == enterprise_id)
                        .values(waiting=0))
    with platform.unit_of_work() as session:
        batches, singles = outbox_groups(session, enterprise_id=enterprise_id)
    for ids in batches:
        record_batch_on_chain(platform, ids)
    for order_id in singles:
        record_order_on_chain(platform, order_id)
    return sum(map(len, batches)) + len(singles)


def record_order_on_chain(platform, order_id: int) -> str:
    """Write an order's pending actions on chain, in version order; safe to run again.

    An order placed in a batch keeps to batches (the contract keeps an order id to one path).

    The chain keeps each order's version, so a re-delivered task (or one whose earlier
    attempt was mined but died before the database commit) sees what is already there and
    only copies it into the database instead of writing twice.
    """
    with platform.unit_of_work() as session:
        order = session.get(Order, order_id)
        if order is None:
            return "missing"
        if order.chain_status == ChainStatus.RECORDED:
            # Every action of it is on chain already (a batch took it along, or this task
            # is delivered again): nothing to write.
            return order.chain_status
        batched = order.chain_path == ChainPath.BATCH
        together = [] if batched else _waiting_together(session, order)
    if batched:
        record_batch_on_chain(platform, [order_id])
        with platform.unit_of_work() as session:
            return session.get(Order, order_id).chain_status
    if together:
        # Orders arrive faster than the chain takes one transaction each: this order and the
        # others of its enterprise and day still waiting for their first write go in one
        # batch (as the outbox batches orders that waited through an outage). Their own
        # tasks then find them recorded.
        record_batch_on_chain(platform, together)
        with platform.unit_of_work() as session:
            return session.get(Order, order_id).chain_status
    if not _mark_single_sent(platform, order_id):
        with platform.unit_of_work() as session:
            return session.get(Order, order_id).chain_status
    with platform.unit_of_work() as session:
        order = session.get(Order, order_id, with_for_update=True)
        if order.chain_path == ChainPath.BATCH:
            # A batch took the order over while this task waited for the lock (the outbox
            # batches orders that waited together): the batch task records it.
            return order.chain_status
        pending = [a for a in order.actions if a.chain_status == ChainStatus.PENDING]
        if not pending:
            return order.chain_status
        enterprise = order.enterprise
        market = platform.market(session)
        chain_order_id = uuid_to_bytes32(order.public_id)
        account = load_local_account(platform.keybox, enterprise.chain_account)
        _lock_signer(session, enterprise.chain_account)
        ensure_nothing_in_flight(market, account.address)
        for action in sorted(pending, key=lambda a: a.version):
            record = market.order(chain_order_id)
            if (0 if record is None else record.actions) < action.version:
                try:
                    if action.action == OrderActionKind.NEW:
                        ensure_day_open(platform, session, market, enterprise.park,
                                        order.delivery_day)
                        market.record_order(account, chain_order_id,
                                            enterprise_key(enterprise.code),
                                            calendar.day_number(order.delivery_day), order.side,
                                            _hash_bytes(action.content_hash))
                    elif action.action == OrderActionKind.AMEND:
                        market.amend_order(account, chain_order_id,
                                           _hash_bytes(action.content_hash))
                    else:
                        market.cancel_order(account, chain_order_id)
                except ChainRevertError as exc:
                    # Refused for good (e.g. it reached the chain after gate closure): this
                    # and the later versions stay off chain; the chain's version stands.
                    for later in pending:
                        if later.version >= action.version:
                            later.chain_status = ChainStatus.FAILED
                            later.chain_error = str(exc)
                    order.chain_status = ChainStatus.FAILED
                    order.chain_error = str(exc)
                    return order.chain_status
                record = market.order(chain_order_id)
            action.chain_status = ChainStatus.RECORDED
            if record.actions == action.version:
                action.chain_tx_hash = record.tx_hash
                action.chain_block_number = record.block_number
            order.chain_version = action.version
            order.chain_tx_hash = action.chain_tx_hash
            order.chain_block_number = action.chain_block_number
        order.chain_status = ChainStatus.RECORDED
        order.chain_error = None
        return order.chain_status


def _mark_single_sent(platform, order_id: int) -> bool:
    """Before an order's first version is sent in a transaction of its own, note that (and
    commit it): from then on no batch takes the order, since the chain may hold it before
    the database knows. False when there is nothing to send on the single path.

    The note is made only once the node answers (nothing in flight from the key), so orders
    placed while it was down can still go in one batch when it returns."""
    with platform.unit_of_work() as session:
        order = session.get(Order, order_id, with_for_update=True)
        if order.chain_path == ChainPath.BATCH or order.chain_status == ChainStatus.RECORDED:
            return False
        if order.chain_version == 0 and order.single_sent_at is None:
            market = platform.market(session)
            ensure_nothing_in_flight(market, order.enterprise.chain_account.address)
            order.single_sent_at = calendar.utcnow()
    return True


# Batch an order's first write with others of its enterprise and day from this many waiting.
COALESCE_FROM = 3


def _batchable(query):
    """Orders whose first version may go in a batch: nothing of theirs on chain, and no
    single write of it ever sent."""
    return query.where(Order.chain_status == ChainStatus.PENDING, Order.chain_version == 0,
                       Order.chain_path == ChainPath.SINGLE, Order.single_sent_at.is_(None))


def _waiting_together(session: Session, order: Order) -> list[int]:
    """The orders of this order's enterprise and day waiting for their first chain write on
    the single path, this one among them, when at least COALESCE_FROM are (else none). One
    whose single write was ever sent is left to its own path (the chain may hold it, its
    commit lost). A long list is written in several batches."""
    ids = list(session.scalars(_batchable(select(Order.id)).where(
        Order.enterprise_id == order.enterprise_id,
        Order.delivery_day == order.delivery_day).order_by(Order.id)))
    return ids if order.id in ids and len(ids) >= COALESCE_FROM else []


def record_batch_on_chain(platform, order_ids: list[int]) -> int:
    """Write the pending actions of these orders in batches, one per enterprise and day.

    Each action is first given its batch id and committed; only then is the batch sent. A
    task that died after sending finds its batch on chain and just records the result.
    Returns the number of batches written or found.
    """
    with platform.unit_of_work() as session:
        orders = session.scalars(select(Order).where(Order.id.in_(order_ids))
                                 .options(selectinload(Order.actions))
                                 .order_by(Order.id).with_for_update()).all()
        groups: dict[tuple[int, date], list[OrderAction]] = {}
        for order in orders:
            if order.chain_version == 0 and order.single_sent_at is None:
                order.chain_path = ChainPath.BATCH  # nothing sent on chain yet: free to choose
            if order.chain_path != ChainPath.BATCH:
                continue
            for action in sorted(order.actions, key=lambda a: a.version):
                if action.chain_status == ChainStatus.PENDING and action.chain_batch_id is None:
                    groups.setdefault((order.enterprise_id, order.delivery_day),
                                      []).append(action)
        for actions in groups.values():
            for start in range(0, len(actions), MAX_BATCH):
                batch_id = "0x" + uuid_to_bytes32(new_public_id()).hex()
                for action in actions[start:start + MAX_BATCH]:
                    action.chain_batch_id = batch_id
    with platform.unit_of_work() as session:
        batch_ids = sorted(set(session.scalars(
            select(OrderAction.chain_batch_id).where(
                OrderAction.order_id.in_(order_ids),
                OrderAction.chain_status == ChainStatus.PENDING,
                OrderAction.chain_batch_id.is_not(None)))))
    for batch_id in batch_ids:
        _send_batch(platform, batch_id)
    return len(batch_ids)


def _send_batch(platform, batch_id: str) -> None:
    with platform.unit_of_work() as session:
        actions = session.scalars(
            select(OrderAction).join(OrderAction.order)
            .options(contains_eager(OrderAction.order).selectinload(Order.actions))
            .where(OrderAction.chain_batch_id == batch_id)
            .order_by(Order.id, OrderAction.version).with_for_update()).all()
        if not actions or all(a.chain_status != ChainStatus.PENDING for a in actions):
            return
        first = actions[0].order
        enterprise = first.enterprise
        market = platform.market(session)
        chain_batch_id = bytes.fromhex(batch_id[2:])
        account = load_local_account(platform.keybox, enterprise.chain_account)
        _lock_signer(session, enterprise.chain_account)
        ensure_nothing_in_flight(market, account.address)
        record = market.batch(chain_batch_id)
        if record is None:
            try:
                ensure_day_open(platform, session, market, enterprise.park, first.delivery_day)
                # Its receipt says where the batch is: no need to read it back.
                record = market.record_order_batch(
                    account, chain_batch_id, enterprise_key(enterprise.code),
                    calendar.day_number(first.delivery_day),
                    [(uuid_to_bytes32(a.order.public_id), a.action, a.order.side,
                      _hash_bytes(a.content_hash) if a.action != OrderActionKind.CANCEL
                      else b"\x00" * 32) for a in actions])
            except ChainRevertError as exc:
                for action in actions:
                    action.chain_status = action.order.chain_status = ChainStatus.FAILED
                    action.chain_error = action.order.chain_error = str(exc)
                return
        for action in actions:
            order = action.order
            action.chain_status = ChainStatus.RECORDED
            action.chain_tx_hash = record.tx_hash
            action.chain_block_number = record.block_number
            order.chain_version = max(order.chain_version, action.version)
            order.chain_tx_hash = record.tx_hash
            order.chain_block_number = record.block_number
            if all(a.chain_status == ChainStatus.RECORDED for a in order.actions):
                order.chain_status = ChainStatus.RECORDED
                order.chain_error = None


def _lock_signer(session: Session, chain_account) -> None:
    """Hold the signing key's row until this write is committed: one chain write at a time
    per key across every worker process. Two at once would race for the same nonce (each
    process counts nonces on its own), and the loser's write would be refused."""
    session.refresh(chain_account, with_for_update=True)


def ensure_nothing_in_flight(market, address: str) -> None:
    """Refuse to read the chain's record of a write while the signing key has transactions
    sent but not yet mined.

    A task delivered again after its worker died waiting for a transaction to be mined would
    not see that transaction in the chain's state and send the same action a second time: an
    amendment recorded twice, or a new order or batch refused as a duplicate and wrongly
    marked failed. ChainTimeoutError makes the task retry once the transaction is mined.
    """
    waiting = _in_flight(market, address)
    if waiting:
        raise ChainTimeoutError(
            f"{waiting} earlier transaction(s) from {address} are not mined yet; "
            "the write is tried again once they are")


def _in_flight(market, address: str) -> int:
    """How many transactions of `address` the node holds sent but not yet mined."""
    chain = market.chain
    with chain.guard():
        sent = int(chain.w3.eth.get_transaction_count(address, "pending"))
        mined = int(chain.w3.eth.get_transaction_count(address, "latest"))
    return max(0, sent - mined)


def ensure_day_open(platform, session: Session, market, park, delivery_day: date) -> None:
    """Open the market day on chain (with its gate closure) before its first order."""
    from .chain_setup import operator_account

    if market.day(calendar.day_number(delivery_day)) is not None:
        return
    gate = int(calendar.gate_closure(park, delivery_day).timestamp())
    operator = load_local_account(platform.keybox, operator_account(session, platform.keybox))
    try:
        market.open_day(operator, calendar.day_number(delivery_day), gate)
    except ChainRevertError as exc:
        if exc.error_name != "CapacityMarketDayAlreadyOpen":  # another task opened it first
            raise


def pending_by_enterprise(session: Session,
                          changed_before: datetime | None = None) -> dict[int, int]:
    """How many orders of each enterprise wait for a chain write (with `changed_before`,
    counting only those last changed before then)."""
    query = (select(Order.enterprise_id, func.count()).where(
        Order.chain_status == ChainStatus.PENDING).group_by(Order.enterprise_id))
    if changed_before is not None:
        query = query.where(Order.updated_at < changed_before)
    return dict(session.execute(query).tuples().all())


def outbox_groups(session: Session,
                  enterprise_id: int | None = None) -> tuple[list[list[int]], list[int]]:
    """The outbox split for sending: batches, and orders to send one by one (with
    `enterprise_id`, that enterprise's only).

    Orders of one enterprise and day that have nothing on chain yet and waited together
    (e.g. while the node was down) go in one batch; the rest keep their path.
    """
    query = (select(Order.id, Order.enterprise_id, Order.delivery_day, Order.chain_version,
                    Order.chain_path, Order.single_sent_at)
             .where(Order.chain_status == ChainStatus.PENDING).order_by(Order.id))
    if enterprise_id is not None:
        query = query.where(Order.enterprise_id == enterprise_id)
    rows = session.execute(query).all()
    groups: dict[tuple, list] = {}
    singles = []
    for row in rows:
        if ((row.chain_version == 0 and row.single_sent_at is None)
                or row.chain_path == ChainPath.BATCH):
            groups.setdefault((row.enterprise_id, row.delivery_day), []).append(row)
        else:
            singles.append(row.id)
    batches = []
    for members in groups.values():
        if len(members) == 1 and members[0].chain_path == ChainPath.SINGLE:
            singles.append(members[0].id)
            continue
        ids = [member.id for member in members]
        batches.extend(ids[i:i + MAX_BATCH] for i in range(0, len(ids), MAX_BATCH))
    return batches, sorted(singles)


def _hash_bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])
