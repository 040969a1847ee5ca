"""Power monitoring: rules over one local day of 15-minute metering values that find loads over
their limit, metering gaps and abnormal readings, and the decision which of them open a job.

Input (`MonitoringInput`): the day's values as the settlement core holds them (`MeterDay`:
integer watts and a quality flag per point and interval, `settlement.metering.QUALITY_ORDER`),
the enterprises with their contracted capacity, metering points, main transformer and the
capacity they traded for each interval, and the main transformers with their allowed load.
Output: `Finding`s, sorted by their key. Thresholds (`AlarmThresholds`, defaults in brackets):

- **load_rate / over_limit, enterprise**: the enterprise's demand over its allowed capacity
  (contracted kVA plus capacity bought, minus capacity sold, in that interval) times
  `load_limit` [1.0], for at least `min_overload_intervals` [1] consecutive intervals.
- **load_rate / over_limit, transformer**: the summed demand of the enterprises a main
  transformer feeds over its allowed load (rated kVA × maximum load rate), same run length.
- **metering_gap / gap**: at least `min_gap_intervals` [4, one hour] consecutive intervals of
  a point without a value (`missing`) or, with `gap_includes_estimated` [True], with a value
  the sender estimated (`estimated`: the meter itself delivered nothing). Substituted values
  come from staff or a check meter, are measured, and end a gap.
- **abnormal_reading / negative**: a metered (`actual`) value below zero.
- **abnormal_reading / implausible**: a metered value above `implausible_factor` [3] times the
  enterprise's contracted capacity: no installation draws that; a register or CT fault does.
- **abnormal_reading / stuck**: the same non-zero metered value for at least
  `min_stuck_intervals` [16, four hours] consecutive intervals: real load always moves.

Active power to apparent power: the metering holds kW, capacities are kVA, and no reactive
power is metered, so `kVA = kW / power_factor` with a fixed `power_factor` [0.9]: the factor
Chinese tariffs expect of large industrial users (the 0.90 baseline of the power-factor
adjustment), which errs towards an alarm. 1.0 compares kW with kVA directly, as settlement
does. A point's values are multiplied by its CT/PT multiplier first.

Demand of an enterprise in an interval is the sum of its points' values, leaving out missing
values and values found negative or implausible (a meter fault raises its own alarm, not a
load alarm too). With some points missing the sum is a lower bound, so a load alarm is never
raised on a guess.

Consecutive intervals meeting one condition form one finding. Its key is
`rule:check:subject:code:first-interval-start` (UTC), so checking the same data again finds
the same alarms, and a run that grows when more of the day's data arrive keeps its key. Runs
are not joined across midnight. On a day not over yet only the intervals that have ended
(`judged_intervals`) are judged, and a gap reaching the last of them is held back: the data
may merely be late.

Which findings open a job (`job_plan`), as a park operator expects:

- an enterprise over its limit, or an abnormal reading: an alarm job at the enterprise,
  urgent (on site within 30 minutes) while the condition is recent: its last interval ended
  at most `urgent_within` [1 hour] before the check. One seen later (a file delivered the next
  morning) opens a non-urgent job: nobody races to a site for something over hours ago.
- a metering gap: a non-urgent alarm job (check the meter and its communication).
- a main transformer over its allowed load: an alarm for the park operator, no job. The
  transformer is the park's asset, not one enterprise's: the enterprises over their own limit
  have their own alarms and jobs, and a job for every enterprise it feeds would send
  electricians to sites drawing within their contracts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import StrEnum
from types import MappingProxyType

import numpy as np

from alliance.errors import InvalidAlarmInputError
from settlement.metering import ACTUAL, ESTIMATED, INTERVAL, MISSING, MeterDay, kw_of

KVA_PLACES = Decimal("0.1")


class Rule(StrEnum):
    """The three power-monitoring rules (stored with each alarm)."""

    LOAD_RATE = "load_rate"
    METERING_GAP = "metering_gap"
    ABNORMAL_READING = "abnormal_reading"


class Check(StrEnum):
    """What exactly a rule found."""

    OVER_LIMIT = "over_limit"
    GAP = "gap"
    NEGATIVE = "negative"
    IMPLAUSIBLE = "implausible"
    STUCK = "stuck"


RULE_OF: Mapping[Check, Rule] = MappingProxyType({
    Check.OVER_LIMIT: Rule.LOAD_RATE, Check.GAP: Rule.METERING_GAP,
    Check.NEGATIVE: Rule.ABNORMAL_READING, Check.IMPLAUSIBLE: Rule.ABNORMAL_READING,
    Check.STUCK: Rule.ABNORMAL_READING})


class Subject(StrEnum):
    """What a finding is about."""

    ENTERPRISE = "enterprise"
    TRANSFORMER = "transformer"
    POINT = "point"


# Why a finding opens no job, or opens a non-urgent one (`JobPlan.reason`).
TRANSFORMER_STAFF_ONLY = "transformer_staff_only"
NOT_RECENT = "not_recent"
INSPECTION = "inspection"


def _decimal(value: object, what: str) -> Decimal:
    """An exact finite number; floats are refused (limits are compared exactly)."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise InvalidAlarmInputError(f"{what} must be a Decimal or an int, not "
                                     f"{type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise InvalidAlarmInputError(f"{what} must be finite, got {value}")
    return number


def _whole(value: object, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidAlarmInputError(f"{what} must be a whole number of at least {least}, "
                                     f"got {value!r}")
    return value


@dataclass(frozen=True)
class AlarmThresholds:
    """The rules' limits; the defaults are what the module docstring states."""

    load_limit: Decimal = Decimal(1)
    min_overload_intervals: int = 1
    power_factor: Decimal = Decimal("0.9")
    min_gap_intervals: int = 4
    gap_includes_estimated: bool = True
    implausible_factor: Decimal = Decimal(3)
    min_stuck_intervals: int = 16
    urgent_within: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        for name in ("load_limit", "power_factor", "implausible_factor"):
            value = _decimal(getattr(self, name), name)
            if value <= 0:
                raise InvalidAlarmInputError(f"{name} must be positive, got {value}")
            object.__setattr__(self, name, value)
        if self.power_factor > 1:
            raise InvalidAlarmInputError(f"power_factor must be at most 1, got "
                                         f"{self.power_factor}")
        _whole(self.min_overload_intervals, "min_overload_intervals", 1)
        _whole(self.min_gap_intervals, "min_gap_intervals", 1)
        # One interval cannot repeat itself: a stuck meter needs at least two equal values.
        _whole(self.min_stuck_intervals, "min_stuck_intervals", 2)
        if not isinstance(self.gap_includes_estimated, bool):
            raise InvalidAlarmInputError("gap_includes_estimated must be True or False")
        if not isinstance(self.urgent_within, timedelta) or self.urgent_within < timedelta(0):
            raise InvalidAlarmInputError("urgent_within must be a duration of at least 0")

    def watts_limit(self, kva: Decimal) -> int:
        """The most watts that are not above `kva` of apparent power (exact)."""
        return int((kva * 1000 * self.power_factor).to_integral_value(ROUND_FLOOR))

    def kva(self, watts: int) -> Decimal:
        """Watts as kVA of apparent power, to 0.1 kVA."""
        return (Decimal(watts) / (1000 * self.power_factor)).quantize(KVA_PLACES, ROUND_HALF_UP)


DEFAULT_THRESHOLDS = AlarmThresholds()


@dataclass(frozen=True)
class MonitoredEnterprise:
    """An enterprise as monitoring sees it. `traded_kva` maps an interval of the day to the
    net capacity the enterprise bought (positive) or sold (negative) for it."""

    code: str
    contracted_kva: Decimal
    points: tuple[str, ...]
    transformer: str | None = None
    traded_kva: Mapping[int, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not self.code.strip():
            raise InvalidAlarmInputError("an enterprise needs a code")
        contracted = _decimal(self.contracted_kva, f"{self.code} contracted_kva")
        if contracted <= 0:
            raise InvalidAlarmInputError(f"{self.code}: contracted_kva must be positive")
        object.__setattr__(self, "contracted_kva", contracted)
        object.__setattr__(self, "points", tuple(self.points))
        traded = {}
        for interval, kva in dict(self.traded_kva).items():
            _whole(interval, f"{self.code} traded interval", 0)
            traded[interval] = _decimal(kva, f"{self.code} traded kVA")
        object.__setattr__(self, "traded_kva", MappingProxyType(dict(sorted(traded.items()))))


@dataclass(frozen=True)
class MonitoredTransformer:
    """A main transformer and the load it may carry (rated kVA × maximum load rate)."""

    code: str
    allowed_kva: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not self.code.strip():
            raise InvalidAlarmInputError("a transformer needs a code")
        allowed = _decimal(self.allowed_kva, f"{self.code} allowed_kva")
        if allowed <= 0:
            raise InvalidAlarmInputError(f"{self.code}: allowed_kva must be positive")
        object.__setattr__(self, "allowed_kva", allowed)


@dataclass(frozen=True, eq=False)
class MonitoringInput:
    """One local day to check. An enterprise's point the meter day lacks is all missing;
    meter points of no enterprise are not checked. `multipliers` (CT/PT ratio per point,
    default 1) turn meter values into primary-side values. `judged_intervals`: on a day not
    over yet, how many of its intervals have ended (None: the whole day)."""

    meter: MeterDay
    enterprises: tuple[MonitoredEnterprise, ...]
    transformers: tuple[MonitoredTransformer, ...] = ()
    multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    judged_intervals: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.meter, MeterDay):
            raise InvalidAlarmInputError("meter must be a settlement MeterDay")
        enterprises = tuple(sorted(self.enterprises, key=lambda e: e.code))
        transformers = tuple(sorted(self.transformers, key=lambda t: t.code))
        object.__setattr__(self, "enterprises", enterprises)
        object.__setattr__(self, "transformers", transformers)
        count = self.meter.grid.count
        _unique((e.code for e in enterprises), "enterprise")
        _unique((t.code for t in transformers), "transformer")
        _unique((p for e in enterprises for p in e.points), "metering point")
        known = {t.code for t in transformers}
        points = {p for e in enterprises for p in e.points}
        for e in enterprises:
            if e.transformer is not None and e.transformer not in known:
                raise InvalidAlarmInputError(f"{e.code}: unknown transformer {e.transformer}")
            if e.traded_kva and max(e.traded_kva) >= count:
                raise InvalidAlarmInputError(f"{e.code}: traded interval outside the day's "
                                             f"{count} intervals")
        multipliers = {}
        for point, value in dict(self.multipliers).items():
            if point not in points:
                raise InvalidAlarmInputError(f"multiplier for {point}, which no enterprise has")
            number = _decimal(value, f"{point} multiplier")
            if number <= 0:
                raise InvalidAlarmInputError(f"{point}: multiplier must be positive")
            multipliers[point] = number
        object.__setattr__(self, "multipliers", MappingProxyType(multipliers))
        if self.judged_intervals is not None:
            _whole(self.judged_intervals, "judged_intervals", 0)
            if self.judged_intervals > count:
                raise InvalidAlarmInputError(f"judged_intervals {self.judged_intervals} is "
                                             f"more than the day's {count} intervals")


def _unique(codes: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for code in codes:
        if not isinstance(code, str) or not code.strip():
            raise InvalidAlarmInputError(f"a {what} needs a code")
        if code in seen:
            raise InvalidAlarmInputError(f"{what} {code} appears twice")
        seen.add(code)


@dataclass(frozen=True)
class Finding:
    """One alarm: a rule's check found on a subject over intervals `first`..`last` of the day
    (from `starts_at` to `ends_at`, UTC). `enterprise` is the enterprise concerned (None for
    a transformer); `figures` are the numbers behind it (kVA and kW as Decimals, counts as
    ints, times as ISO text)."""

    check: Check
    subject: Subject
    code: str
    enterprise: str | None
    first: int
    last: int
    starts_at: datetime
    ends_at: datetime
    figures: Mapping[str, Decimal | int | str]

    @property
    def rule(self) -> Rule:
        return RULE_OF[self.check]

    @property
    def intervals(self) -> int:
        return self.last - self.first + 1

    @property
    def key(self) -> str:
        """Stable name of what was found: the same data give the same key."""
        return (f"{self.rule}:{self.check}:{self.subject}:{self.code}:"
                f"{self.starts_at:%Y-%m-%dT%H:%MZ}")

    def figures_document(self) -> dict[str, str | int]:
        """The figures for JSON: Decimals as exact text."""
        return {name: str(value) if isinstance(value, Decimal) else value
                for name, value in sorted(self.figures.items())}


# ----------------------------------------------------------------------------- runs


def _runs(mask: np.ndarray, joined: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, first, last) of every run of True in each row of `mask`. `joined[r, i]` says
    interval i continues the run of i - 1 (default: both are True)."""
    if joined is None:
        joined = np.zeros_like(mask)
        joined[:, 1:] = mask[:, 1:] & mask[:, :-1]
    starts = mask & ~joined
    continued = np.zeros_like(mask)
    continued[:, :-1] = joined[:, 1:]
    ends = mask & ~continued
    rows, firsts = np.nonzero(starts)
    _rows, lasts = np.nonzero(ends)  # row-major: the k-th end closes the k-th start
    return rows, firsts, lasts


def _kva_shown(kva: Decimal) -> Decimal:
    return kva.quantize(KVA_PLACES, ROUND_HALF_UP)


def _long(runs, least: int):
    rows, firsts, lasts = runs
    keep = lasts - firsts + 1 >= least
    return zip(rows[keep].tolist(), firsts[keep].tolist(), lasts[keep].tolist(), strict=True)


# ----------------------------------------------------------------------------- the rules


def scan(data: MonitoringInput, thresholds: AlarmThresholds = DEFAULT_THRESHOLDS
         ) -> tuple[Finding, ...]:
    """Every finding of the day, sorted by key; the same input gives the same findings."""
    if not isinstance(thresholds, AlarmThresholds):
        raise InvalidAlarmInputError("thresholds must be AlarmThresholds")
    meter, grid = data.meter, data.meter.grid
    judged = grid.count if data.judged_intervals is None else data.judged_intervals
    owner = {p: e for e in data.enterprises for p in e.points}
    codes = sorted(owner)
    position = {p: r for r, p in enumerate(meter.points)}
    watts = np.zeros((len(codes), judged), np.int64)
    quality = np.full((len(codes), judged), MISSING, np.uint8)
    for row, code in enumerate(codes):
        at = position.get(code)
        if at is None:
            continue
        raw = meter.watts[at, :judged]
        multiplier = data.multipliers.get(code, Decimal(1))
        watts[row] = (raw if multiplier == 1
                      else np.rint(raw * float(multiplier)).astype(np.int64))
        quality[row] = meter.quality[at, :judged]

    def finding(check, subject, code, enterprise, first, last, **figures) -> Finding:
        return Finding(check, subject, code, enterprise, first, last,
                       grid.start + first * INTERVAL, grid.start + (last + 1) * INTERVAL,
                       MappingProxyType(figures))

    found: list[Finding] = []
    actual = quality == ACTUAL
    negative = actual & (watts < 0)
    factor = thresholds.implausible_factor
    implausible_kva = [owner[c].contracted_kva * factor for c in codes]
    ceiling = np.array([thresholds.watts_limit(k) for k in implausible_kva], np.int64)
    implausible = actual & ~negative & (watts > ceiling[:, None])

    # Metering gaps; on a day not over yet, one reaching the last judged interval waits.
    gap = quality == MISSING
    if thresholds.gap_includes_estimated:
        gap = gap | (quality == ESTIMATED)
    for row, first, last in _long(_runs(gap), thresholds.min_gap_intervals):
        if last == judged - 1 and judged < grid.count:
            continue
        span = quality[row, first:last + 1]
        found.append(finding(Check.GAP, Subject.POINT, codes[row], owner[codes[row]].code,
                             first, last, intervals=last - first + 1,
                             missing=int((span == MISSING).sum()),
                             estimated=int((span == ESTIMATED).sum())))

    for row, first, last in _long(_runs(negative), 1):
        found.append(finding(Check.NEGATIVE, Subject.POINT, codes[row], owner[codes[row]].code,
                             first, last, intervals=last - first + 1,
                             lowest_kw=kw_of(int(watts[row, first:last + 1].min()))))
    for row, first, last in _long(_runs(implausible), 1):
        peak = int(watts[row, first:last + 1].max())
        found.append(finding(Check.IMPLAUSIBLE, Subject.POINT, codes[row],
                             owner[codes[row]].code, first, last, intervals=last - first + 1,
                             peak_kva=thresholds.kva(peak),
                             limit_kva=_kva_shown(implausible_kva[row])))

    steady = actual & (watts != 0) & ~negative & ~implausible
    joined = np.zeros_like(steady)
    joined[:, 1:] = steady[:, 1:] & steady[:, :-1] & (watts[:, 1:] == watts[:, :-1])
    for row, first, last in _long(_runs(steady, joined), thresholds.min_stuck_intervals):
        found.append(finding(Check.STUCK, Subject.POINT, codes[row], owner[codes[row]].code,
                             first, last, intervals=last - first + 1,
                             value_kw=kw_of(int(watts[row, first]))))

    # Demand per enterprise: the sum of its usable values (a lower bound where some miss).
    usable = (quality != MISSING) & ~negative & ~implausible
    counted = np.where(usable, watts, 0)
    enterprises = data.enterprises
    demand = np.zeros((len(enterprises), judged), np.int64)
    has_value = np.zeros((len(enterprises), judged), bool)
    limits = np.zeros((len(enterprises), judged), np.int64)
    limit_kva: list[list[Decimal] | Decimal] = []
    row_of = {c: r for r, c in enumerate(codes)}
    for number, enterprise in enumerate(enterprises):
        rows = [row_of[p] for p in enterprise.points]
        if rows:
            demand[number] = counted[rows].sum(axis=0)
            has_value[number] = usable[rows].any(axis=0)
        base = enterprise.contracted_kva * thresholds.load_limit
        if enterprise.traded_kva:
            allowed = [(enterprise.contracted_kva + enterprise.traded_kva.get(i, Decimal(0)))
                       * thresholds.load_limit for i in range(judged)]
            limit_kva.append(allowed)
            limits[number] = [thresholds.watts_limit(kva) for kva in allowed]
        else:
            limit_kva.append(base)
            limits[number] = thresholds.watts_limit(base)
    over = has_value & (demand > limits)
    for number, first, last in _long(_runs(over), thresholds.min_overload_intervals):
        enterprise = enterprises[number]
        peak_at = first + int(demand[number, first:last + 1].argmax())
        allowed = limit_kva[number]
        found.append(finding(
            Check.OVER_LIMIT, Subject.ENTERPRISE, enterprise.code, enterprise.code, first, last,
            intervals=last - first + 1, peak_kva=thresholds.kva(int(demand[number, peak_at])),
            limit_kva=_kva_shown(allowed[peak_at] if isinstance(allowed, list) else allowed),
            contracted_kva=_kva_shown(enterprise.contracted_kva),
            peak_at=(grid.start + peak_at * INTERVAL).isoformat()))

    # Main transformers: the summed demand of the enterprises they feed.
    for transformer in data.transformers:
        fed = [n for n, e in enumerate(enterprises) if e.transformer == transformer.code]
        if not fed:
            continue
        load = demand[fed].sum(axis=0)
        over = (has_value[fed].any(axis=0) & (load > thresholds.watts_limit(
            transformer.allowed_kva)))[None, :]
        for _row, first, last in _long(_runs(over), thresholds.min_overload_intervals):
            peak_at = first + int(load[first:last + 1].argmax())
            found.append(finding(
                Check.OVER_LIMIT, Subject.TRANSFORMER, transformer.code, None, first, last,
                intervals=last - first + 1, peak_kva=thresholds.kva(int(load[peak_at])),
                limit_kva=_kva_shown(transformer.allowed_kva), enterprises=len(fed),
                peak_at=(grid.start + peak_at * INTERVAL).isoformat()))
    return tuple(sorted(found, key=lambda f: f.key))


# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobPlan:
    """Whether a finding opens a job, how urgent, and why not (urgent) when it is not."""

    opens_job: bool
    urgent: bool
    reason: str = ""


def job_plan(finding: Finding, at: datetime,
             thresholds: AlarmThresholds = DEFAULT_THRESHOLDS) -> JobPlan:
    """The decision of the module docstring for one finding, checked at `at`."""
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise InvalidAlarmInputError(f"the check time must be timezone-aware, got {at!r}")
    if finding.subject is Subject.TRANSFORMER:
        return JobPlan(False, False, TRANSFORMER_STAFF_ONLY)
    if finding.check is Check.GAP:
        return JobPlan(True, False, INSPECTION)
    if at - finding.ends_at > thresholds.urgent_within:
        return JobPlan(True, False, NOT_RECENT)
    return JobPlan(True, True)
