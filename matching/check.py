"""A solver-independent checker of a clearing result against its instance.

It recomputes everything from the instance with exact Decimal arithmetic and shares no code
with the solver path. It verifies feasibility (quantities, block conditions, balance, limits)
and that the prices certify the allocation: node prices that rise only across limits that are
met, every divisible order on the right side of its node price, and (zonal pricing) accepted
blocks in the money. Together these are the LP optimality conditions of the divisible orders
for the given block choices.
"""

from __future__ import annotations

from decimal import Decimal

from matching.instance import ClearingInstance, Order
from matching.result import ClearingResult

STEP = Decimal("0.1")
TICK = Decimal("0.0001")
STATUSES = ("optimal", "feasible", "empty")


def _on_grid(value: Decimal, step: Decimal) -> bool:
    return value.is_finite() and value % step == 0


def _check_accepted(orders: dict[str, Order], result: ClearingResult) -> list[str]:
    problems = []
    for oid, periods in result.accepted.items():
        order = orders.get(oid)
        if order is None:
            problems.append(f"accepted order {oid} is not in the book")
            continue
        ordered = dict(order.quantities)
        for t, q in periods.items():
            if t not in ordered:
                problems.append(f"order {oid}: accepted in period {t} it does not cover")
            elif not isinstance(q, Decimal) or not _on_grid(q, STEP):
                problems.append(f"order {oid} period {t}: {q!r} is not a multiple of 0.1 kVA")
            elif not 0 < q <= ordered[t]:
                problems.append(f"order {oid} period {t}: accepted {q} outside (0, {ordered[t]}]")
        if order.is_block and periods:
            fractions = {q / ordered[t] for t, q in periods.items() if t in ordered}
            if set(periods) != set(ordered) or len(fractions) != 1:
                problems.append(f"block order {oid}: not the same fraction in all its periods")
            elif order.all_or_none and fractions != {Decimal(1)}:
                problems.append(f"all-or-none order {oid}: partly accepted")
            elif order.min_fraction is not None and min(fractions) < order.min_fraction:
                problems.append(f"order {oid}: accepted below its minimum fraction")
    return problems


def _check_balance_and_limits(instance: ClearingInstance, orders: dict[str, Order],
                              result: ClearingResult, net: dict[str, list[Decimal]]
                              ) -> list[str]:
    problems = []
    bought = [Decimal(0)] * instance.periods
    sold = [Decimal(0)] * instance.periods
    for oid, periods in result.accepted.items():
        order = orders.get(oid)
        if order is None:
            continue
        for t, q in periods.items():
            if not 0 <= t < instance.periods:
                continue
            (bought if order.side == "buy" else sold)[t] += q
    for t in range(instance.periods):
        if bought[t] != sold[t]:
            problems.append(f"period {t}: bought {bought[t]} ≠ sold {sold[t]}")
    for asset in instance.network.assets:
        for t in range(instance.periods):
            change = net[asset.code][t]
            if change > 0 and asset.base_load[t] + change > asset.limit_kva:
                problems.append(f"{asset.kind} {asset.code} period {t}: load "
                                f"{asset.base_load[t] + change} above limit {asset.limit_kva}")
    return problems


def _net_changes(instance: ClearingInstance, orders: dict[str, Order],
                 result: ClearingResult) -> dict[str, list[Decimal]]:
    """Load change (bought − sold) per asset and period."""
    parent = {a.code: a.parent for a in instance.network.assets}
    net = {a.code: [Decimal(0)] * instance.periods for a in instance.network.assets}
    for oid, periods in result.accepted.items():
        order = orders.get(oid)
        if order is None:
            continue
        feeder = instance.network.enterprise_feeder[order.enterprise]
        sign = 1 if order.side == "buy" else -1
        for t, q in periods.items():
            if 0 <= t < instance.periods:
                net[feeder][t] += sign * q
                net[parent[feeder]][t] += sign * q
    return net


def _check_prices(instance: ClearingInstance, result: ClearingResult,
                  net: dict[str, list[Decimal]]) -> list[str]:
    problems = []
    assets = {a.code: a for a in instance.network.assets}
    for t, system in result.system_prices.items():
        if not _on_grid(system, TICK):
            problems.append(f"period {t}: system price {system} is not on the 0.0001 tick")
        for code, asset in assets.items():
            price = result.node_prices.get(code, {}).get(t)
            if price is None:
                problems.append(f"period {t}: no price at {code}")
                continue
            above = system if asset.kind == "transformer" else \
                result.node_prices.get(asset.parent or "", {}).get(t)
            if above is None or not _on_grid(price, TICK):
                problems.append(f"period {t}: price at {code} is missing or off the tick")
                continue
            room = max(asset.limit_kva - asset.base_load[t], Decimal(0))
            met = net[code][t] + STEP > room
            if price < above or (price > above and not met):
                problems.append(f"period {t}: price {price} at {code} differs from {above} "
                                "above it although its limit is not met")
    return problems


def _node_price(instance: ClearingInstance, result: ClearingResult, order: Order,
                t: int) -> Decimal | None:
    feeder = instance.network.enterprise_feeder[order.enterprise]
    return result.node_prices.get(feeder, {}).get(t)


def _check_orders_at_prices(instance: ClearingInstance, result: ClearingResult) -> list[str]:
    problems = []
    zonal = result.pricing == "zonal"
    flagged = set(result.paradoxically_rejected)
    for order in instance.orders:
        oid = order.order_id
        got = result.accepted.get(oid, {})
        sign = 1 if order.side == "buy" else -1
        for t in got:
            settled = result.order_prices.get(oid, {}).get(t)
            expected = _node_price(instance, result, order, t) if zonal else order.price
            if settled is None or settled != expected:
                problems.append(f"order {oid} period {t}: settles at {settled}, "
                                f"expected {expected}")
        if order.is_block:
            if not zonal:
                continue
            prices = [(q, _node_price(instance, result, order, t)) for t, q in order.quantities]
            if any(p is None for _, p in prices):
                if got:
                    problems.append(f"block order {oid}: accepted in a period without price")
                continue
            surplus = sum(sign * q * (order.price - p) for q, p in prices)
            if got and surplus < 0:
                problems.append(f"block order {oid}: accepted out of the money ({surplus})")
            if not got and (surplus > 0) != (oid in flagged):
                problems.append(f"block order {oid}: in-the-money rejection "
                                f"{'not ' if surplus > 0 else ''}reported correctly")
            continue
        for t, ordered in order.quantities:
            price = _node_price(instance, result, order, t)
            if price is None:
                continue
            q = got.get(t, Decimal(0))
            gain = sign * (order.price - price)  # > 0: in the money
            if q == ordered and gain < 0:
                problems.append(f"order {oid} period {t}: accepted out of the money")
            elif 0 < q < ordered and gain != 0:
                problems.append(f"order {oid} period {t}: partly accepted off its node price")
            elif q == 0 and gain > 0:
                problems.append(f"order {oid} period {t}: rejected although in the money")
    for oid in flagged:
        if oid in result.accepted or not zonal:
            problems.append(f"order {oid}: reported paradoxically rejected but is not")
    return problems


def _check_money(instance: ClearingInstance, orders: dict[str, Order],
                 result: ClearingResult) -> list[str]:
    problems = []
    welfare = Decimal(0)
    rent = Decimal(0)
    for oid, periods in result.accepted.items():
        order = orders.get(oid)
        if order is None:
            continue
        sign = 1 if order.side == "buy" else -1
        for t, q in periods.items():
            welfare += sign * order.price * q
            node = _node_price(instance, result, order, t)
            if node is not None:
                rent += sign * node * q
    if welfare != result.welfare:
        problems.append(f"welfare {result.welfare} does not recompute ({welfare})")
    if welfare < 0:
        problems.append(f"welfare {welfare} is negative")
    if rent != result.congestion_rent:
        problems.append(f"congestion rent {result.congestion_rent} does not recompute ({rent})")
    if rent < 0:
        problems.append(f"congestion rent {rent} is negative")
    return problems


def check(instance: ClearingInstance, result: ClearingResult) -> list[str]:
    """Every way `result` fails to be a valid clearing of `instance`; empty when it is."""
    orders = {o.order_id: o for o in instance.orders}
    problems: list[str] = []
    if result.status not in STATUSES:
        problems.append(f"unknown status {result.status!r}")
    if result.pricing != instance.pricing:
        problems.append(f"priced {result.pricing!r}, the instance asks {instance.pricing!r}")
    if (result.status == "empty") != (not result.accepted):
        problems.append(f"status {result.status!r} does not match the accepted volume")
    if result.status == "empty" and not result.reason:
        problems.append("a zero-volume result must give a reason")
    problems += _check_accepted(orders, result)
    net = _net_changes(instance, orders, result)
    problems += _check_balance_and_limits(instance, orders, result, net)
    problems += _check_prices(instance, result, net)
    problems += _check_orders_at_prices(instance, result)
    problems += _check_money(instance, orders, result)
    return problems
