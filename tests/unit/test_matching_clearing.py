"""Behaviour of `matching.clear`: congestion pricing, limits, ties, block orders, edge cases."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

import matching

BIG = D(1_000_000)


def park(transformers: dict[str, tuple], feeders: dict[str, tuple],
         enterprises: dict[str, str], periods: int = 1) -> matching.Network:
    """transformers: code → (limit, base per period or one base); feeders: code →
    (transformer, limit, base); enterprises: code → feeder."""

    def loads(base) -> tuple[D, ...]:
        return tuple(D(b) for b in base) if isinstance(base, tuple) else (D(base),) * periods

    assets = [matching.Asset(code, "transformer", D(limit), loads(base))
              for code, (limit, base) in transformers.items()]
    assets += [matching.Asset(code, "feeder", D(limit), loads(base), parent=parent)
               for code, (parent, limit, base) in feeders.items()]
    return matching.Network(assets=tuple(assets), enterprise_feeder=enterprises)


def one_node(enterprises, periods: int = 1) -> matching.Network:
    return park({"T": (BIG, 0)}, {"F": ("T", BIG, 0)}, {e: "F" for e in enterprises}, periods)


def order(oid, side, who, price, qty, periods=(0,), **kw) -> matching.Order:
    quantities = tuple((t, D(q)) for t, q in zip(periods, qty, strict=True)) \
        if isinstance(qty, tuple) else tuple((t, D(qty)) for t in periods)
    return matching.Order(oid, side, who, D(price), quantities, **kw)


def instance(orders, network=None, periods=1, **kw) -> matching.ClearingInstance:
    network = network or one_node(sorted({o.enterprise for o in orders}) or ["X"], periods)
    return matching.ClearingInstance(periods=periods, orders=tuple(orders), network=network,
                                     **kw)


def clear_checked(inst: matching.ClearingInstance, **kw) -> matching.ClearingResult:
    result = matching.clear(inst, **kw)
    assert matching.check(inst, result) == []
    return result


# ------------------------------------------------------------------ congestion


def congested_park() -> matching.Network:
    """T1 with room to spare; T2 with 60 kVA left (940 of 1000 used)."""
    return park({"T1": ("1000", "0"), "T2": ("1000", "940")},
                {"F1": ("T1", BIG, 0), "F2": ("T2", BIG, 0)},
                {"cheap": "F1", "buyer": "F2", "local": "F2"})


def test_congestion_splits_prices_and_the_rent_is_difference_times_flow():
    orders = [order("s-cheap", "sell", "cheap", "10", "200"),
              order("b", "buy", "buyer", "50", "100"),
              order("s-local", "sell", "local", "40", "100")]
    inst = instance(orders, congested_park())
    result = clear_checked(inst)
    assert result.accepted["b"][0] == D(100)
    assert result.accepted["s-cheap"][0] == D(60)  # exactly the 60 kVA of room on T2
    assert result.accepted["s-local"][0] == D(40)
    assert result.node_prices["T1"][0] == D(10) and result.node_prices["T2"][0] == D(40)
    assert result.order_prices["b"][0] == D(40)  # the buyer behind T2 pays T2's price
    assert result.congestion_rent == (D(40) - D(10)) * D(60)
    assert result.welfare == D(50) * 100 - D(10) * 60 - D(40) * 40
    assert result.zones(0) == {D(10): ("F1", "T1"), D(40): ("F2", "T2")}


def test_zone_without_a_marginal_order_takes_the_midpoint_of_its_range():
    # Only the cheap seller can serve the buyer; T2's 60 kVA bind. T2's price may be anything
    # from 10 (the system price) to 50 (the buyer's bid): the rule takes the midpoint.
    orders = [order("s", "sell", "cheap", "10", "200"), order("b", "buy", "buyer", "50", "100")]
    result = clear_checked(instance(orders, congested_park()))
    assert result.accepted["b"][0] == D(60)
    assert result.node_prices["T2"][0] == D(50)  # the partly accepted buyer sets it exactly
    orders = [order("s", "sell", "cheap", "10", "200"), order("b", "buy", "buyer", "50", "60"),
              order("b2", "buy", "cheap", "5", "10")]
    result = clear_checked(instance(orders, congested_park()))
    assert result.node_prices["T1"][0] == D(10)
    assert result.node_prices["T2"][0] == D(30)  # midpoint of [10, 50]


def test_feeder_limit_binds_inside_a_transformer():
    net = park({"T": (BIG, 0)}, {"F1": ("T", "100", "70"), "F2": ("T", BIG, 0)},
               {"a": "F1", "b": "F2"})
    orders = [order("buy-a", "buy", "a", "9", "50"), order("sell-b", "sell", "b", "2", "50")]
    result = clear_checked(instance(orders, net))
    assert result.accepted["buy-a"][0] == D(30)  # 70 + 30 = 100, the feeder's limit
    assert result.node_prices["F1"][0] == D(9) and result.node_prices["F2"][0] == D(2)


def test_base_load_over_the_limit_allows_only_load_reducing_trades():
    net = park({"T1": ("1000", "1200"), "T2": ("1000", "0")},
               {"F1": ("T1", BIG, 0), "F2": ("T2", BIG, 0)}, {"a": "F1", "b": "F2"})
    # A buyer behind the overloaded T1 gets nothing; a seller there may sell (lowers load).
    orders = [order("buy-a", "buy", "a", "9", "50"), order("sell-b", "sell", "b", "2", "50")]
    result = clear_checked(instance(orders, net))
    assert result.status == "empty" and "grid limits" in result.reason
    orders = [order("sell-a", "sell", "a", "2", "50"), order("buy-b", "buy", "b", "9", "50")]
    result = clear_checked(instance(orders, net))
    assert result.accepted["sell-a"][0] == D(50)


def test_limits_apply_in_every_period_separately():
    net = park({"T1": ("1000", ("900", "990")), "T2": ("1000", "0")},
               {"F1": ("T1", BIG, 0), "F2": ("T2", BIG, 0)}, {"a": "F1", "b": "F2"}, periods=2)
    orders = [order("buy-a", "buy", "a", "9", "50", periods=(0, 1)),
              order("sell-b", "sell", "b", "2", "50", periods=(0, 1))]
    result = clear_checked(instance(orders, net, periods=2))
    assert result.accepted["buy-a"] == {0: D(50), 1: D(10)}


# ------------------------------------------------------------------ zero-volume results


def test_empty_book_gives_a_clean_empty_result():
    result = clear_checked(instance([]))
    assert result.status == "empty" and result.reason == "empty order book"
    assert result.accepted == {} and result.welfare == 0


def test_no_crossing_gives_zero_volume_with_a_reason():
    orders = [order("s", "sell", "a", "5", "10"), order("b", "buy", "b", "4", "10")]
    result = clear_checked(instance(orders))
    assert result.status == "empty" and result.reason.startswith("no crossing")
    assert result.system_prices[0] in (D(4), D("4.5"), D(5))


def test_all_block_orders_infeasible_gives_zero_volume():
    # Every order is all-or-none and no combination balances in both periods.
    orders = [order("s", "sell", "a", "1", ("10", "10"), periods=(0, 1), all_or_none=True),
              order("b", "buy", "b", "9", ("10", "20"), periods=(0, 1), all_or_none=True)]
    result = clear_checked(instance(orders, periods=2))
    assert result.status == "empty"
    assert result.reason.startswith("no block order can be accepted")


def test_blocks_alone_whose_prices_cross_are_excluded_not_left_without_a_price():
    # Only blocks trade: the minimum-fraction bid at 2 needs the all-or-none listing at 2.5
    # to reach its fraction, so welfare accepts both. No divisible order bounds the price:
    # the middle of the crossed range (2.25) is the price, both blocks are out of the money
    # there and are excluded; the cheap listing alone finds no buyer.
    orders = [order("b", "buy", "e", "2", "15.3", min_fraction=D("0.5")),
              order("s1", "sell", "e", "2.5", "0.1", all_or_none=True),
              order("s2", "sell", "e", "1", "7.6", all_or_none=True)]
    result = clear_checked(instance(orders))
    assert result.status == "empty" and result.excluded_blocks == ("b", "s1")


# ------------------------------------------------------------------ ties


def test_pro_rata_ties_share_the_marginal_volume_by_quantity():
    orders = [order("b", "buy", "x", "9", "60"),
              order("s1", "sell", "p", "3", "30", priority=2),
              order("s2", "sell", "q", "3", "60", priority=1),
              order("s3", "sell", "r", "3", "10", priority=3)]
    result = clear_checked(instance(orders, tie_rule="pro_rata"))
    assert [result.accepted[s][0] for s in ("s1", "s2", "s3")] == [D(18), D(36), D(6)]


def test_pro_rata_leftover_tenths_go_to_the_largest_remainders():
    orders = [order("b", "buy", "x", "9", "1.0"),
              order("s1", "sell", "p", "3", "1.0"), order("s2", "sell", "q", "3", "1.0"),
              order("s3", "sell", "r", "3", "1.0")]
    result = clear_checked(instance(orders))
    got = [result.accepted.get(s, {}).get(0, D(0)) for s in ("s1", "s2", "s3")]
    assert sum(got) == D(1) and sorted(got) == [D("0.3"), D("0.3"), D("0.4")]


def test_time_priority_fills_the_earliest_first_then_order_id():
    orders = [order("b", "buy", "x", "9", "70"),
              order("s-late", "sell", "p", "3", "50", priority=30),
              order("s-early", "sell", "q", "3", "50", priority=10),
              order("s-b", "sell", "r", "3", "50", priority=20),
              order("s-a", "sell", "r", "3", "50", priority=20)]
    result = clear_checked(instance(orders, tie_rule="time_priority"))
    assert result.accepted["s-early"][0] == D(50)
    assert result.accepted["s-a"][0] == D(20)
    assert "s-b" not in result.accepted and "s-late" not in result.accepted


def test_time_priority_for_tied_bids():
    orders = [order("s", "sell", "x", "1", "30"),
              order("b2", "buy", "p", "5", "20", priority=2),
              order("b1", "buy", "q", "5", "20", priority=1)]
    result = clear_checked(instance(orders, tie_rule="time_priority"))
    assert result.accepted["b1"][0] == D(20) and result.accepted["b2"][0] == D(10)


def test_flat_overlap_trades_as_much_as_possible_at_the_common_price():
    orders = [order("s", "sell", "x", "4", "30"), order("b", "buy", "y", "4", "20")]
    result = clear_checked(instance(orders))
    assert result.accepted["b"][0] == D(20) and result.system_prices[0] == D(4)
    assert result.welfare == 0


def test_pro_rata_respects_a_feeder_limit_inside_the_zone():
    # Two tied bidders in one price zone; F1 has room for 10 only, so the bidder there is
    # capped and the other takes the rest.
    net = park({"T": (BIG, 0)}, {"F1": ("T", "10", "0"), "F2": ("T", BIG, 0)},
               {"a": "F1", "b": "F2", "s": "F2"})
    orders = [order("ba", "buy", "a", "5", "40"), order("bb", "buy", "b", "5", "40"),
              order("s", "sell", "s", "1", "40")]
    result = clear_checked(instance(orders, net))
    assert result.accepted["ba"][0] == D(10) and result.accepted["bb"][0] == D(30)


# ------------------------------------------------------------------ blocks


def test_all_or_none_block_is_accepted_whole_or_not_at_all():
    orders = [order("blk", "buy", "x", "8", "50", periods=(0, 1), all_or_none=True),
              order("s", "sell", "y", "2", ("40", "60"), periods=(0, 1))]
    result = clear_checked(instance(orders, periods=2))
    assert "blk" not in result.accepted  # period 0 has only 40 kVA to sell
    orders[1] = order("s", "sell", "y", "2", ("60", "60"), periods=(0, 1))
    result = clear_checked(instance(orders, periods=2))
    assert result.accepted["blk"] == {0: D(50), 1: D(50)}


def test_min_fraction_block_is_accepted_at_one_fraction_in_every_period():
    orders = [order("mf", "buy", "x", "8", ("40", "80"), periods=(0, 1),
                    min_fraction=D("0.25")),
              order("s", "sell", "y", "2", ("20", "100"), periods=(0, 1))]
    result = clear_checked(instance(orders, periods=2))
    assert result.accepted["mf"] == {0: D(20), 1: D(40)}  # fraction 1/2 in both periods


def test_min_fraction_below_the_minimum_is_rejected():
    orders = [order("mf", "buy", "x", "8", "100", min_fraction=D("0.5")),
              order("s", "sell", "y", "2", "40")]
    result = clear_checked(instance(orders))
    assert result.status == "empty"


def test_paradoxically_accepted_block_is_excluded_and_then_reported_as_rejected():
    # With the all-or-none listing the welfare is highest (245 against 190), but the cheap
    # divisible listing is then marginal and sets the price at 1, below the block's 5: the
    # block would lose money, so it is excluded and the book cleared again. At the new price
    # (20, set by the partly served bid) the block is in the money but rejected.
    orders = [order("blk", "sell", "a", "5", "10", all_or_none=True),
              order("s", "sell", "c", "1", "10"),
              order("b", "buy", "b", "20", "15")]
    inst = instance(orders)
    result = clear_checked(inst)
    assert "blk" not in result.accepted
    assert result.excluded_blocks == ("blk",)
    assert result.paradoxically_rejected == ("blk",)
    assert result.system_prices[0] == D(20)
    assert result.accepted == {"s": {0: D(10)}, "b": {0: D(10)}}
    assert "excluded" in result.reason


def test_paradoxically_rejected_block_is_reported():
    # The all-or-none bid for 20 kVA cannot be served (only 10 kVA are listed), although its
    # price is far above the clearing price of 1.
    orders = [order("bb", "buy", "a", "10", "20", all_or_none=True),
              order("s", "sell", "b", "1", "10"), order("b", "buy", "c", "3", "5")]
    result = clear_checked(instance(orders))
    assert result.system_prices[0] == D(1)
    assert result.paradoxically_rejected == ("bb",)
    assert result.excluded_blocks == ()


def test_pay_as_bid_settles_each_order_at_its_own_price():
    orders = [order("s", "sell", "x", "3", "10"), order("b", "buy", "y", "7", "10")]
    result = clear_checked(instance(orders, pricing="pay_as_bid"))
    assert result.order_prices == {"s": {0: D(3)}, "b": {0: D(7)}}
    assert result.welfare == D(40)


# ------------------------------------------------------------------ time limit


def test_time_limit_zero_flags_the_result_and_it_stays_valid():
    orders = [order(f"b{i}", "buy", f"e{i}", str(10 + i), "10", periods=(0, 1),
                    all_or_none=True) for i in range(6)]
    orders += [order(f"s{i}", "sell", f"f{i}", str(1 + i), ("7", "13"), periods=(0, 1))
               for i in range(6)]
    inst = instance(orders, periods=2)
    result = clear_checked(inst, time_limit_s=0.0)
    assert result.hit_time_limit
    unlimited = clear_checked(inst)
    assert not unlimited.hit_time_limit and unlimited.welfare >= result.welfare


def test_invalid_instances_raise_the_domain_error():
    with pytest.raises(matching.InvalidInstanceError):
        order("x", "buy", "a", "1.00001", "1")
    with pytest.raises(matching.InvalidInstanceError):
        order("x", "buy", "a", "1", "1.05")
    with pytest.raises(matching.MatchingError):
        instance([order("x", "buy", "nowhere", "1", "1")], one_node(["a"]))
