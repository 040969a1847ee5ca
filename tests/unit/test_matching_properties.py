"""Hypothesis properties of the clearing on random small parks and books: every result passes
the independent checker (limits, quantities, block conditions, balance, price consistency,
welfare), welfare is never negative, and the same book in any order gives the same bytes."""

from __future__ import annotations

import random
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matching

PRICES = [D(p) for p in ("1", "2", "2.5", "3", "3.0001", "4", "5.25", "7")]


@st.composite
def books(draw, blocks: bool = True) -> matching.ClearingInstance:
    periods = draw(st.integers(1, 3))
    n_transformers = draw(st.integers(1, 3))
    assets, feeders = [], []
    for t in range(n_transformers):
        limit = D(draw(st.integers(0, 400)))
        base = tuple(D(draw(st.integers(0, 450))) for _ in range(periods))
        assets.append(matching.Asset(f"T{t}", "transformer", limit, base))
        for f in range(draw(st.integers(1, 2))):
            f_limit = D(draw(st.integers(0, 300)))
            f_base = tuple(D(draw(st.integers(0, 300))) / 2 for _ in range(periods))
            assets.append(matching.Asset(f"T{t}F{f}", "feeder", f_limit, f_base,
                                         parent=f"T{t}"))
            feeders.append(f"T{t}F{f}")
    enterprises = {f"E{i}": draw(st.sampled_from(feeders))
                   for i in range(draw(st.integers(1, 5)))}
    orders = []
    for i in range(draw(st.integers(0, 10))):
        start = draw(st.integers(0, periods - 1))
        end = draw(st.integers(start + 1, periods))
        kind = draw(st.sampled_from(["divisible"] * 3 + (["aon", "min"] if blocks else [])))
        flat = kind != "divisible" and draw(st.booleans())
        first = D(draw(st.integers(1, 600))) / 10
        quantities = tuple((t, first if flat or t == start else
                            D(draw(st.integers(1, 600))) / 10) for t in range(start, end))
        orders.append(matching.Order(
            order_id=f"o{i:02d}", side=draw(st.sampled_from(["buy", "sell"])),
            enterprise=draw(st.sampled_from(sorted(enterprises))),
            price=draw(st.sampled_from(PRICES)), quantities=quantities,
            all_or_none=kind == "aon",
            min_fraction=D(draw(st.sampled_from(["0.2", "0.5", "0.75"])))
            if kind == "min" else None,
            priority=draw(st.integers(0, 3))))
    return matching.ClearingInstance(
        periods=periods, orders=tuple(orders),
        network=matching.Network(assets=tuple(assets), enterprise_feeder=enterprises),
        pricing=draw(st.sampled_from(["zonal", "pay_as_bid"])),
        tie_rule=draw(st.sampled_from(["pro_rata", "time_priority"])))


def reordered(instance: matching.ClearingInstance, seed: int) -> matching.ClearingInstance:
    rng = random.Random(seed)
    orders, assets = list(instance.orders), list(instance.network.assets)
    feeders = list(instance.network.enterprise_feeder.items())
    for items in (orders, assets, feeders):
        rng.shuffle(items)
    return matching.ClearingInstance(
        periods=instance.periods, orders=tuple(orders),
        network=matching.Network(assets=tuple(assets), enterprise_feeder=dict(feeders)),
        pricing=instance.pricing, tie_rule=instance.tie_rule)


SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(books())
def test_every_result_passes_the_independent_checker(instance):
    result = matching.clear(instance)
    assert matching.check(instance, result) == []
    assert result.welfare >= 0
    assert result.status in ("optimal", "empty")


@SETTINGS
@given(books(), st.integers(0, 10_000))
def test_the_same_book_in_any_order_gives_the_same_bytes(instance, seed):
    first = matching.clear(instance)
    again = matching.clear(reordered(instance, seed))
    assert again.canonical_bytes() == first.canonical_bytes()
    assert again.result_hash == first.result_hash


@SETTINGS
@given(books(blocks=False))
def test_bought_equals_sold_in_every_period_and_within_orders(instance):
    result = matching.clear(instance)
    sides = {o.order_id: o.side for o in instance.orders}
    ordered = {o.order_id: dict(o.quantities) for o in instance.orders}
    for t in range(instance.periods):
        bought = sum((q[t] for oid, q in result.accepted.items()
                      if t in q and sides[oid] == "buy"), D(0))
        sold = sum((q[t] for oid, q in result.accepted.items()
                    if t in q and sides[oid] == "sell"), D(0))
        assert bought == sold
    for oid, periods in result.accepted.items():
        for t, q in periods.items():
            assert 0 < q <= ordered[oid][t]


@SETTINGS
@given(books())
def test_canonical_bytes_round_trip_exactly(instance):
    result = matching.clear(instance)
    back = matching.ClearingResult.from_canonical_bytes(result.canonical_bytes())
    assert back == result
    assert back.canonical_bytes() == result.canonical_bytes()
    assert matching.check(instance, back) == []
