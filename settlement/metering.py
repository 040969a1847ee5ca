"""Validation of one day's 15-minute interval readings per metering point (the V of VEE).

Readings are interval demand: the mean kW over a 15-minute interval, not a cumulative
register. A register rollover or a head-end overflow therefore shows up as an implausibly
large value, which the `over-maximum` rule rejects. Rejected readings never reach settlement;
their intervals are left `missing` here and may be filled by `settlement.estimation`.

Problem rules: `missing`, `duplicate` (identical values, one kept), `conflicting-duplicate`
(different values, all rejected, never merged), `negative`, `over-maximum`, `spike`
(absolute limit, or a jump away from both neighbours and back beyond the step limit),
`off-grid`, `outside-day`, `unknown-point`.

A day is columnar (`MeterDay`): one row of 15-minute values per point, in integer watts, with
a quality flag per value. Validation works on whole columns (`ReadingBatch`), so a day of
10,000 points is checked in a fraction of a second; only the few problems become objects.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from settlement.errors import MeteringInputError

if TYPE_CHECKING:
    from settlement.batch import ReadingBatch

INTERVAL = timedelta(minutes=15)
INTERVAL_SECONDS = 900
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
ACTUAL, ESTIMATED, SUBSTITUTED, MISSING = range(4)  # the codes, for arrays


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

    def watts(self, name: str) -> int:
        """A kW limit in integer watts."""
        return int(getattr(self, name) * 1000)


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

    @property
    def start_epoch(self) -> int:
        """UTC epoch seconds of the day's first interval (a whole number for any zone whose
        offset is whole minutes)."""
        return int(self.start.timestamp())

    @property
    def end_epoch(self) -> int:
        return int(self.end.timestamp())

    def time_of_day(self, index: int) -> int:
        """Local wall-clock time of an interval's start as one number, so days of different
        length (daylight saving) line up: minutes after midnight, twice, plus the fold."""
        local = self.interval_start(index)
        return (local.hour * 60 + local.minute) * 2 + local.fold

    def locate(self, moment: datetime) -> tuple[int | None, bool]:
        """(interval containing `moment` or None if outside the day, whether on the grid)."""
        offset = moment.astimezone(UTC) - self.start
        if offset < timedelta(0) or moment >= self.end:
            return None, False
        return offset // INTERVAL, offset % INTERVAL == timedelta(0)


@dataclass(frozen=True)
class Problem:
    """One validation finding; `interval` is None when the reading is outside the day, `line`
    the reading's line in its source file (0 when it has none)."""

    point: str
    interval: int | None
    rule: str
    detail: str
    line: int = 0

    def sort_key(self) -> tuple[str, int, str, str, int]:
        return (self.point, -1 if self.interval is None else self.interval, self.rule,
                self.detail, self.line)


@dataclass(frozen=True)
class IntervalValue:
    """The value settlement may use for one point and interval, with its quality flag."""

    point: str
    interval: int
    start: datetime
    kw: Decimal | None
    quality: Quality
    explanation: str = ""


def kw_text(watts: int) -> str:
    """Integer watts written as kW with three decimals, as `str` writes such a Decimal."""
    sign = "-" if watts < 0 else ""
    whole, milli = divmod(abs(watts), 1000)
    return f"{sign}{whole}.{milli:03d}"


def kw_of(watts: int) -> Decimal:
    return Decimal(kw_text(watts))


@dataclass(frozen=True, eq=False)
class MeterDay:
    """One day of validated (and possibly estimated) values as columns.

    `points` are sorted; `watts[p, i]` is the value of point `p` in interval `i` in integer
    watts (0 where missing) and `quality[p, i]` its flag as an index into `QUALITY_ORDER`.
    `notes` explains, per (point index, interval), a value that is not `actual` (how it was
    estimated, why it is missing). The arrays are read-only.
    """

    day: date
    zone: str
    points: tuple[str, ...]
    watts: np.ndarray
    quality: np.ndarray
    notes: Mapping[tuple[int, int], str] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    def __post_init__(self) -> None:
        zone = self.zone.key if isinstance(self.zone, ZoneInfo) else str(self.zone)
        object.__setattr__(self, "zone", zone)
        points = tuple(self.points)
        if any(a >= b for a, b in zip(points, points[1:], strict=False)):
            raise MeteringInputError("meter day points must be sorted and distinct")
        object.__setattr__(self, "points", points)
        shape = (len(points), self.grid.count)
        for name, dtype in (("watts", np.int64), ("quality", np.uint8)):
            array = np.array(getattr(self, name), dtype=dtype, copy=True)
            if array.shape != shape:
                if array.size != shape[0] * shape[1]:
                    raise MeteringInputError(f"{name} has shape {array.shape}, not {shape}")
                array = array.reshape(shape)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        missing = self.quality == MISSING
        if (self.quality > MISSING).any():
            raise MeteringInputError("a quality code is not one of QUALITY_ORDER")
        if self.watts[missing].any():
            raise MeteringInputError("a missing value must be stored as 0 W")
        notes = dict(sorted((tuple(map(int, key)), str(text))
                            for key, text in dict(self.notes).items()))
        object.__setattr__(self, "notes", MappingProxyType(notes))
        object.__setattr__(self, "problems", tuple(self.problems))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MeterDay):
            return NotImplemented
        return (self.day == other.day and self.zone == other.zone
                and self.points == other.points
                and np.array_equal(self.watts, other.watts)
                and np.array_equal(self.quality, other.quality)
                and dict(self.notes) == dict(other.notes) and self.problems == other.problems)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_values(cls, day: date, zone: str | ZoneInfo,
                    values: Mapping[str, Sequence[tuple[Decimal | None, Quality, str]]],
                    problems: Iterable[Problem] = ()) -> MeterDay:
        """A day from readable values: per point, one (kW or None, quality, explanation) per
        interval. None goes with `missing`, and `missing` with None."""
        points = tuple(sorted(values))
        count = DayGrid(day, as_zone(zone)).count
        watts = np.zeros((len(points), count), np.int64)
        quality = np.zeros((len(points), count), np.uint8)
        notes = {}
        for row, point in enumerate(points):
            series = values[point]
            if len(series) != count:
                raise MeteringInputError(f"{point}: {len(series)} values for {count} intervals")
            for index, (kw, flag, explanation) in enumerate(series):
                flag = Quality(flag)
                if (kw is None) != (flag is Quality.MISSING):
                    raise MeteringInputError(f"{point} interval {index}: a value is missing "
                                             "exactly when its quality is 'missing'")
                if kw is not None:
                    watts[row, index] = int(to_kw(kw) * 1000)
                quality[row, index] = QUALITY_ORDER.index(flag)
                if explanation:
                    notes[(row, index)] = explanation
        return cls(day, zone, points, watts, quality, notes, tuple(problems))

    @property
    def grid(self) -> DayGrid:
        return DayGrid(self.day, ZoneInfo(self.zone))

    def row(self, point: str) -> int:
        """The row of `point`; KeyError if the day has no such point."""
        at = bisect_left(self.points, point)
        if at == len(self.points) or self.points[at] != point:
            raise KeyError(point)
        return at

    def series(self, point: str) -> tuple[IntervalValue, ...]:
        """The intervals of one point as readable values (built on demand)."""
        try:
            row = self.row(point)
        except KeyError:
            return ()
        return self._series(row, self.grid)

    def _series(self, row: int, grid: DayGrid) -> tuple[IntervalValue, ...]:
        point, notes = self.points[row], self.notes
        return tuple(
            IntervalValue(point, index, grid.interval_start(index),
                          None if flag == MISSING else kw_of(watts), QUALITY_ORDER[flag],
                          notes.get((row, index), ""))
            for index, (watts, flag) in enumerate(zip(self.watts[row].tolist(),
                                                      self.quality[row].tolist(), strict=True)))

    @cached_property
    def intervals(self) -> tuple[IntervalValue, ...]:
        """Every interval of every point, by point and interval (slow for a large day)."""
        grid = self.grid
        return tuple(value for row in range(len(self.points))
                     for value in self._series(row, grid))

    def missing(self) -> list[tuple[str, int]]:
        """(point, interval) of every `missing` value, sorted."""
        rows, indexes = np.nonzero(self.quality == MISSING)
        return [(self.points[r], i) for r, i in zip(rows.tolist(), indexes.tolist(),
                                                    strict=True)]

    def select(self, points: Iterable[str]) -> MeterDay:
        """The day for some of its points (their notes and problems with them)."""
        chosen = sorted(set(points))
        rows = [self.row(p) for p in chosen]
        new_row = {old: new for new, old in enumerate(rows)}
        notes = {(new_row[r], i): text for (r, i), text in self.notes.items() if r in new_row}
        keep = set(chosen)
        return MeterDay(self.day, self.zone, tuple(chosen), self.watts[rows],
                        self.quality[rows], notes,
                        tuple(p for p in self.problems if p.point in keep))


def _fmt(kw: Decimal | str) -> str:
    return f"{kw} kW"


def _note_for_sender(code: int) -> str:
    return f"{QUALITY_ORDER[code].value} by the sender"


def validate_day(readings: Iterable[Reading] | ReadingBatch, *, points: Collection[str],
                 day: date, zone: str | ZoneInfo,
                 rules: MeteringRules | None = None) -> MeterDay:
    """Check one local day of readings for `points`; an accepted value keeps the sender's
    quality flag, every other interval is `missing`.

    The result depends only on the set of readings, never on their order.
    """
    from settlement.batch import ReadingBatch  # batch builds on this module

    rules = rules or MeteringRules()
    grid = DayGrid(day, as_zone(zone))
    batch = (readings if isinstance(readings, ReadingBatch)
             else ReadingBatch.from_readings(readings))
    known = tuple(sorted(set(points)))
    count = grid.count
    slots = len(known) * count
    problems: list[Problem] = []

    position = {p: i for i, p in enumerate(known)}
    lookup = np.array([position.get(p, -1) for p in batch.points] or [-1], np.int64)
    row = lookup[batch.point_index]
    offset = batch.start - grid.start_epoch
    index = offset // INTERVAL_SECONDS
    inside = (offset >= 0) & (batch.start < grid.end_epoch)
    on_grid = offset % INTERVAL_SECONDS == 0
    usable = (row >= 0) & inside & on_grid

    # The few rejected outright: unknown point, outside the day, off the grid.
    for i in np.flatnonzero(~usable).tolist():
        point, watts = batch.points[batch.point_index[i]], int(batch.watts[i])
        at = datetime.fromtimestamp(int(batch.start[i]), grid.zone).isoformat()
        where = int(index[i]) if inside[i] else None
        if row[i] < 0:
            problem = (where, "unknown-point", f"{_fmt(kw_text(watts))} at {at} rejected: "
                                               "unknown point")
        elif where is None:
            problem = (None, "outside-day", f"{_fmt(kw_text(watts))} at {at} rejected: "
                                            f"not on {day}")
        else:
            problem = (where, "off-grid", f"{_fmt(kw_text(watts))} at {at} rejected: not on "
                                          "the 15-minute grid")
        problems.append(Problem(point, *problem, int(batch.line[i])))

    take = np.flatnonzero(usable)
    slot = row[take] * count + index[take]
    per_slot = np.bincount(slot, minlength=slots) if slots else np.zeros(0, np.int64)
    value = np.zeros(slots, np.int64)
    flag = np.full(slots, MISSING, np.uint8)
    line = np.zeros(slots, np.int64)
    has = np.zeros(slots, bool)
    single = per_slot[slot] == 1
    value[slot[single]] = batch.watts[take[single]]
    flag[slot[single]] = batch.quality[take[single]]
    line[slot[single]] = batch.line[take[single]]
    has[slot[single]] = True

    # Several readings for one interval: identical ones are one reading, different ones are
    # all rejected. Grouped in sorted order, so input order does not matter.
    several = take[~single]
    if len(several):
        several_slot = slot[~single]
        order = np.lexsort((batch.line[several], batch.watts[several], several_slot))
        several, several_slot = several[order], several_slot[order]
        bounds = np.flatnonzero(np.diff(several_slot)) + 1
        for group in np.split(np.arange(len(several)), bounds):
            rows = several[group]
            at = int(several_slot[group[0]])
            values = batch.watts[rows].tolist()
            point, interval = known[at // count], at % count
            first_line = int(batch.line[rows].min())
            distinct = sorted(set(values))
            if len(distinct) > 1:
                shown = ", ".join(kw_text(v) for v in distinct)
                problems.append(Problem(point, interval, "conflicting-duplicate",
                                        f"{len(values)} readings with different values "
                                        f"({shown} kW) rejected, not merged", first_line))
                continue
            problems.append(Problem(point, interval, "duplicate",
                                    f"{len(values)} identical readings of "
                                    f"{_fmt(kw_text(distinct[0]))}; one kept", first_line))
            value[at], has[at], line[at] = distinct[0], True, first_line
            flag[at] = int(batch.quality[rows].min())  # an actual copy wins

    max_w, spike_w, step_w = (rules.watts(n) for n in ("max_kw", "spike_kw", "max_step_kw"))
    negative = has & (value < 0)
    over = has & ~negative & (value > max_w)
    spike = has & ~negative & ~over & (value > spike_w)
    for mask, rule, text in (
            (negative, "negative", "{} rejected"),
            (over, "over-maximum", "{} above the maximum " + _fmt(rules.max_kw)
             + " (rollover or overflow) rejected"),
            (spike, "spike", "{} above the absolute limit " + _fmt(rules.spike_kw)
             + " rejected")):
        for at in np.flatnonzero(mask).tolist():
            problems.append(Problem(known[at // count], at % count, rule,
                                    text.format(_fmt(kw_text(int(value[at])))), int(line[at])))
    accepted = (has & ~(negative | over | spike)).reshape(len(known), count)
    grid_values = value.reshape(len(known), count)

    # Step spikes are judged against the neighbours as accepted above, in one pass, so the
    # outcome does not depend on the order intervals are visited.
    here, before, after = grid_values[:, 1:-1], grid_values[:, :-2], grid_values[:, 2:]
    judged = accepted[:, 1:-1] & accepted[:, :-2] & accepted[:, 2:]
    jumps = judged & ((((here - before) > step_w) & ((here - after) > step_w))
                      | (((before - here) > step_w) & ((after - here) > step_w)))
    spike_rows, spike_cols = np.nonzero(jumps)
    for r, c in zip(spike_rows.tolist(), (spike_cols + 1).tolist(), strict=True):
        row_values = grid_values[r]
        problems.append(Problem(
            known[r], c, "spike",
            f"{_fmt(kw_text(int(row_values[c])))} jumps more than {_fmt(rules.max_step_kw)} "
            f"from both neighbours ({kw_text(int(row_values[c - 1]))}, "
            f"{kw_text(int(row_values[c + 1]))} kW) rejected", int(line[r * count + c])))
    accepted[spike_rows, spike_cols + 1] = False

    no_reading = (per_slot == 0).reshape(len(known), count)
    for r, c in zip(*(a.tolist() for a in np.nonzero(no_reading)), strict=True):
        problems.append(Problem(known[r], c, "missing", "no reading"))

    quality = np.where(accepted, flag.reshape(len(known), count), MISSING).astype(np.uint8)
    watts = np.where(accepted, grid_values, 0)
    notes = {(r, c): "no valid reading"
             for r, c in zip(*(a.tolist() for a in np.nonzero(~accepted)), strict=True)}
    for r, c in zip(*(a.tolist() for a in np.nonzero(accepted & (quality != ACTUAL))),
                    strict=True):
        notes[(r, c)] = _note_for_sender(int(quality[r, c]))
    return MeterDay(day, grid.zone.key, known, watts, quality, notes,
                    tuple(sorted(problems, key=Problem.sort_key)))
