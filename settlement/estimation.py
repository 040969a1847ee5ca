"""Estimation of missing intervals (the E of VEE): interpolation for short gaps, like days for
long ones, and never across a marked outage.

A gap is a run of `missing` intervals. A gap of at most `max_interpolation_gap` with an
`actual` value on both sides is filled on the straight line between them. Everything else is
filled with the mean, at the same local time of day, of the `actual` values of like days
(same weekday by default, or every day) in the previous `like_day_weeks` weeks of history,
leaving out any history day with an outage on that point. Intervals under a marked outage
stay `missing`, and no interpolation spans them. Gaps are not bridged across midnight.
`substitute` puts values from staff or a check meter in place, flagged `substituted`.

Both work on a day's columns at once: a gap, a like day or an outage is a NumPy operation
over all points, and only the explanations are written one by one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from settlement.errors import MeteringInputError
from settlement.metering import (
    ACTUAL,
    ESTIMATED,
    INTERVAL,
    MISSING,
    SUBSTITUTED,
    DayGrid,
    MeterDay,
    MeteringRules,
    Reading,
    kw_text,
    require_aware,
)

if TYPE_CHECKING:
    from settlement.batch import ReadingBatch


@dataclass(frozen=True)
class Outage:
    """A marked supply outage of one point (or, with `point` None, of every point)."""

    start: datetime
    end: datetime
    point: str | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        require_aware(self.start, "outage start")
        require_aware(self.end, "outage end")
        if self.end <= self.start:
            raise MeteringInputError("an outage must end after it starts")

    def covers(self, point: str, start: datetime, end: datetime) -> bool:
        return (self.point is None or self.point == point) and self.start < end and start < self.end

    def intervals(self, grid: DayGrid) -> range:
        """The intervals of `grid` this outage overlaps (possibly none)."""
        first = (self.start - grid.start) // INTERVAL
        end = -((grid.start - self.end) // INTERVAL)  # ceiling
        return range(max(0, first), min(grid.count, end))


def round_half_even_div(numerator: np.ndarray, denominator: np.ndarray | int) -> np.ndarray:
    """numerator / denominator rounded half-even to integers, elementwise (denominator > 0)."""
    quotient, rest = np.divmod(numerator, denominator)
    twice = 2 * rest
    up = (twice > denominator) | ((twice == denominator) & (quotient % 2 == 1))
    return quotient + up


def estimate_day(metered: MeterDay, *, history: Iterable[MeterDay] = (),
                 outages: Iterable[Outage] = (), rules: MeteringRules | None = None) -> MeterDay:
    """Fill the `missing` intervals of `metered` that can be estimated; problems are kept."""
    rules = rules or MeteringRules()
    # Sorted so that, where outages overlap, the one named does not depend on input order.
    outages = tuple(sorted(outages, key=lambda o: (o.start, o.end, o.point or "", o.reason)))
    grid = metered.grid
    like = _like_days(metered, tuple(history), rules)
    watts = metered.watts.copy()
    quality = metered.quality.copy()
    notes = dict(metered.notes)
    rows = {p: r for r, p in enumerate(metered.points)}

    # The outage that blocks each interval: the first in sorted order wins.
    blocked = np.full(watts.shape, -1, np.int32)
    for number in reversed(range(len(outages))):
        outage = outages[number]
        span = outage.intervals(grid)
        if not span:
            continue
        if outage.point is None:
            blocked[:, span.start:span.stop] = number
        elif outage.point in rows:
            blocked[rows[outage.point], span.start:span.stop] = number
    missing = quality == MISSING
    under_outage = missing & (blocked >= 0)
    for r, i in zip(*(a.tolist() for a in np.nonzero(under_outage)), strict=True):
        reason = outages[blocked[r, i]].reason or "marked"
        notes[(r, i)] = f"outage ({reason}): not estimated"
    open_ = missing & (blocked < 0)

    _interpolate(grid, watts, quality, notes, open_, rules.max_gap_intervals)
    remaining = open_ & (quality == MISSING)
    if remaining.any():
        _fill_from_like_days(metered, like, outages, watts, quality, notes, remaining, rules)
    return MeterDay(metered.day, metered.zone, metered.points, watts, quality, notes,
                    metered.problems)


def substitute(metered: MeterDay, readings: Iterable[Reading] | ReadingBatch, *,
               source: str) -> MeterDay:
    """Put values supplied by staff or a check meter in place, flagged `substituted`.

    Substitutes are deliberate corrections, so they replace whatever the interval held; one
    for an unknown point, off the day's grid, negative or given twice is refused outright.
    """
    if not source.strip():
        raise MeteringInputError("a substitution must name its source")
    from settlement.batch import ReadingBatch  # batch builds on metering

    if isinstance(readings, ReadingBatch):
        readings = readings.readings()
    grid = metered.grid
    rows = {p: r for r, p in enumerate(metered.points)}
    given: dict[tuple[int, int], int] = {}
    for reading in readings:
        index, on_grid = grid.locate(reading.start)
        if reading.point not in rows or index is None or not on_grid or reading.kw < 0:
            raise MeteringInputError(f"substitute {reading} does not fit {metered.day}")
        key = (rows[reading.point], index)
        if key in given:
            raise MeteringInputError(f"two substitutes for {reading.point} at {reading.start}")
        given[key] = int(reading.kw * 1000)
    watts = metered.watts.copy()
    quality = metered.quality.copy()
    notes = dict(metered.notes)
    for (r, i), value in given.items():
        watts[r, i], quality[r, i] = value, SUBSTITUTED
        notes[(r, i)] = f"substituted from {source}"
    return MeterDay(metered.day, metered.zone, metered.points, watts, quality, notes,
                    metered.problems)


def _interpolate(grid: DayGrid, watts: np.ndarray, quality: np.ndarray, notes: dict,
                 open_: np.ndarray, max_gap: int) -> None:
    """Fill short gaps between two actual values; a gap is never wider than `max_gap`.

    A gap is a run of open intervals (missing, no outage) within one point's day.
    """
    points, count = open_.shape
    if not points or not count:
        return
    padded = np.zeros((points, count + 2), np.int8)
    padded[:, 1:-1] = open_
    edges = np.diff(padded, axis=1)
    gap_rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # row-major, so paired with the starts
    width = ends - starts
    left, right = starts - 1, ends
    fits = (width <= max_gap) & (left >= 0) & (right < count)
    gap_rows, starts, width, left, right = (a[fits] for a in (gap_rows, starts, width, left,
                                                              right))
    anchored = (quality[gap_rows, left] == ACTUAL) & (quality[gap_rows, right] == ACTUAL)
    gap_rows, starts, width, left, right = (a[anchored] for a in (gap_rows, starts, width, left,
                                                                  right))
    if not len(gap_rows):
        return
    low, high = watts[gap_rows, left], watts[gap_rows, right]
    # Every interval of every gap at once: its gap and its step k = 1 .. width.
    gap = np.repeat(np.arange(len(gap_rows)), width)
    step = np.arange(len(gap)) - np.repeat(np.cumsum(width) - width, width) + 1
    # Half-even applies to the value itself, not to its distance from the left anchor.
    parts = (width + 1)[gap]
    filled = round_half_even_div(low[gap] * parts + (high - low)[gap] * step, parts)
    at_rows, at_cols = gap_rows[gap], left[gap] + step
    watts[at_rows, at_cols] = filled
    quality[at_rows, at_cols] = ESTIMATED
    texts = [f"interpolated between {grid.interval_start(a):%H:%M} ({kw_text(lo)} kW) and "
             f"{grid.interval_start(b):%H:%M} ({kw_text(hi)} kW)"
             for a, b, lo, hi in zip(left.tolist(), right.tolist(), low.tolist(),
                                     high.tolist(), strict=True)]
    for r, c, g in zip(at_rows.tolist(), at_cols.tolist(), gap.tolist(), strict=True):
        notes[(r, c)] = texts[g]


def _like_days(metered: MeterDay, history: tuple[MeterDay, ...],
               rules: MeteringRules) -> list[MeterDay]:
    """History days usable as like days for `metered`, oldest first."""
    seen: set[date] = set()
    window = timedelta(weeks=rules.like_day_weeks)
    chosen = []
    for day in history:
        if day.zone != metered.zone:
            raise MeteringInputError(f"history day {day.day} is in {day.zone}, "
                                     f"not {metered.zone}")
        if day.day in seen:
            raise MeteringInputError(f"history holds {day.day} twice")
        seen.add(day.day)
        if not metered.day - window <= day.day < metered.day:
            continue
        if rules.like_days == "same-weekday" and day.day.weekday() != metered.day.weekday():
            continue
        chosen.append(day)
    return sorted(chosen, key=lambda d: d.day)


def _fill_from_like_days(metered: MeterDay, like: list[MeterDay], outages: tuple[Outage, ...],
                         watts: np.ndarray, quality: np.ndarray, notes: dict,
                         remaining: np.ndarray, rules: MeteringRules) -> None:
    """The mean, at the same local time of day, of the actual values of the like days; a
    like day with an outage on the point is left out for that point."""
    grid = metered.grid
    rows, cols = np.nonzero(remaining)
    times = [grid.time_of_day(i) for i in range(grid.count)]
    total = np.zeros(len(rows), np.int64)
    found = np.zeros((len(like), len(rows)), bool)
    for number, day in enumerate(like):
        day_grid = day.grid
        if day.points == metered.points:
            point_rows = np.arange(len(metered.points))
        else:
            where = {p: r for r, p in enumerate(day.points)}
            point_rows = np.array([where.get(p, -1) for p in metered.points], np.int64)
        day_times = {day_grid.time_of_day(i): i for i in range(day_grid.count)}
        index_map = np.array([day_times.get(t, -1) for t in times], np.int64)
        usable = point_rows >= 0
        for outage in outages:
            if outage.start < day_grid.end and day_grid.start < outage.end:
                if outage.point is None:
                    usable[:] = False
                elif outage.point in metered.points:
                    usable[metered.row(outage.point)] = False
        there_rows, there_cols = point_rows[rows], index_map[cols]
        ok = usable[rows] & (there_cols >= 0)
        safe_rows, safe_cols = np.where(ok, there_rows, 0), np.where(ok, there_cols, 0)
        if day.watts.size:
            ok &= day.quality[safe_rows, safe_cols] == ACTUAL
            total += np.where(ok, day.watts[safe_rows, safe_cols], 0)
        else:
            ok[:] = False
        found[number] = ok
    counted = found.sum(axis=0)
    some = counted > 0
    mean = round_half_even_div(total[some], counted[some])
    watts[rows[some], cols[some]] = mean
    quality[rows[some], cols[some]] = ESTIMATED
    none_text = (f"no valid reading and no like-day data ({rules.like_days}, "
                 f"{rules.like_day_weeks} weeks)")
    if len(like):
        patterns, which = np.unique(found.T, axis=0, return_inverse=True)
        which = which.reshape(-1)
        texts = []
        for pattern in patterns:
            days = [d.day.isoformat() for d, used in zip(like, pattern, strict=True) if used]
            texts.append(f"like-day mean ({rules.like_days}) of {len(days)} day(s): "
                         f"{', '.join(days)}" if days else none_text)
    else:
        which, texts = np.zeros(len(rows), np.int64), [none_text]
    for r, c, k in zip(rows.tolist(), cols.tolist(), which.tolist(), strict=True):
        notes[(r, c)] = texts[k]
