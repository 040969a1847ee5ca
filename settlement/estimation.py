"""Estimation of missing intervals (the E of VEE): interpolation for short gaps, like days for
long ones, and never across a marked outage.

A gap is a run of `missing` intervals. A gap of at most `max_interpolation_gap` with an
`actual` value on both sides is filled on the straight line between them. Everything else is
filled with the mean, at the same local time of day, of the `actual` values of like days
(same weekday by default, or every day) in the previous `like_day_weeks` weeks of history,
leaving out any history day with an outage on that point. Intervals under a marked outage
stay `missing`, and no interpolation spans them. Gaps are not bridged across midnight.
`substitute` puts values from staff or a check meter in place, flagged `substituted`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from zoneinfo import ZoneInfo

from settlement.errors import MeteringInputError
from settlement.metering import (
    INTERVAL,
    KW_PLACES,
    IntervalValue,
    MeterDay,
    MeteringRules,
    Quality,
    Reading,
    require_aware,
)


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


def _round(kw: Decimal) -> Decimal:
    return kw.quantize(KW_PLACES, rounding=ROUND_HALF_EVEN)


def estimate_day(metered: MeterDay, *, history: Iterable[MeterDay] = (),
                 outages: Iterable[Outage] = (), rules: MeteringRules | None = None) -> MeterDay:
    """Fill the `missing` intervals of `metered` that can be estimated; problems are kept."""
    rules = rules or MeteringRules()
    # Sorted so that, where outages overlap, the one named does not depend on input order.
    outages = tuple(sorted(outages, key=lambda o: (o.start, o.end, o.point or "", o.reason)))
    grid = metered.grid
    like = [(day, _actual_by_time_of_day(day))
            for day in _like_days(metered, tuple(history), rules)]
    intervals: list[IntervalValue] = []
    # Exact arithmetic whatever decimal context the caller has set.
    with localcontext(prec=28, rounding=ROUND_HALF_EVEN):
        for point in metered.points:
            series = list(metered.series(point))
            blocked = [next((o for o in outages
                             if o.covers(point, v.start, v.start + INTERVAL)), None)
                       for v in series]
            for index, outage in enumerate(blocked):
                if outage is not None and series[index].quality is Quality.MISSING:
                    series[index] = _with(series[index], None, Quality.MISSING,
                                          f"outage ({outage.reason or 'marked'}): not estimated")
            _interpolate(series, blocked, rules.max_gap_intervals)
            usable = [(d, table) for d, table in like
                      if not any(o.covers(point, *_span(d)) for o in outages)]
            for index, value in enumerate(series):
                if value.quality is Quality.MISSING and blocked[index] is None:
                    series[index] = _from_like_days(value, usable, grid.zone, rules)
            intervals.extend(series)
    return MeterDay(metered.day, metered.zone, tuple(intervals), metered.problems)


def substitute(metered: MeterDay, readings: Iterable[Reading], *, source: str) -> MeterDay:
    """Put values supplied by staff or a check meter in place, flagged `substituted`.

    Substitutes are deliberate corrections, so they replace whatever the interval held; one
    for an unknown point, off the day's grid, negative or given twice is refused outright.
    """
    if not source.strip():
        raise MeteringInputError("a substitution must name its source")
    grid, points = metered.grid, set(metered.points)
    given: dict[tuple[str, int], Decimal] = {}
    for reading in readings:
        index, on_grid = grid.locate(reading.start)
        if reading.point not in points or index is None or not on_grid or reading.kw < 0:
            raise MeteringInputError(f"substitute {reading} does not fit {metered.day}")
        if (reading.point, index) in given:
            raise MeteringInputError(f"two substitutes for {reading.point} at {reading.start}")
        given[(reading.point, index)] = reading.kw
    intervals = tuple(
        _with(v, given[(v.point, v.interval)], Quality.SUBSTITUTED, f"substituted from {source}")
        if (v.point, v.interval) in given else v
        for v in metered.intervals)
    return MeterDay(metered.day, metered.zone, intervals, metered.problems)


def _with(value: IntervalValue, kw: Decimal | None, quality: Quality,
          explanation: str) -> IntervalValue:
    return IntervalValue(value.point, value.interval, value.start, kw, quality, explanation)


def _span(day: MeterDay) -> tuple[datetime, datetime]:
    grid = day.grid
    return grid.start, grid.end


def _interpolate(series: list[IntervalValue], blocked: list[Outage | None], max_gap: int) -> None:
    """Fill short gaps between two actual values; a gap is never wider than `max_gap`."""
    index = 0
    while index < len(series):
        if series[index].quality is not Quality.MISSING or blocked[index] is not None:
            index += 1
            continue
        first = index
        while (index < len(series) and series[index].quality is Quality.MISSING
               and blocked[index] is None):
            index += 1
        left, right = first - 1, index
        width = right - first
        if (width > max_gap or left < 0 or right >= len(series)
                or series[left].quality is not Quality.ACTUAL
                or series[right].quality is not Quality.ACTUAL):
            continue
        low, high = series[left], series[right]
        step = (high.kw - low.kw) / (width + 1)
        for k in range(1, width + 1):
            at = left + k
            series[at] = _with(
                series[at], _round(low.kw + step * k), Quality.ESTIMATED,
                f"interpolated between {low.start:%H:%M} ({low.kw} kW) and "
                f"{high.start:%H:%M} ({high.kw} kW)")


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


def _time_of_day(moment: datetime, zone: ZoneInfo) -> tuple[int, int, int]:
    # Local wall-clock time, so days of different length (DST) still line up.
    local = moment.astimezone(zone)
    return local.hour, local.minute, local.fold


def _actual_by_time_of_day(day: MeterDay) -> dict[tuple[str, tuple[int, int, int]], Decimal]:
    zone = ZoneInfo(day.zone)
    return {(v.point, _time_of_day(v.start, zone)): v.kw
            for v in day.intervals if v.quality is Quality.ACTUAL}


def _from_like_days(value: IntervalValue, like: list[tuple[MeterDay, dict]], zone: ZoneInfo,
                    rules: MeteringRules) -> IntervalValue:
    key = (value.point, _time_of_day(value.start, zone))
    found = [(day.day, table[key]) for day, table in like if key in table]
    if not found:
        return _with(value, None, Quality.MISSING,
                     f"no valid reading and no like-day data ({rules.like_days}, "
                     f"{rules.like_day_weeks} weeks)")
    mean = sum((kw for _, kw in found), Decimal(0)) / len(found)
    days = ", ".join(d.isoformat() for d, _ in found)
    return _with(value, _round(mean), Quality.ESTIMATED,
                 f"like-day mean ({rules.like_days}) of {len(found)} day(s): {days}")
