"""Money in integer fen: proportional splits and rounding that add up exactly.

Settlement amounts are computed exactly (Decimal yuan) and then rounded to fen. Rounding each
line on its own lets the lines drift from their exact total by up to half a fen per line;
the largest-remainder method (Hamilton's method) rounds all lines down and hands the missing
fen, one each, to the lines that lost the most, so the rounded lines sum to the rounded total
exactly — to zero for a zero-sum run. Ties go to the earlier key, so results are repeatable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

FEN_PER_YUAN = 100


def to_fen_exact(yuan: Decimal) -> Decimal:
    """Yuan as an exact (possibly fractional) number of fen."""
    return Decimal(yuan) * FEN_PER_YUAN


def round_preserving_sum(amounts: Mapping[str, Decimal]) -> dict[str, int]:
    """Round exact fen amounts to integers whose sum is the exact sum, rounded half-even.

    `amounts` are exact fen (Decimal, any sign); the result keeps the keys. When the exact
    amounts sum to zero, the rounded ones do too.
    """
    keys = sorted(amounts)
    exact = [Decimal(amounts[k]) for k in keys]
    target = int(sum(exact, Decimal(0)).to_integral_value(ROUND_HALF_EVEN))
    floors = [int(a.to_integral_value(ROUND_FLOOR)) for a in exact]
    missing = target - sum(floors)
    # Each line can take at most one extra fen; `missing` is within [0, len) because the
    # floors lose less than one fen each and the target is the rounded exact sum.
    order = sorted(range(len(keys)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += 1
    return dict(zip(keys, floors, strict=True))


def split_fen(total_fen: int, weights: Sequence[Decimal | int]) -> list[int]:
    """Split an integer fen amount in proportion to non-negative weights, exactly.

    The parts are integers that sum to `total_fen` (either sign); a zero total weight is
    refused, since there is nobody to give the money to.
    """
    weights = [Decimal(w) for w in weights]
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    whole = sum(weights, Decimal(0))
    if whole == 0:
        raise ValueError("cannot split money over a zero total weight")
    shares = {f"{i:09d}": Decimal(total_fen) * w / whole for i, w in enumerate(weights)}
    rounded = round_preserving_sum(shares)
    return [rounded[f"{i:09d}"] for i in range(len(weights))]
