"""Money in integer fen: proportional splits and rounding that add up exactly.

Settlement amounts are computed exactly and then rounded to fen. Rounding each line on its
own lets the lines drift from their exact total by up to half a fen per line; the
largest-remainder method (Hamilton's method) rounds all lines down and hands the missing fen,
one each, to the lines that lost the most, so the rounded lines sum to the rounded total
exactly — to zero for a zero-sum run. Ties go to the earlier line, so results are repeatable.

Exact amounts are integers over one common denominator (`largest_remainder`), so any number
of lines is rounded with integer arithmetic only; `round_preserving_sum` takes Decimal fen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

FEN_PER_YUAN = 100


def to_fen_exact(yuan: Decimal) -> Decimal:
    """Yuan as an exact (possibly fractional) number of fen."""
    return Decimal(yuan) * FEN_PER_YUAN


def round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to an integer, ties to even (denominator > 0)."""
    quotient, rest = divmod(numerator, denominator)
    twice = 2 * rest
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


def largest_remainder(numerators: Sequence[int], denominator: int) -> list[int]:
    """Round the exact amounts numerators[i] / denominator to integers summing to their
    exact total rounded half-even; ties go to the lower index."""
    if denominator <= 0:
        raise ValueError("the denominator must be positive")
    numerators = [int(n) for n in numerators]
    target = round_half_even(sum(numerators), denominator)
    floors = [n // denominator for n in numerators]
    missing = target - sum(floors)
    if missing:
        # Each line can take at most one extra unit; `missing` is within [0, len) because
        # the floors lose less than one each and the target is the rounded exact sum.
        # A stable sort on the negated remainder keeps ties in index order.
        lost = [f * denominator - n for n, f in zip(numerators, floors, strict=True)]
        for i in sorted(range(len(lost)), key=lost.__getitem__)[:missing]:
            floors[i] += 1
    return floors


def decimal_places(value: Decimal) -> int:
    """Digits after the decimal point of a finite Decimal as written (0 for 1E+3)."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"{value} is not a finite number")
    return max(0, -exponent)


def scaled_int(value: Decimal, places: int) -> int:
    """value × 10**places as an exact integer; a value with more places is refused."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"{value} is not a finite number")
    number = int("".join(map(str, digits)) or "0")
    shift = exponent + places
    if shift >= 0:
        number *= 10 ** shift
    else:
        number, rest = divmod(number, 10 ** -shift)
        if rest:
            raise ValueError(f"{value} has more than {places} decimal places")
    return -number if sign else number


def round_preserving_sum(amounts: Mapping[str, Decimal]) -> dict[str, int]:
    """Round exact fen amounts to integers whose sum is the exact sum, rounded half-even.

    `amounts` are exact fen (Decimal, any sign); the result keeps the keys, and ties go to
    the earlier key in sorted order. When the exact amounts sum to zero, the rounded ones
    do too.
    """
    keys = sorted(amounts)
    exact = [Decimal(amounts[k]) for k in keys]
    places = max((decimal_places(a) for a in exact), default=0)
    rounded = largest_remainder([scaled_int(a, places) for a in exact], 10 ** places)
    return dict(zip(keys, rounded, strict=True))


def split_fen(total_fen: int, weights: Sequence[Decimal | int]) -> list[int]:
    """Split an integer fen amount in proportion to non-negative weights, exactly.

    The parts are integers that sum to `total_fen` (either sign); a zero total weight is
    refused, since there is nobody to give the money to.
    """
    weights = [Decimal(w) for w in weights]
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    places = max((decimal_places(w) for w in weights), default=0)
    units = [scaled_int(w, places) for w in weights]
    whole = sum(units)
    if whole == 0:
        raise ValueError("cannot split money over a zero total weight")
    return largest_remainder([total_fen * u for u in units], whole)
