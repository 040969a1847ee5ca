"""The park's market clock: delivery days and gate closure in the park's own time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def park_today(park, now: datetime) -> date:
    return now.astimezone(ZoneInfo(park.timezone)).date()


def gate_closure(park, delivery_day: date) -> datetime:
    """Gate closure for a delivery day: the park's closure time on the day before, local time."""
    local = datetime.combine(delivery_day - timedelta(days=1), park.gate_closure_time,
                             tzinfo=ZoneInfo(park.timezone))
    return local.astimezone(UTC)


def open_delivery_day(park, now: datetime) -> date:
    """The delivery day orders go to now: tomorrow until its gate closes, then the day after.

    Like other day-ahead markets, the book for D+2 opens when gate closure for D+1 passes.
    """
    day = park_today(park, now) + timedelta(days=1)
    if now >= gate_closure(park, day):
        day += timedelta(days=1)
    return day


def periods_per_day(park) -> int:
    return 24 * 60 // park.period_minutes
