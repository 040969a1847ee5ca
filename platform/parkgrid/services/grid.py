"""The park's grid for the market: expected demand, forecast base loads and order limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import (
    DemandProfile,
    Enterprise,
    Feeder,
    Order,
    OrderPeriod,
    OrderSide,
    OrderStatus,
    Park,
)
from . import calendar
from .errors import N_

ZERO = Decimal(0)
TENTH = Decimal("0.1")


@dataclass(frozen=True)
class PeriodLimit:
    """How much an order may ask in one period, and the rule's wording if it asks more."""

    available: Decimal
    message: str
    params: dict = field(default_factory=dict)


def expected_demand(session: Session, park: Park, day: date) -> dict[int, list[Decimal | None]]:
    """Each enterprise's expected own demand per period: declared for the day, else its
    standing profile from recent metered demand, else unknown (None)."""
    return _demand_of(session, [e.id for e in park.enterprises], day,
                      calendar.periods_per_day(park))


def _demand_of(session: Session, ids: list[int], day: date,
               n: int) -> dict[int, list[Decimal | None]]:
    """`expected_demand` for these enterprises only."""
    demand: dict[int, list[Decimal | None]] = {i: [None] * n for i in ids}
    if not ids:
        return demand
    rows = session.execute(
        select(DemandProfile.enterprise_id, DemandProfile.delivery_day,
               DemandProfile.period_index, DemandProfile.demand_kva)
        .where(DemandProfile.enterprise_id.in_(ids),
               (DemandProfile.delivery_day == day) | DemandProfile.delivery_day.is_(None))
        # Standing rows first, so the day's declared values overwrite them.
        .order_by(DemandProfile.delivery_day.is_not(None)))
    for enterprise_id, _day, period, kva in rows:
        if 0 <= period < n:
            demand[enterprise_id][period] = Decimal(kva)
    return demand


def asset_loads(park: Park, demand: dict[int, list[Decimal | None]]):
    """Forecast base load per feeder and transformer and period: the expected demand of the
    enterprises below it (an enterprise with no forecast counts at its contracted kVA)."""
    n = calendar.periods_per_day(park)
    feeders: dict[int, list[Decimal]] = {}
    transformers: dict[int, list[Decimal]] = {}
    for enterprise in park.enterprises:
        feeder = enterprise.feeder
        f = feeders.setdefault(feeder.id, [ZERO] * n)
        t = transformers.setdefault(feeder.transformer_id, [ZERO] * n)
        for i, value in enumerate(demand[enterprise.id]):
            load = enterprise.contracted_kva if value is None else value
            f[i] += load
            t[i] += load
    return feeders, transformers


def supply_path_loads(session: Session, enterprise: Enterprise,
                      day: date) -> tuple[list[Decimal], list[Decimal]]:
    """The forecast base load per period of this enterprise's own feeder and transformer:
    what `asset_loads` gives for them, read for the enterprises below that transformer only
    (a few of the park's) instead of the whole park."""
    park = enterprise.park
    n = calendar.periods_per_day(park)
    feeder = enterprise.feeder
    below = session.execute(
        select(Enterprise.id, Enterprise.feeder_id, Enterprise.contracted_kva)
        .join(Feeder, Feeder.id == Enterprise.feeder_id)
        .where(Enterprise.park_id == park.id,
               Feeder.transformer_id == feeder.transformer_id)).all()
    demand = _demand_of(session, [row.id for row in below], day, n)
    f, t = [ZERO] * n, [ZERO] * n
    for enterprise_id, feeder_id, contracted in below:
        on_feeder = feeder_id == feeder.id
        for i, value in enumerate(demand[enterprise_id]):
            load = contracted if value is None else value
            if on_feeder:
                f[i] += load
            t[i] += load
    return f, t


def _already_ordered(session: Session, enterprise: Enterprise, day: date, side: str,
                     exclude_order_id: int | None) -> dict[int, Decimal]:
    # Summed by the database: one row per period, however many orders the enterprise has.
    query = (select(OrderPeriod.period_index, func.sum(OrderPeriod.quantity_kva))
             .join(Order, Order.id == OrderPeriod.order_id)
             .where(Order.enterprise_id == enterprise.id, Order.delivery_day == day,
                    Order.side == side, Order.status == OrderStatus.ACTIVE)
             .group_by(OrderPeriod.period_index))
    if exclude_order_id is not None:
        query = query.where(Order.id != exclude_order_id)
    # Quantities have one decimal; SQLite sums them as floats, so the sum is put back on
    # that grid (exact on PostgreSQL already).
    return {period: Decimal(qty).quantize(TENTH) for period, qty in session.execute(query)}


def order_limits(session: Session, enterprise: Enterprise, day: date, side: str, *,
                 exclude_order_id: int | None = None) -> dict[int, PeriodLimit]:
    """Per period, the most a new order of ``enterprise`` may offer (sell) or ask (buy).

    A seller lists at most its spare capacity: contracted capacity minus expected own demand
    minus what it already listed. A buyer asks at most what its own supply path can take:
    the smallest headroom (limit minus forecast load) of its feeder and its transformer,
    minus what it already bid.
    """
    park = enterprise.park
    n = calendar.periods_per_day(park)
    ordered = _already_ordered(session, enterprise, day, side, exclude_order_id)
    limits: dict[int, PeriodLimit] = {}
    # Each side reads only what its rule needs: a seller its own expected demand, a buyer
    # the loads of its own feeder and transformer (the same figures as the whole park's).
    if side == OrderSide.SELL:
        for i, own in enumerate(_demand_of(session, [enterprise.id], day, n)[enterprise.id]):
            listed = ordered.get(i, ZERO)
            if own is None:
                limits[i] = PeriodLimit(ZERO, N_(
                    "Period %(period)s: your expected demand is not known, so no spare capacity "
                    "can be listed; declare your expected demand first."))
                continue
            spare = max(ZERO, enterprise.contracted_kva - own - listed)
            limits[i] = PeriodLimit(spare, N_(
                "Period %(period)s: %(qty)s kVA is more than your spare capacity of %(spare)s kVA "
                "(contracted %(contracted)s − expected demand %(demand)s − already listed "
                "%(listed)s)."), {"spare": spare, "contracted": enterprise.contracted_kva,
                                  "demand": own, "listed": listed})
        return limits
    feeder_loads, transformer_loads = supply_path_loads(session, enterprise, day)
    feeder = enterprise.feeder
    transformer = feeder.transformer
    path = [(feeder.code, feeder.thermal_limit_kva, feeder_loads),
            (transformer.code, transformer.allowed_kva, transformer_loads)]
    for i in range(n):
        bid = ordered.get(i, ZERO)
        code, limit, loads = min(path, key=lambda a: a[1] - a[2][i])
        headroom = max(ZERO, limit - loads[i] - bid).quantize(TENTH, ROUND_FLOOR)
        limits[i] = PeriodLimit(headroom, N_(
            "Period %(period)s: %(qty)s kVA is more than your supply path can take: %(asset)s "
            "has %(available)s kVA of headroom (limit %(limit)s − forecast load %(load)s − "
            "already bid %(bid)s)."), {"asset": code, "available": headroom, "limit": limit,
                                       "load": loads[i], "bid": bid})
    return limits
