"""Deviation assessment: how far an enterprise's metered demand strayed from what it may draw.

An enterprise may draw, in each period, its contracted capacity plus the capacity it bought
minus the capacity it sold in the published clearing. Its metered demand in the period is
the largest 15-minute demand within it. A deviation inside the rule's tolerance band costs
nothing; the part beyond the band is charged at a penalty price derived from the period's
clearing price. Rules are data (`DeviationRule`), versioned by name and version, and chosen
per park.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

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


def assess_period(rule: DeviationRule, month: int, period: int, allowed: Decimal,
                  metered: Decimal, clearing_price: Decimal | None, hours: Decimal,
                  exemption: Exemption | None = None) -> PeriodAssessment:
    """Assess one period: the band for the month, the excess beyond it, and its charge."""
    deviation = metered - allowed
    band = rule.band_for(month)
    if deviation > 0 and rule.charge_over:
        excess = max(ZERO, deviation - band.upper * allowed)
    elif deviation < 0 and rule.charge_under:
        excess = max(ZERO, -deviation - band.lower * allowed)
    else:
        excess = ZERO
    price = (rule.price_factor * clearing_price if clearing_price is not None
             else rule.fixed_price)
    charge = excess * price * hours
    if exemption is not None:
        return PeriodAssessment(period, allowed, metered, deviation, excess, price, ZERO,
                                exemption.reason)
    if charge < rule.minimum_charge:
        charge = ZERO
    return PeriodAssessment(period, allowed, metered, deviation, excess, price, charge)


# Presets following published provincial rules. The rules were written for energy
# deviations of medium- and long-term contracts; here the same bands and price bases apply
# to capacity drawn against capacity allowed.
SICHUAN_2018 = DeviationRule(
    name="sichuan-2018", version=1, band=Band(Decimal("0.08"), Decimal("0.04")),
    price_factor=Decimal("0.10"),
    source="国家能源局四川监管办公室《2018年四川电力交易指导意见》: positive deviation "
           "threshold 8 %, negative deviation exempt up to 4 %; under-use beyond 4 % pays "
           "10 % of the contract price when no down-regulation price applies. Over-use there "
           "pays the system up-regulation price, which a park market does not have; this "
           "preset charges both sides at 10 % of the clearing price.",
)
FUJIAN_2021 = DeviationRule(
    name="fujian-2021", version=1, band=Band(Decimal("0.03"), Decimal("0.03")),
    price_factor=Decimal("0.05"),
    source="福建能源监管办《关于完善福建省电力市场中长期交易规则的若干意见（征求意见稿）》"
           "(2021): deviations beyond ±3 % are assessed; fee = deviation beyond the band × the "
           "month's uniform clearing price × 5 %.",
)
