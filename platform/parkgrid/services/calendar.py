"""The park's market clock: delivery days and gate closure in the park's own time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_day(at: datetime, zone: str) -> date:
    """The calendar day `at` falls on in time zone `zone`."""
    return at.astimezone(ZoneInfo(zone)).date()


def park_today(park, now: datetime) -> date:
    return local_day(now, park.timezone)


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


def day_number(day: date) -> int:
    """A delivery day as the chain keys it: YYYYMMDD."""
    return day.year * 10000 + day.month * 100 + day.day


def month_number(month: date) -> int:
    """A month as the chain keys its settlement roll-up: YYYYMM00."""
    return month.year * 10000 + month.month * 100


def next_month(month: date) -> date:
    """The first day of the month after the one `month` falls in."""
    return (month.replace(day=1) + timedelta(days=32)).replace(day=1)


def periods_per_day(park) -> int:
    return 24 * 60 // park.period_minutes
