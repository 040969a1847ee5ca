"""Largest-remainder rounding: parts always add up to the exact total, to the fen."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.money import (
    decimal_places,
    largest_remainder,
    round_half_even,
    round_preserving_sum,
    scaled_int,
    split_fen,
)

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


@given(st.integers(-10**30, 10**30), st.integers(1, 10**6))
def test_round_half_even_is_exact(numerator, denominator):
    expected = (Decimal(numerator) / Decimal(denominator)).to_integral_value(ROUND_HALF_EVEN) \
        if abs(numerator) < 10**20 else None
    got = round_half_even(numerator, denominator)
    assert abs(got * denominator - numerator) * 2 <= denominator
    if expected is not None:
        assert got == int(expected)
    assert round_half_even(5, 2) == 2 and round_half_even(7, 2) == 4
    assert round_half_even(-5, 2) == -2


@given(st.lists(st.integers(-10**25, 10**25), min_size=1, max_size=50),
       st.integers(1, 10**12))
def test_largest_remainder_keeps_the_total_and_each_part_within_one(numerators, denominator):
    parts = largest_remainder(numerators, denominator)
    assert sum(parts) == round_half_even(sum(numerators), denominator)
    assert all(abs(p * denominator - n) < denominator
               for p, n in zip(parts, numerators, strict=True))


def test_largest_remainder_breaks_ties_by_position():
    # Four half units (−15 is −2 + 0.5) and two to hand out: the first two get them.
    assert largest_remainder([5, 5, 5, -15], 10) == [1, 1, 0, -2]
    assert largest_remainder([], 3) == []
    with pytest.raises(ValueError):
        largest_remainder([1], 0)


def test_decimals_scale_to_exact_integers():
    assert decimal_places(Decimal("1.250")) == 3 and decimal_places(Decimal("1E+3")) == 0
    assert scaled_int(Decimal("1.25"), 3) == 1250 and scaled_int(Decimal("-1E+2"), 0) == -100
    assert scaled_int(Decimal("1.2000"), 1) == 12
    with pytest.raises(ValueError):
        scaled_int(Decimal("1.2345"), 3)
    with pytest.raises(ValueError):
        decimal_places(Decimal("NaN"))


def test_split_by_decimal_weights_is_exact():
    assert split_fen(1000, [Decimal("0.1"), Decimal("0.2"), Decimal("0.7")]) == [100, 200, 700]
    assert split_fen(1, [Decimal("1.5"), Decimal("1.5")]) == [1, 0]
