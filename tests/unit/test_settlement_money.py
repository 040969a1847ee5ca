"""Largest-remainder rounding: parts always add up to the exact total, to the fen."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.money import round_preserving_sum, split_fen

fen = st.decimals(min_value=-10**9, max_value=10**9, places=4, allow_nan=False,
                  allow_infinity=False)


def test_three_way_split_of_one_yuan_hands_the_odd_fen_to_the_first_largest_remainder():
    assert split_fen(100, [1, 1, 1]) == [34, 33, 33]
    assert split_fen(-100, [1, 1, 1]) == [-33, -33, -34]
    assert split_fen(7, [0, 2, 5]) == [0, 2, 5]


def test_rounding_a_zero_sum_run_stays_zero_sum():
    # Exact amounts that sum to zero but each round up on their own (0.5 fen → half-even).
    exact = {"a": Decimal("10.5"), "b": Decimal("10.5"), "c": Decimal("-21.0")}
    rounded = round_preserving_sum(exact)
    assert sum(rounded.values()) == 0 and rounded == {"a": 11, "b": 10, "c": -21}


def test_splitting_over_nobody_is_refused():
    with pytest.raises(ValueError, match="zero total weight"):
        split_fen(100, [0, 0])
    with pytest.raises(ValueError, match="negative"):
        split_fen(100, [1, -1])


@given(st.dictionaries(st.text(min_size=1, max_size=4), fen, min_size=1, max_size=30))
def test_rounded_parts_sum_to_the_rounded_exact_total(amounts):
    rounded = round_preserving_sum(amounts)
    total = sum(amounts.values(), Decimal(0)).to_integral_value(ROUND_HALF_EVEN)
    assert sum(rounded.values()) == int(total)
    assert all(abs(rounded[k] - amounts[k]) < 1 for k in amounts)


@given(st.dictionaries(st.text(min_size=1, max_size=4), fen, min_size=1, max_size=30))
def test_zero_sum_amounts_round_to_zero_sum(amounts):
    keys = sorted(amounts)
    balanced = dict(amounts)
    balanced[keys[0]] = -sum((amounts[k] for k in keys[1:]), Decimal(0))
    assert sum(round_preserving_sum(balanced).values()) == 0


@given(st.integers(-10**12, 10**12),
       st.lists(st.integers(0, 10**6), min_size=1, max_size=40).filter(any))
def test_split_is_exact_and_proportional_within_a_fen(total, weights):
    parts = split_fen(total, weights)
    assert sum(parts) == total
    whole = sum(weights)
    assert all(abs(Decimal(p) - Decimal(total) * w / whole) < 1
               for p, w in zip(parts, weights, strict=True))
