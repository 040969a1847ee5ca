"""A settlement run's money: buyer → seller at the clearing price, congestion rent to the
operator, deviation charges paid back through the penalty pool; always zero-sum to the fen."""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from settlement.run import OPERATOR, Charge, Line, Trade, settle, settle_exact, totals

HOUR = D(1)


def test_the_congested_day_of_the_market_tests_settles_to_the_fen():
    # The clearing test's day: 198.5 kVA sold at 0.03 behind one transformer, bought at 0.05
    # behind the congested one (150 + 48.5).
    trades = [Trade("E001", "s", "sell", 10, D("198.5"), D("0.03")),
              Trade("E002", "b1", "buy", 10, D("150"), D("0.05")),
              Trade("E003", "b2", "buy", 10, D("48.5"), D("0.05"))]
    lines = settle(trades, [], {"E001": D(1000), "E002": D(1000), "E003": D(1000)}, HOUR)
    # Exact fen: −595.5, 750, 242.5 and a rent of −397; the two half fen go to the earlier key.
    assert totals(lines) == {"E001": -595, "E002": 750, "E003": 242, OPERATOR: -397}
    assert sum(line.fen for line in lines) == 0


def test_the_penalty_pool_goes_back_to_those_not_charged_by_contracted_capacity():
    charges = [Charge("E001", 3, D("10.00"))]
    lines = settle([], charges, {"E001": D(500), "E002": D(1000), "E003": D(2000)}, HOUR)
    assert totals(lines) == {"E001": 1000, "E002": -333, "E003": -667}


def test_a_pool_nobody_can_share_goes_to_the_operator():
    lines = settle([], [Charge("E001", 0, D("1.234"))], {"E001": D(500)}, HOUR)
    assert totals(lines) == {"E001": 123, OPERATOR: -123}


money = st.decimals(min_value=0, max_value=10**4, places=4, allow_nan=False,
                    allow_infinity=False)
enterprise = st.sampled_from([f"E{i:03d}" for i in range(1, 8)])
trade = st.builds(Trade, enterprise, st.text("abc", min_size=1, max_size=3),
                  st.sampled_from(["buy", "sell"]), st.integers(0, 23),
                  st.decimals(min_value=D("0.1"), max_value=10**5, places=1), money)
charge = st.builds(Charge, enterprise, st.integers(0, 23), money)


@given(st.lists(trade, max_size=30), st.lists(charge, max_size=10),
       st.sampled_from([D(1), D("0.25"), D("0.5")]))
def test_every_run_is_zero_sum_and_each_line_within_a_fen_of_exact(trades, charges, hours):
    contracted = {f"E{i:03d}": D(100 * i) for i in range(1, 8)}
    lines = settle(trades, charges, contracted, hours)
    assert sum(line.fen for line in lines) == 0
    assert settle(list(reversed(trades)), list(reversed(charges)), contracted, hours) == lines


@given(st.lists(trade, max_size=30), st.lists(charge, max_size=10),
       st.sampled_from([D(1), D("0.25")]))
def test_each_line_is_within_a_fen_of_its_exact_amount(trades, charges, hours):
    contracted = {f"E{i:03d}": D(100 * i) for i in range(1, 8)}
    lines = settle(trades, charges, contracted, hours)
    exact: dict[tuple, Fraction] = {}
    for t in trades:
        key = (t.enterprise, "capacity", t.period, t.order_id)
        sign = 1 if t.side == "buy" else -1
        exact[key] = exact.get(key, 0) + sign * Fraction(t.kva * t.price * hours * 100)
    for c in charges:
        if c.yuan:
            key = (c.enterprise, "deviation", c.period, "")
            exact[key] = exact.get(key, 0) + Fraction(c.yuan * 100)
    for line in lines:
        if line.kind in ("capacity", "deviation"):
            assert abs(line.fen - exact[(line.account, line.kind, line.period,
                                         line.reference)]) < 1


def test_ties_go_to_the_earlier_line_in_statement_order():
    # Two half fen in periods 2 and 10 of one account: period 2 comes first (not "10" < "2").
    lines = settle_exact([("E1", "a", 10, 5), ("E1", "a", 2, 5)], [], {}, 10)
    assert [(line.period, line.fen) for line in lines] == [(2, 1), (10, 0), (None, -1)]
    assert lines[-1] == Line(OPERATOR, "congestion-rent", None, "", -1)


def test_a_large_run_is_settled_exactly():
    # 10,000 enterprises × 24 periods of charges, shared back by contracted capacity.
    charges = [(f"E{e:05d}", p, 3 * e + p) for e in range(10_000) for p in range(24)
               if (e + p) % 3 == 0]
    weights = {f"E{e:05d}": 1000 + e for e in range(12_000)}
    lines = settle_exact([], charges, weights, 7)
    assert sum(line.fen for line in lines) == 0
    pool = sum(n for *_, n in charges)
    shared = -sum(line.fen for line in lines if line.kind == "penalty-pool")
    assert shared in (pool // 7, pool // 7 + 1)
