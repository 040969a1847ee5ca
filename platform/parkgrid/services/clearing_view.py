"""What staff review before publishing a clearing, and what enterprises see of their results."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import ClearingAllocation, ClearingRun, ClearingStatus, Order, Role, User
from . import calendar, grid
from .clearing import book
from .errors import N_, NotFound


def curves(session: Session, run: ClearingRun) -> list[dict]:
    """Per period: the supply and demand step curves of the book and the clearing point."""
    n = calendar.periods_per_day(run.park)
    supply = defaultdict(list)
    demand = defaultdict(list)
    for _order, document in book(session, run.park, run.delivery_day):
        target = supply if document["side"] == "sell" else demand
        for period, qty in document["periods"]:
            target[int(period)].append((Decimal(document["price"]), Decimal(qty)))
    traded = defaultdict(Decimal)
    prices = defaultdict(set)
    for allocation in run.allocations:
        if allocation.order.side == "buy":
            traded[allocation.period_index] += allocation.quantity_kva
        prices[allocation.period_index].add(allocation.price)
    out = []
    for period in range(n):
        if not supply[period] and not demand[period]:
            continue
        out.append({
            "period": period,
            "supply": _steps(sorted(supply[period])),
            "demand": _steps(sorted(demand[period], key=lambda s: -s[0])),
            "volume": traded[period],
            "price_low": min(prices[period]) if prices[period] else None,
            "price_high": max(prices[period]) if prices[period] else None,
        })
    return out


def _steps(offers: list[tuple[Decimal, Decimal]]) -> list[tuple[Decimal, Decimal, Decimal]]:
    """(from cumulative kVA, to cumulative kVA, price) for each offer, in merit order."""
    steps, total = [], Decimal(0)
    for price, qty in offers:
        steps.append((total, total + qty, price))
        total += qty
    return steps


def transformer_loads(session: Session, run: ClearingRun) -> list[dict]:
    """Each transformer's load rate per period before and after the clearing."""
    park = run.park
    n = calendar.periods_per_day(park)
    demand = grid.expected_demand(session, park, run.delivery_day)
    _feeders, base = grid.asset_loads(park, demand)
    moved = defaultdict(lambda: [Decimal(0)] * n)
    for allocation in run.allocations:
        order = allocation.order
        sign = 1 if order.side == "buy" else -1
        moved[order.enterprise.feeder.transformer_id][allocation.period_index] += (
            sign * allocation.quantity_kva)
    rows = []
    for substation in park.substations:
        for transformer in substation.transformers:
            before = base.get(transformer.id, [Decimal(0)] * n)
            after = [before[t] + moved[transformer.id][t] for t in range(n)]
            rated = transformer.rated_kva
            rows.append({
                "code": transformer.code, "name": transformer.name,
                "max_rate": transformer.max_load_rate,
                "before": [b / rated for b in before], "after": [a / rated for a in after],
                "binding": [after[t] >= transformer.allowed_kva - Decimal("0.05")
                            for t in range(n)],
            })
    return rows


def run_summary(run: ClearingRun) -> dict:
    return json.loads(run.summary)


def enterprise_results(session: Session, user: User) -> list[dict]:
    """An enterprise's accepted quantities and prices per period, from published runs only."""
    if user.role != Role.ENTERPRISE:
        raise NotFound(N_("No such results."))
    rows = session.execute(
        select(ClearingRun, Order, ClearingAllocation)
        .join(ClearingAllocation, ClearingAllocation.run_id == ClearingRun.id)
        .join(Order, Order.id == ClearingAllocation.order_id)
        .where(ClearingRun.status == ClearingStatus.PUBLISHED,
               Order.enterprise_id == user.enterprise_id)
        .order_by(ClearingRun.delivery_day.desc(), Order.public_id,
                  ClearingAllocation.period_index))
    results: dict[tuple, dict] = {}
    for run, order, allocation in rows:
        entry = results.setdefault((run.id, order.id), {
            "day": run.delivery_day, "run": run.run_number, "order": order,
            "root": run.result_root, "tx": run.publish_tx_hash, "periods": []})
        entry["periods"].append((allocation.period_index, allocation.quantity_kva,
                                 allocation.price))
    return list(results.values())


def published_days(session: Session, user: User, limit: int = 14) -> list[dict]:
    """The published day summaries of the user's park, newest first: what everyone may see."""
    runs = session.scalars(
        select(ClearingRun).where(ClearingRun.park_id == user.enterprise.park_id,
                                  ClearingRun.status == ClearingStatus.PUBLISHED)
        .order_by(ClearingRun.delivery_day.desc()).limit(limit))
    out = []
    for run in runs:
        prices: dict[int, set] = defaultdict(set)
        volume: dict[int, Decimal] = defaultdict(Decimal)
        for allocation in run.allocations:
            prices[allocation.period_index].add(allocation.price)
            if allocation.order.side == "buy":
                volume[allocation.period_index] += allocation.quantity_kva
        out.append({"run": run, "summary": run_summary(run),
                    "periods": [(p, volume[p], min(prices[p]), max(prices[p]))
                                for p in sorted(prices)]})
    return out


def get_run(session: Session, run_id: int) -> ClearingRun:
    run = session.get(ClearingRun, run_id)
    if run is None:
        raise NotFound(N_("No such clearing run."))
    return run
