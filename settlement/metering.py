"""Validation of one day's 15-minute interval readings per metering point (the V of VEE).

Readings are interval demand: the mean kW over a 15-minute interval, not a cumulative
register. A register rollover or a head-end overflow therefore shows up as an implausibly
large value, which the `over-maximum` rule rejects. Rejected readings never reach settlement;
their intervals are left `missing` here and may be filled by `settlement.estimation`.

Problem rules: `missing`, `duplicate` (identical values, one kept), `conflicting-duplicate`
(different values, all rejected, never merged), `negative`, `over-maximum`, `spike`
(absolute limit, or a jump away from both neighbours and back beyond the step limit),
`off-grid`, `outside-day`, `unknown-point`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from zoneinfo import ZoneInfo

from settlement.errors import MeteringInputError

INTERVAL = timedelta(minutes=15)
KW_PLACES = Decimal("0.001")


class Quality(StrEnum):
    """Quality flag of one interval value; settlement states which it used."""

    ACTUAL = "actual"
    ESTIMATED = "estimated"
    # Supplied by staff or a check meter in place of the metered value.
    SUBSTITUTED = "substituted"
    MISSING = "missing"


# Quality flags in code order: columnar data stores a flag as its index here.
QUALITY_ORDER = (Quality.ACTUAL, Quality.ESTIMATED, Quality.SUBSTITUTED, Quality.MISSING)


def to_kw(value: Decimal | int) -> Decimal:
    """An exact kW value with three decimals; floats and finer precision are refused."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise MeteringInputError(f"kW must be a Decimal or an int, not {type(value).__name__}")
    try:
        kw = Decimal(value)
        rounded = kw.quantize(KW_PLACES)
    except InvalidOperation as exc:
        raise MeteringInputError(f"kW value {value!r} is not a finite number") from exc
    if rounded != kw:
        raise MeteringInputError(f"kW value {value} has more than three decimals")
    return rounded


def require_aware(moment: datetime, what: str) -> None:
    """Refuse a naive datetime: metering times are instants, not wall-clock readings."""
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise MeteringInputError(f"{what} must be a time-zone-aware datetime, got {moment!r}")


def as_zone(zone: str | ZoneInfo) -> ZoneInfo:
    """The park's time zone, from its IANA name or as given."""
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)


@dataclass(frozen=True)
class Reading:
    """One metered value: mean demand of `point` over the 15 minutes from `start`.

    `quality` is the flag the sender gave (a NEM12 file may deliver estimated or substituted
    values); values read from a meter are `actual`. `missing` is not a value and is refused.
    """

    point: str
    start: datetime
    kw: Decimal
    quality: Quality = Quality.ACTUAL

    def __post_init__(self) -> None:
        require_aware(self.start, "reading start")
        object.__setattr__(self, "kw", to_kw(self.kw))
        if Quality(self.quality) is Quality.MISSING:
            raise MeteringInputError("a reading cannot have the quality 'missing'")
        object.__setattr__(self, "quality", Quality(self.quality))


@dataclass(frozen=True)
class MeteringRules:
    """Limits for validation and estimation; defaults suit an industrial-park metering point."""

    # Above this a value cannot be interval demand: a register rollover or an overflow.
    max_kw: Decimal = Decimal("100000")
    # Absolute spike limit: above this a value is treated as a spike.
    spike_kw: Decimal = Decimal("50000")
    # Rate-of-change limit: a value this far above (or below) both neighbours is a spike.
    max_step_kw: Decimal = Decimal("10000")
    # Gaps up to this long are interpolated; longer ones come from like days.
    max_interpolation_gap: timedelta = timedelta(hours=1)
    like_day_weeks: int = 3
    # "same-weekday" or "all" (every day of the look-back window).
    like_days: str = "same-weekday"

    def __post_init__(self) -> None:
        for name in ("max_kw", "spike_kw", "max_step_kw"):
            value = to_kw(getattr(self, name))
            if value <= 0:
                raise MeteringInputError(f"{name} must be positive, got {value}")
            object.__setattr__(self, name, value)
        if self.max_interpolation_gap < timedelta(0) or self.max_interpolation_gap % INTERVAL:
            raise MeteringInputError("max_interpolation_gap must be a whole number of intervals")
        if self.like_day_weeks < 1:
            raise MeteringInputError("like_day_weeks must be at least 1")
        if self.like_days not in ("same-weekday", "all"):
            raise MeteringInputError("like_days must be 'same-weekday' or 'all'")

    @property
    def max_gap_intervals(self) -> int:
        return self.max_interpolation_gap // INTERVAL


@dataclass(frozen=True)
class DayGrid:
    """The 15-minute intervals of one local day; 96 in a zone without daylight saving."""

    day: date
    zone: ZoneInfo
    start: datetime = field(init=False)
    end: datetime = field(init=False)

    def __post_init__(self) -> None:
        start = datetime.combine(self.day, time(0), tzinfo=self.zone).astimezone(UTC)
        end = datetime.combine(self.day + timedelta(days=1), time(0), tzinfo=self.zone)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end.astimezone(UTC))

    @property
    def count(self) -> int:
        return (self.end - self.start) // INTERVAL

    def interval_start(self, index: int) -> datetime:
        return (self.start + index * INTERVAL).astimezone(self.zone)

    def locate(self, moment: datetime) -> tuple[int | None, bool]:
        """(interval containing `moment` or None if outside the day, whether on the grid)."""
        offset = moment.astimezone(UTC) - self.start
        if offset < timedelta(0) or moment >= self.end:
            return None, False
        return offset // INTERVAL, offset % INTERVAL == timedelta(0)


@dataclass(frozen=True)
class Problem:
    """One validation finding; `interval` is None when the reading is outside the day."""

    point: str
    interval: int | None
    rule: str
    detail: str

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.point, -1 if self.interval is None else self.interval, self.rule,
                self.detail)


@dataclass(frozen=True)
class IntervalValue:
    """The value settlement may use for one point and interval, with its quality flag."""

    point: str
    interval: int
    start: datetime
    kw: Decimal | None
    quality: Quality
    explanation: str = ""


@dataclass(frozen=True)
class MeterDay:
    """One day of validated (and possibly estimated) values, sorted by point and interval."""

    day: date
    zone: str
    intervals: tuple[IntervalValue, ...]
    problems: tuple[Problem, ...]

    @property
    def grid(self) -> DayGrid:
        return DayGrid(self.day, ZoneInfo(self.zone))

    @property
    def points(self) -> tuple[str, ...]:
        return tuple(sorted({v.point for v in self.intervals}))

    def series(self, point: str) -> tuple[IntervalValue, ...]:
        return tuple(v for v in self.intervals if v.point == point)


def _fmt(kw: Decimal) -> str:
    return f"{kw} kW"


def validate_day(readings: Iterable[Reading], *, points: Collection[str], day: date,
                 zone: str | ZoneInfo, rules: MeteringRules | None = None) -> MeterDay:
    """Check one local day of readings for `points`; every interval is `actual` or `missing`.

    The result depends only on the set of readings, never on their order.
    """
    rules = rules or MeteringRules()
    grid = DayGrid(day, as_zone(zone))
    known = set(points)
    problems: list[Problem] = []
    by_slot: dict[tuple[str, int], list[Decimal]] = defaultdict(list)
    for reading in readings:
        index, on_grid = grid.locate(reading.start)
        at = reading.start.astimezone(grid.zone).isoformat()
        if reading.point not in known:
            problems.append(Problem(reading.point, index, "unknown-point",
                                    f"{_fmt(reading.kw)} at {at} rejected: unknown point"))
        elif index is None:
            problems.append(Problem(reading.point, None, "outside-day",
                                    f"{_fmt(reading.kw)} at {at} rejected: not on {day}"))
        elif not on_grid:
            problems.append(Problem(reading.point, index, "off-grid",
                                    f"{_fmt(reading.kw)} at {at} rejected: not on the "
                                    "15-minute grid"))
        else:
            by_slot[(reading.point, index)].append(reading.kw)

    accepted: dict[tuple[str, int], Decimal] = {}
    for (point, index), values in by_slot.items():
        distinct = sorted(set(values))
        if len(distinct) > 1:
            shown = ", ".join(str(v) for v in distinct)
            problems.append(Problem(point, index, "conflicting-duplicate",
                                    f"{len(values)} readings with different values ({shown} kW)"
                                    " rejected, not merged"))
            continue
        value = distinct[0]
        if len(values) > 1:
            problems.append(Problem(point, index, "duplicate",
                                    f"{len(values)} identical readings of {_fmt(value)}; "
                                    "one kept"))
        if value < 0:
            problems.append(Problem(point, index, "negative", f"{_fmt(value)} rejected"))
        elif value > rules.max_kw:
            problems.append(Problem(point, index, "over-maximum",
                                    f"{_fmt(value)} above the maximum {_fmt(rules.max_kw)} "
                                    "(rollover or overflow) rejected"))
        elif value > rules.spike_kw:
            problems.append(Problem(point, index, "spike",
                                    f"{_fmt(value)} above the absolute limit "
                                    f"{_fmt(rules.spike_kw)} rejected"))
        else:
            accepted[(point, index)] = value

    # Step spikes are judged against the neighbours as accepted above, in one pass, so the
    # outcome does not depend on the order intervals are visited.
    step = rules.max_step_kw
    spikes = []
    for (point, index), value in accepted.items():
        before, after = accepted.get((point, index - 1)), accepted.get((point, index + 1))
        if before is None or after is None:
            continue
        if min(value - before, value - after) > step or min(before - value, after - value) > step:
            spikes.append((point, index, before, after))
    for point, index, before, after in spikes:
        value = accepted[(point, index)]
        problems.append(Problem(point, index, "spike",
                                f"{_fmt(value)} jumps more than {_fmt(step)} from both "
                                f"neighbours ({before}, {after} kW) rejected"))
    for point, index, _, _ in spikes:
        del accepted[(point, index)]

    intervals = []
    for point in sorted(known):
        for index in range(grid.count):
            value = accepted.get((point, index))
            if value is None and (point, index) not in by_slot:
                problems.append(Problem(point, index, "missing", "no reading"))
            intervals.append(IntervalValue(
                point, index, grid.interval_start(index), value,
                Quality.MISSING if value is None else Quality.ACTUAL,
                "" if value is not None else "no valid reading"))
    return MeterDay(day, grid.zone.key, tuple(intervals),
                    tuple(sorted(problems, key=Problem.sort_key)))
