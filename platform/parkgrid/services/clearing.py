"""Clearing a delivery day: build the book from the chain-recorded orders, solve, publish, void.

The book is the orders as the chain holds them at gate closure: each order's latest
recorded version (its stored canonical document), cancelled ones left out. The result file
is the matching core's canonical bytes; its hash, the hash of the run's input file (network,
limits, base loads, rules) and its trade lines are the Merkle leaves whose root is published
on chain, so each enterprise's lines can be proved against it and an auditor can clear the
day again from exactly what the run used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cached_property

from eth_utils import keccak
from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

import matching

from ..canonical import canonical_json, merkle_root, uuid_to_bytes32
from ..chain import ChainRevertError
from ..crypto import load_local_account
from ..models import (
    ChainAccount,
    ClearingAllocation,
    ClearingRun,
    ClearingStatus,
    Order,
    Park,
    Role,
    User,
)
from . import calendar, grid
from .errors import N_, Conflict, Forbidden, NotFound

HOURS_PER_MINUTE = Decimal(1) / Decimal(60)


@dataclass(frozen=True)
class TradeLine:
    """One accepted order's total for the day: what is recorded on chain for it."""

    order_public_id: str
    quantity_tenths_kvah: int
    amount_fen: int
    detail: dict

    def leaf(self) -> bytes:
        return keccak(canonical_json(self.as_dict()))

    def as_dict(self) -> dict:
        return {"order": self.order_public_id, "quantity_0_1kvah": self.quantity_tenths_kvah,
                "amount_fen": self.amount_fen, "detail": self.detail}


@dataclass(frozen=True)
class DayResult:
    """A day's clearing: one matching result per group of enterprises the park's trade scope
    lets trade together (the whole park, each substation, or each transformer).

    Groups never share a limited asset, so clearing them apart is exact. The file holds each
    group's canonical matching bytes unchanged, so each can be re-checked on its own.
    """

    scope: str
    groups: tuple[tuple[str, matching.ClearingResult], ...]

    @cached_property  # a frozen dataclass keeps it: read once per order in trade_lines
    def accepted(self) -> dict:
        return {k: v for _key, r in self.groups for k, v in r.accepted.items()}

    @cached_property
    def order_prices(self) -> dict:
        return {k: v for _key, r in self.groups for k, v in r.order_prices.items()}

    @property
    def status(self) -> str:
        """The weakest of the groups' statuses that traded: feasible < optimal; else empty."""
        statuses = {r.status for _key, r in self.groups}
        for status in ("feasible", "optimal"):
            if status in statuses:
                return status
        return "empty"

    @property
    def reason(self) -> str | None:
        reasons = [(key, r.reason) for key, r in self.groups if r.reason]
        if len(self.groups) == 1:
            return reasons[0][1] if reasons else None
        return "; ".join(f"{key}: {reason}" for key, reason in reasons) or None

    @property
    def welfare(self) -> Decimal:
        return sum((r.welfare for _key, r in self.groups), Decimal(0))

    @property
    def congestion_rent(self) -> Decimal:
        return sum((r.congestion_rent for _key, r in self.groups), Decimal(0))

    @property
    def hit_time_limit(self) -> bool:
        return any(r.hit_time_limit for _key, r in self.groups)

    def canonical_bytes(self) -> bytes:
        return canonical_json({"scope": self.scope, "groups": [
            {"key": key, "result": r.canonical_bytes().decode()} for key, r in self.groups]})

    @property
    def result_hash(self) -> str:
        return "0x" + hashlib.sha256(self.canonical_bytes()).hexdigest()

    @classmethod
    def from_canonical_bytes(cls, data: bytes) -> DayResult:
        document = json.loads(data)
        return cls(document["scope"], tuple(
            (g["key"], matching.ClearingResult.from_canonical_bytes(g["result"].encode()))
            for g in document["groups"]))


def scope_key(park: Park, enterprise) -> str:
    """The group of the park's trade scope an enterprise trades in."""
    if park.trade_scope == "substation":
        return enterprise.feeder.transformer.substation.code
    if park.trade_scope == "transformer":
        return enterprise.feeder.transformer.code
    return "park"


def clear_day(instance: matching.ClearingInstance, scope: str, groups: dict[str, str], *,
              time_limit_s: float) -> DayResult:
    """Clear each trade-scope group of the book on its own (the whole park by default);
    `groups` names each enterprise's group."""
    by_group: dict[str, list] = {}
    for order in instance.orders:
        by_group.setdefault(groups[order.enterprise], []).append(order)
    if not by_group:
        by_group = {"park": []}
    return DayResult(scope, tuple(
        (key, matching.clear(dataclasses.replace(instance, orders=tuple(group)),
                             time_limit_s=time_limit_s))
        for key, group in sorted(by_group.items())))


def input_document(park: Park, instance: matching.ClearingInstance) -> dict:
    """Everything a clearing run used besides its orders, as published with its result:
    periods and their length, rules, the trade scope's groups, the network with its limits
    and base loads. `instance_from_input` with the on-chain orders gives the run's instance."""
    return {
        "type": "clearing-input",
        "park": park.code,
        "periods": instance.periods,
        "period_minutes": park.period_minutes,
        "pricing": instance.pricing,
        "tie_rule": instance.tie_rule,
        "scope": park.trade_scope,
        "groups": {e.code: scope_key(park, e) for e in park.enterprises},
        "assets": [{"code": a.code, "kind": a.kind, "limit_kva": format(a.limit_kva, "f"),
                    "base_load": [format(x, "f") for x in a.base_load], "parent": a.parent}
                   for a in instance.network.assets],
        "enterprise_feeder": dict(sorted(instance.network.enterprise_feeder.items())),
    }


def instance_from_input(document: dict, orders: list[matching.Order]
                        ) -> matching.ClearingInstance:
    """The clearing instance of a published input document and the day's book."""
    assets = tuple(matching.Asset(code=a["code"], kind=a["kind"],
                                  limit_kva=Decimal(a["limit_kva"]),
                                  base_load=tuple(Decimal(x) for x in a["base_load"]),
                                  parent=a["parent"]) for a in document["assets"])
    return matching.ClearingInstance(
        periods=document["periods"], orders=tuple(orders),
        network=matching.Network(assets=assets,
                                 enterprise_feeder=dict(document["enterprise_feeder"])),
        pricing=document["pricing"], tie_rule=document["tie_rule"])


def book_order(document: dict, priority: int) -> matching.Order:
    """The matching order of a recorded order version's canonical document."""
    return matching.Order(
        order_id=document["order"], side=document["side"], enterprise=document["enterprise"],
        price=Decimal(document["price"]),
        quantities=tuple((int(p), Decimal(q)) for p, q in document["periods"]),
        all_or_none=document["all_or_none"],
        min_fraction=(None if document["min_fraction"] is None
                      else Decimal(document["min_fraction"])),
        priority=priority)


def book(session: Session, park: Park, day: date) -> list[tuple[Order, dict]]:
    """Every order of the day as the chain holds it: (order, document of its chain version)."""
    orders = session.scalars(select(Order).join(Order.enterprise)
                             .where(Order.delivery_day == day, Order.chain_version > 0)
                             .order_by(Order.public_id)).all()
    entries = []
    for order in orders:
        if order.enterprise.park_id != park.id:
            continue
        action = next(a for a in order.actions if a.version == order.chain_version)
        document = json.loads(action.document)
        if document["status"] == "cancelled" or action.action == "cancel":
            continue
        entries.append((order, document))
    return entries


def build_instance(session: Session, park: Park, day: date) -> tuple[matching.ClearingInstance,
                                                                        dict[str, Order]]:
    n = calendar.periods_per_day(park)
    demand = grid.expected_demand(session, park, day)
    feeder_loads, transformer_loads = grid.asset_loads(park, demand)
    assets = []
    enterprise_feeder = {}
    for substation in park.substations:
        for transformer in substation.transformers:
            assets.append(matching.Asset(
                code=transformer.code, kind="transformer", limit_kva=transformer.allowed_kva,
                base_load=tuple(transformer_loads.get(transformer.id, [Decimal(0)] * n)),
                parent=None))
            for feeder in transformer.feeders:
                assets.append(matching.Asset(
                    code=feeder.code, kind="feeder", limit_kva=feeder.thermal_limit_kva,
                    base_load=tuple(feeder_loads.get(feeder.id, [Decimal(0)] * n)),
                    parent=transformer.code))
    for enterprise in park.enterprises:
        enterprise_feeder[enterprise.code] = enterprise.feeder.code
    by_id: dict[str, Order] = {}
    orders = []
    for order, document in book(session, park, day):
        first = min(order.actions, key=lambda a: a.version)
        by_id[order.public_id] = order
        # Time priority: the earliest on-chain record first.
        orders.append(book_order(document, first.chain_block_number or 0))
    instance = matching.ClearingInstance(
        periods=n, orders=tuple(orders),
        network=matching.Network(assets=tuple(assets), enterprise_feeder=enterprise_feeder),
        pricing=park.pricing_rule, tie_rule=park.tie_rule)
    return instance, by_id


def trade_lines(period_minutes: int, result, sides: dict[str, str]) -> list[TradeLine]:
    """Each accepted order's day total in 0.1 kVA·h and integer fen (buyers pay, sellers get);
    `sides` holds each order's side by public id."""
    hours = Decimal(period_minutes) * HOURS_PER_MINUTE
    lines = []
    for order_id in sorted(sides):
        periods = []
        quantity = Decimal(0)
        amount = Decimal(0)
        for period, qty, price in result_allocations(result, order_id):
            if qty <= 0:
                continue
            periods.append([period, format(qty, "f"), format(price, "f")])
            quantity += qty * hours
            amount += qty * hours * price
        if not periods:
            continue
        sign = 1 if sides[order_id] == "buy" else -1
        lines.append(TradeLine(
            order_public_id=order_id,
            quantity_tenths_kvah=int((quantity * 10).to_integral_value(ROUND_HALF_EVEN)),
            amount_fen=sign * int((amount * 100).to_integral_value(ROUND_HALF_EVEN)),
            detail={"side": sides[order_id], "periods": periods}))
    return lines


def result_leaves(result_file: bytes, lines: list[TradeLine],
                  input_file: bytes | None = None) -> list[bytes]:
    """The leaves of the published root: the whole result file first, then the input file the
    run was cleared with (runs stored before it was kept have none), then each trade line.

    The root so commits to both files and lets each enterprise prove its own line.
    """
    inputs = [] if input_file is None else [keccak(b"input:" + input_file)]
    return [keccak(result_file), *inputs] + [line.leaf() for line in lines]


def result_allocations(result, order_id: str):
    """(period, accepted kVA, settlement price) of one order, from the matching result."""
    for period, qty in sorted(result.accepted.get(order_id, {}).items()):
        yield period, Decimal(qty), Decimal(result.order_prices[order_id][period])


def run_clearing(platform, park_id: int, day: date, *, user_id: int | None = None,
                 now: datetime | None = None, time_limit_s: float = 60.0) -> int:
    """Clear one park's delivery day after its gate closed; returns the run id.

    Idempotent: a day with a run that is not voided gets no second run.
    """
    now = now or calendar.utcnow()
    with platform.unit_of_work() as session:
        park = session.get(Park, park_id, with_for_update=True)
        if park is None:
            raise NotFound(N_("No such park."))
        if now < calendar.gate_closure(park, day):
            raise Conflict(N_("The gate for %(day)s is still open."), day=day.isoformat())
        existing = session.scalar(select(ClearingRun).where(
            ClearingRun.park_id == park_id, ClearingRun.delivery_day == day,
            ClearingRun.status != ClearingStatus.VOIDED))
        if existing is not None:
            return existing.id
        run_number = 1 + (session.scalar(select(func.max(ClearingRun.run_number)).where(
            ClearingRun.park_id == park_id, ClearingRun.delivery_day == day)) or 0)
        instance, orders = build_instance(session, park, day)
        inputs = input_document(park, instance)
        result = clear_day(instance, inputs["scope"], inputs["groups"],
                           time_limit_s=time_limit_s)
        lines = trade_lines(park.period_minutes, result,
                            {key: order.side for key, order in orders.items()})
        run = ClearingRun(
            park_id=park_id, delivery_day=day, run_number=run_number,
            status=ClearingStatus.CLEARED, pricing_rule=park.pricing_rule,
            tie_rule=park.tie_rule, result_hash=result.result_hash,
            result_root="0x" + merkle_root(result_leaves(
                result.canonical_bytes(), lines, canonical_json(inputs))).hex(),
            result_file=result.canonical_bytes(), input_file=canonical_json(inputs),
            summary=json.dumps(summary(park, instance, result, lines), sort_keys=True),
            created_by_id=user_id)
        for order_id, order in orders.items():
            for period, qty, price in result_allocations(result, order_id):
                if qty > 0:
                    run.allocations.append(ClearingAllocation(
                        order_id=order.id, period_index=period, quantity_kva=qty, price=price))
        session.add(run)
        session.flush()
        return run.id


def _plain(value: Decimal) -> str:
    """A Decimal without trailing zeros or an exponent: 3.97000 → "3.97", 1E+2 → "100"."""
    return format(value.normalize(), "f")


def summary(park: Park, instance, result, lines: list[TradeLine]) -> dict:
    """The figures staff review before publishing (all strings, no floats).

    The matching core counts money for one hour of each period; a period may be shorter.
    """
    hours = Decimal(park.period_minutes) * HOURS_PER_MINUTE
    return {
        "status": result.status,
        "reason": result.reason,
        "orders": len(instance.orders),
        "accepted_orders": len(lines),
        "welfare_yuan": _plain(result.welfare * hours),
        "congestion_rent_yuan": _plain(result.congestion_rent * hours),
        "traded_kvah": format(Decimal(sum(line.quantity_tenths_kvah for line in lines
                                          if line.amount_fen > 0)) / 10, "f"),
        "hit_time_limit": result.hit_time_limit,
    }


def _staff_signer(session: Session, platform, user: User):
    if user.role != Role.SETTLEMENT:
        raise Forbidden(N_("Only settlement staff can publish or void a clearing."))
    account = session.scalar(select(ChainAccount).where(
        ChainAccount.user_id == user.id, ChainAccount.purpose == "staff"))
    if account is None:
        raise Conflict(N_("You have no chain signing key yet; ask the operator to set one up."))
    return load_local_account(platform.keybox, account)


def publish(platform, run_id: int, user_id: int) -> ClearingRun:
    """Record the run's trades and its Merkle root on chain; a day is published once."""
    with platform.unit_of_work() as session:
        run = session.get(ClearingRun, run_id, with_for_update=True)
        if run is None:
            raise NotFound(N_("No such clearing run."))
        if run.status == ClearingStatus.PUBLISHED:
            if run.published_by_id not in (None, user_id):
                # Two staff members published at once: the one who came second is told so.
                first = session.get(User, run.published_by_id)
                raise Conflict(N_("%(name)s has already published this clearing run."),
                               name=first.display_name)
            return run
        if run.status != ClearingStatus.CLEARED:
            raise Conflict(N_("This clearing run was voided."))
        user = session.get(User, user_id)
        signer = _staff_signer(session, platform, user)
        market = platform.market(session)
        day_number = calendar.day_number(run.delivery_day)
        # No order of the day reached the chain when the day was never opened there: there
        # is nothing to anchor, and the (empty) result is published off chain only.
        if market.day(day_number) is not None:
            try:
                _anchor(market, signer, run, day_number)
            except ChainRevertError as exc:
                if exc.error_name == "CapacityMarketGateOpen":
                    # The chain judges the gate by its own block time, which may trail ours.
                    raise Conflict(N_("The chain's clock has not reached the gate yet; "
                                      "publish again in a few seconds.")) from exc
                raise
        run.status = ClearingStatus.PUBLISHED
        run.published_by_id = user.id
        run.published_at = calendar.utcnow()
        return run


def _anchor(market, signer, run: ClearingRun, day_number: int) -> None:
    """Record the run's trades and publish its root, finishing what an earlier try began."""
    result = DayResult.from_canonical_bytes(run.result_file)
    session = object_session(run)
    orders = {o.public_id: o for o in session.scalars(
        select(Order).where(Order.public_id.in_(list(result.accepted))))}
    lines = trade_lines(run.park.period_minutes, result,
                        {key: order.side for key, order in orders.items()})
    record = market.clearing_run(day_number, run.run_number)
    if not record.published:
        # Trades go in fixed chunks in a fixed order, so a task that died part way through
        # finds the first ones on chain and sends only the rest.
        market.record_trades(signer, day_number, run.run_number, [
            market.trade_item(uuid_to_bytes32(line.order_public_id),
                              line.quantity_tenths_kvah, line.amount_fen, line.leaf())
            for line in lines[record.trade_count:]])
        try:
            receipt = market.publish_clearing(signer, day_number, run.run_number,
                                              bytes.fromhex(run.result_root[2:]), len(lines))
        except ChainRevertError as exc:
            if exc.error_name != "CapacityMarketAlreadyPublished":
                raise
        else:
            run.publish_tx_hash = receipt.tx_hash
            run.publish_block_number = receipt.block_number
            return
    run.publish_block_number = market.clearing_run(day_number, run.run_number).published_block


def void(platform, run_id: int, user_id: int, reason: str) -> ClearingRun:
    """Void a published day with a written reason (recorded on chain) so it can be re-cleared."""
    reason = (reason or "").strip()
    if not reason:
        raise Conflict(N_("Give a reason for voiding the clearing."))
    with platform.unit_of_work() as session:
        run = session.get(ClearingRun, run_id, with_for_update=True)
        if run is None:
            raise NotFound(N_("No such clearing run."))
        if run.status != ClearingStatus.PUBLISHED:
            raise Conflict(N_("Only a published clearing can be voided."))
        user = session.get(User, user_id)
        signer = _staff_signer(session, platform, user)
        market = platform.market(session)
        market.void_clearing(signer, calendar.day_number(run.delivery_day), run.run_number,
                             reason)
        run.status = ClearingStatus.VOIDED
        run.void_reason = reason
        run.voided_by_id = user.id
        return run


def days_to_clear(session: Session, now: datetime) -> list[tuple[int, date]]:
    """(park, delivery day) pairs whose gate has closed, with recorded orders and no run yet."""
    due = []
    for park in session.scalars(select(Park)):
        today = calendar.park_today(park, now)
        for day in (today, today + timedelta(days=1)):
            if now < calendar.gate_closure(park, day):
                continue
            has_orders = session.scalar(select(func.count()).select_from(Order).join(
                Order.enterprise).where(Order.delivery_day == day, Order.chain_version > 0))
            has_run = session.scalar(select(func.count()).select_from(ClearingRun).where(
                ClearingRun.park_id == park.id, ClearingRun.delivery_day == day))
            if has_orders and not has_run:
                due.append((park.id, day))
    return due

