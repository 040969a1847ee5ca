"""Deviation assessment: how far an enterprise's metered demand strayed from what it may draw.

An enterprise may draw, in each period, its contracted capacity plus the capacity it bought
minus the capacity it sold in the published clearing. Its metered demand in the period is
the largest 15-minute demand within it; readings are taken as apparent demand, so metered kW
is compared with kVA as is. A deviation inside the rule's tolerance band costs nothing; the
part beyond the band is charged at a penalty price derived from the period's clearing price.
Over-use beyond the band is charged for everyone (a seller that used capacity it sold is
caught this way, since its allowed demand is contracted − sold). Under-use is charged only on
capacity the enterprise bought: one that did not buy is never charged for drawing less than
it may. Rules are data (`DeviationRule`), versioned by name and version, and chosen per park.

`assess_period` assesses one period in Decimal; `excess_beyond_band` does the same for whole
arrays of enterprise-periods in exact integers, for a park-day at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from settlement.money import decimal_places, scaled_int

ZERO = Decimal(0)


@dataclass(frozen=True)
class Band:
    """Tolerance as fractions of the allowed demand: over by at most `upper`, under by at
    most `lower` (e.g. 0.08 and 0.04 for +8 % / −4 %)."""

    upper: Decimal
    lower: Decimal

    def __post_init__(self) -> None:
        if not (ZERO <= self.upper <= 1 and ZERO <= self.lower <= 1):
            raise ValueError("band fractions must lie in [0, 1]")


@dataclass(frozen=True)
class DeviationRule:
    """One versioned deviation rule.

    `seasonal` maps months (1–12) to a band that replaces `band` in those months. The penalty
    price is `price_factor` × the period's clearing price (a multiple such as 3, or a
    percentage such as 0.05), or `fixed_price` when the period has no clearing price. Charges
    below `minimum_charge` yuan for a period are waived. `source` cites the published rule
    the preset follows.
    """

    name: str
    version: int
    band: Band
    price_factor: Decimal
    fixed_price: Decimal = ZERO
    seasonal: tuple[tuple[int, Band], ...] = ()
    charge_over: bool = True
    charge_under: bool = True
    minimum_charge: Decimal = ZERO
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("a rule needs a name")
        if isinstance(self.version, bool) or not isinstance(self.version, int) \
                or self.version < 1:
            raise ValueError("a rule's version is a whole number from 1")
        bands = [self.band, *(band for _month, band in self.seasonal)]
        if not all(isinstance(band, Band) for band in bands):
            raise ValueError("bands must be Band values")
        months = [month for month, _band in self.seasonal]
        if len(set(months)) != len(months) or not all(
                isinstance(m, int) and 1 <= m <= 12 for m in months):
            raise ValueError("seasonal bands need distinct months 1–12")
        for name in ("price_factor", "fixed_price", "minimum_charge"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"{name} must be a finite Decimal, not negative")

    def band_for(self, month: int) -> Band:
        return dict(self.seasonal).get(month, self.band)


@dataclass(frozen=True)
class PeriodAssessment:
    """The assessment of one enterprise in one period (all Decimal, exact)."""

    period: int
    allowed_kva: Decimal
    metered_kva: Decimal
    deviation_kva: Decimal  # metered − allowed: positive = drew more than allowed
    excess_kva: Decimal  # the part beyond the band (0 inside it)
    penalty_price: Decimal
    charge_yuan: Decimal
    exempt_reason: str | None = None


@dataclass(frozen=True)
class Exemption:
    """A period excused from assessment, with the evidence recorded (outage, force majeure)."""

    period: int
    reason: str
    evidence: str = field(default="")


def metered_demand(quarter_hours: Sequence[Decimal], period: int,
                   per_period: int) -> Decimal:
    """The largest 15-minute demand within a period of `per_period` quarter-hours."""
    window = quarter_hours[period * per_period:(period + 1) * per_period]
    if not window:
        raise ValueError(f"no readings for period {period}")
    return max(window)


def penalty_price(rule: DeviationRule, clearing_price: Decimal | None) -> Decimal:
    """Yuan per kVA per hour beyond the band: a factor of the clearing price, or the fixed
    price when the period has none."""
    return rule.price_factor * clearing_price if clearing_price is not None else rule.fixed_price


def assess_period(rule: DeviationRule, month: int, period: int, allowed: Decimal,
                  metered: Decimal, clearing_price: Decimal | None, hours: Decimal,
                  exemption: Exemption | None = None, *, bought: Decimal) -> PeriodAssessment:
    """Assess one period: the band for the month, the excess beyond it, and its charge.

    `allowed` is contracted + bought − sold and `bought` the capacity bought in the period;
    under-use beyond the band is charged on at most `bought`.
    """
    deviation = metered - allowed
    band = rule.band_for(month)
    if deviation > 0 and rule.charge_over:
        excess = max(ZERO, deviation - band.upper * allowed)
    elif deviation < 0 and rule.charge_under:
        excess = min(bought, max(ZERO, -deviation - band.lower * allowed))
    else:
        excess = ZERO
    price = penalty_price(rule, clearing_price)
    charge = excess * price * hours
    if exemption is not None:
        return PeriodAssessment(period, allowed, metered, deviation, excess, price, ZERO,
                                exemption.reason)
    if charge < rule.minimum_charge:
        charge = ZERO
    return PeriodAssessment(period, allowed, metered, deviation, excess, price, charge)


# Integer arrays stay int64 while every intermediate fits with room to spare; beyond that
# they fall back to Python integers (object arrays), slower but still exact.
_INT64_SAFE = 2 ** 61


def excess_beyond_band(rule: DeviationRule, month: int, allowed: np.ndarray,
                       metered: np.ndarray, bought: np.ndarray) -> tuple[np.ndarray, int]:
    """The excess beyond the band for arrays of enterprise-periods, exactly.

    `allowed`, `metered` and `bought` are integer arrays in one unit (e.g. VA). The result is
    (excess, places): the excess in that unit × 10**places, where `places` is the number of
    decimals of the month's band fractions. The rule is `assess_period`'s.
    """
    band = rule.band_for(month)
    places = max(decimal_places(band.upper), decimal_places(band.lower))
    one = 10 ** places
    upper, lower = scaled_int(band.upper, places), scaled_int(band.lower, places)
    arrays = [np.asarray(a) for a in (allowed, metered, bought)]
    largest = max((int(np.abs(a).max()) if a.size else 0) for a in arrays)
    dtype = np.int64 if largest * 4 * one < _INT64_SAFE else object
    allowed, metered, bought = (a.astype(dtype) for a in arrays)
    deviation = (metered - allowed) * one
    zero = np.zeros_like(deviation)
    excess = zero
    if rule.charge_over:
        over = np.maximum(zero, deviation - upper * allowed)
        excess = np.where(deviation > 0, over, excess)
    if rule.charge_under:
        under = np.minimum(bought * one, np.maximum(zero, -deviation - lower * allowed))
        excess = np.where(deviation < 0, under, excess)
    return excess, places
