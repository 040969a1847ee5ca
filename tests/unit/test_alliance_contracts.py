"""The custody O&M contract core: due days (daily, weekly, monthly clamped to month ends, leap
years, start and end days), visit windows converted to UTC across daylight-saving changes,
and a clear error for every malformed input."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance.contracts import (
    Contract,
    ContractItem,
    Frequency,
    InvalidContractError,
    due_days,
    visits,
    window_instants,
)
from alliance.errors import AllianceError
from alliance.lifecycle import JobKind

ITEMS = (ContractItem("1", "1号主变", 31.3, 120.7, "transformer"),
         ContractItem("2", "10kV开关柜", Decimal("31.301"), Decimal("120.702"), "switchgear"))


def contract(frequency="weekly", starts_on=date(2026, 11, 17), **changes) -> Contract:
    values = {"id": "OM1", "frequency": frequency, "window_start": time(9, 0),
              "window_end": time(11, 30), "starts_on": starts_on, "items": ITEMS,
              "job_kind": "patrol", "service_minutes": 30, "skills": {"low_voltage"}}
    values.update(changes)
    return Contract(**values)


def d(text: str) -> date:
    return date.fromisoformat(text)


# --------------------------------------------------------------------------- due days


def test_daily_is_every_day_within_the_range():
    days = due_days(contract("daily"), d("2026-11-15"), d("2026-11-20"))
    assert days == [d("2026-11-17"), d("2026-11-18"), d("2026-11-19"), d("2026-11-20")]


def test_weekly_falls_on_the_weekday_of_the_first_day():
    c = contract("weekly", starts_on=d("2026-11-17"))  # a Tuesday
    days = due_days(c, d("2026-11-01"), d("2026-12-31"))
    assert days[0] == d("2026-11-17") and all(x.isoweekday() == 2 for x in days)
    assert [(b - a).days for a, b in zip(days, days[1:], strict=False)] == [7] * (len(days) - 1)
    assert days[-1] == d("2026-12-29")
    # A range starting mid-week finds the next Tuesday; one without a Tuesday finds none.
    assert due_days(c, d("2026-11-19"), d("2026-11-26")) == [d("2026-11-24")]
    assert due_days(c, d("2026-11-18"), d("2026-11-23")) == []


def test_monthly_is_clamped_to_shorter_months_and_returns_after():
    c = contract("monthly", starts_on=d("2026-01-31"))
    assert due_days(c, d("2026-01-01"), d("2026-07-31")) == [
        d("2026-01-31"), d("2026-02-28"), d("2026-03-31"), d("2026-04-30"), d("2026-05-31"),
        d("2026-06-30"), d("2026-07-31")]


def test_monthly_on_the_thirty_first_in_a_leap_year():
    c = contract("monthly", starts_on=d("2027-12-31"))
    assert due_days(c, d("2028-02-01"), d("2028-03-31")) == [d("2028-02-29"), d("2028-03-31")]


def test_monthly_on_the_twenty_ninth_of_february():
    c = contract("monthly", starts_on=d("2028-02-29"))
    days = due_days(c, d("2028-01-01"), d("2029-03-31"))
    assert days[0] == d("2028-02-29") and days[1] == d("2028-03-29")
    assert d("2029-02-28") in days and d("2029-03-29") in days


def test_monthly_on_the_thirtieth_and_a_year_boundary():
    c = contract("monthly", starts_on=d("2026-11-30"))
    assert due_days(c, d("2026-11-01"), d("2027-03-01")) == [
        d("2026-11-30"), d("2026-12-30"), d("2027-01-30"), d("2027-02-28")]


def test_nothing_before_the_start_nor_after_the_end():
    c = contract("daily", starts_on=d("2026-11-17"), ends_on=d("2026-11-19"))
    assert due_days(c, d("2026-11-01"), d("2026-11-30")) == [
        d("2026-11-17"), d("2026-11-18"), d("2026-11-19")]
    assert due_days(c, d("2026-11-20"), d("2026-12-31")) == []
    assert due_days(c, d("2026-10-01"), d("2026-11-16")) == []
    # ends_on is inclusive, even for a one-day contract.
    one = contract("weekly", starts_on=d("2026-11-17"), ends_on=d("2026-11-17"))
    assert due_days(one, d("2026-11-17"), d("2026-11-17")) == [d("2026-11-17")]
    monthly = contract("monthly", starts_on=d("2026-01-31"), ends_on=d("2026-04-29"))
    assert due_days(monthly, d("2026-01-01"), d("2026-12-31"))[-1] == d("2026-03-31")


@settings(max_examples=150, deadline=None)
@given(frequency=st.sampled_from(list(Frequency)),
       starts_on=st.dates(date(2020, 1, 1), date(2030, 12, 31)),
       length=st.one_of(st.none(), st.integers(0, 800)),
       first=st.dates(date(2019, 6, 1), date(2032, 12, 31)),
       span=st.integers(0, 400))
def test_due_days_are_ordered_unique_in_range_and_on_the_contract_calendar(
        frequency, starts_on, length, first, span):
    ends_on = None if length is None else starts_on + timedelta(days=length)
    c = contract(frequency, starts_on=starts_on, ends_on=ends_on)
    last = first + timedelta(days=span)
    days = due_days(c, first, last)
    assert days == sorted(set(days))
    for day in days:
        assert max(first, starts_on) <= day <= (last if ends_on is None else min(last, ends_on))
    if frequency is Frequency.DAILY:
        lo, hi = max(first, starts_on), last if ends_on is None else min(last, ends_on)
        assert len(days) == max((hi - lo).days + 1, 0)
    elif frequency is Frequency.WEEKLY:
        assert all((day - starts_on).days % 7 == 0 for day in days)
    else:
        assert len({(x.year, x.month) for x in days}) == len(days)
        for day in days:
            month_end = (day.replace(day=28) + timedelta(days=4)).replace(day=1) \
                - timedelta(days=1)
            assert day.day == min(starts_on.day, month_end.day)
    # Splitting the range in two gives the same days.
    middle = first + timedelta(days=span // 2)
    if middle < last:
        assert due_days(c, first, middle) + due_days(c, middle + timedelta(days=1),
                                                     last) == days


# --------------------------------------------------------------------------- visits


def test_visits_one_per_item_and_due_day_with_the_window_in_utc():
    c = contract("daily", starts_on=d("2026-11-17"), skills={"low_voltage", "patrol"},
                 job_kind="inspection", service_minutes=45)
    found = visits(c, d("2026-11-17"), d("2026-11-18"), "Asia/Shanghai")
    assert [(v.day, v.item.id) for v in found] == [
        (d("2026-11-17"), "1"), (d("2026-11-17"), "2"),
        (d("2026-11-18"), "1"), (d("2026-11-18"), "2")]
    first = found[0]
    assert first.window_start == datetime(2026, 11, 17, 1, 0, tzinfo=UTC)
    assert first.window_end == datetime(2026, 11, 17, 3, 30, tzinfo=UTC)
    assert (first.job_kind, first.service_minutes, first.skills) == (
        JobKind.INSPECTION, 45, frozenset({"low_voltage", "patrol"}))
    assert (first.item.lat, first.item.lon, first.contract_id) == (31.3, 120.7, "OM1")
    assert isinstance(found[1].item.lat, float) and found[1].item.lat == 31.301


def test_an_early_window_falls_on_the_previous_utc_day():
    c = contract("daily", window_start=time(6, 0), window_end=time(7, 0))
    (v, _) = visits(c, d("2026-11-17"), d("2026-11-17"), "Asia/Shanghai")
    assert v.window_start == datetime(2026, 11, 16, 22, 0, tzinfo=UTC)


NEW_YORK = "America/New_York"


@pytest.mark.parametrize(("zone", "day", "start", "end", "utc_start", "utc_end"), [
    # Berlin: +1 in winter, +2 in summer; the change days themselves.
    ("Europe/Berlin", "2026-03-28", time(9), time(11), "2026-03-28T08:00", "2026-03-28T10:00"),
    ("Europe/Berlin", "2026-03-29", time(9), time(11), "2026-03-29T07:00", "2026-03-29T09:00"),
    ("Europe/Berlin", "2026-10-25", time(9), time(11), "2026-10-25T08:00", "2026-10-25T10:00"),
    # New York springs forward at 02:00 on 8 March 2026: 02:00-03:00 never happens.
    (NEW_YORK, "2026-03-08", time(1, 30), time(2, 30), "2026-03-08T06:30", "2026-03-08T07:00"),
    (NEW_YORK, "2026-03-08", time(2, 30), time(4, 0), "2026-03-08T07:00", "2026-03-08T08:00"),
    # Wholly skipped: moved past the change, same length.
    (NEW_YORK, "2026-03-08", time(2, 15), time(2, 45), "2026-03-08T07:15", "2026-03-08T07:45"),
    (NEW_YORK, "2026-03-08", time(2, 30), time(3, 0), "2026-03-08T07:30", "2026-03-08T08:00"),
    # It falls back at 02:00 on 1 November 2026: 01:00-02:00 happens twice.
    (NEW_YORK, "2026-11-01", time(1, 0), time(1, 30), "2026-11-01T05:00", "2026-11-01T06:30"),
    (NEW_YORK, "2026-11-01", time(0, 30), time(3, 0), "2026-11-01T04:30", "2026-11-01T08:00"),
    (NEW_YORK, "2026-11-02", time(9, 0), time(17, 0), "2026-11-02T14:00", "2026-11-02T22:00"),
])
def test_windows_across_daylight_saving_changes(zone, day, start, end, utc_start, utc_end):
    begins, ends = window_instants(d(day), start, end, zone)
    assert begins == datetime.fromisoformat(utc_start).replace(tzinfo=UTC)
    assert ends == datetime.fromisoformat(utc_end).replace(tzinfo=UTC)


def test_visits_on_either_side_of_a_change_keep_their_local_time():
    c = contract("daily", starts_on=d("2026-03-27"), window_start=time(9),
                 window_end=time(10))
    found = visits(c, d("2026-03-27"), d("2026-03-30"), "Europe/Berlin")
    tz = ZoneInfo("Europe/Berlin")
    assert {v.window_start.astimezone(tz).time() for v in found} == {time(9)}
    assert {v.window_start.utcoffset() for v in found} == {timedelta(0)}
    assert sorted({v.window_start.hour for v in found}) == [7, 8]


ZONES = ("Asia/Shanghai", "Europe/Berlin", NEW_YORK, "Australia/Lord_Howe", "Europe/Dublin",
         "America/Santiago", "Pacific/Apia", "UTC")


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(ZONES), day=st.dates(date(2005, 1, 1), date(2035, 12, 31)),
       start=st.times(), length=st.integers(1, 24 * 3600 - 1))
def test_every_window_is_a_forward_interval_reading_its_local_times(zone, day, start, length):
    start = start.replace(microsecond=0)
    wall_start = datetime.combine(day, start)
    wall_end = wall_start + timedelta(seconds=length)
    if wall_end.date() != day:
        wall_end = datetime.combine(day, time(23, 59, 59))
    if wall_end <= wall_start:
        return
    begins, ends = window_instants(day, start, wall_end.time(), zone)
    assert begins.tzinfo is UTC and ends.tzinfo is UTC
    assert ends > begins
    tz = ZoneInfo(zone)
    # A local time that exists exactly once is read back exactly.
    for wall, instant in ((wall_start, begins), (wall_end, ends)):
        once = wall.replace(tzinfo=tz, fold=0).astimezone(UTC) \
            == wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if once and instant.astimezone(tz).replace(tzinfo=None) == wall:
            continue
        assert not once, (wall, instant)


# --------------------------------------------------------------------------- bad input


def item(**changes) -> ContractItem:
    values = {"id": "1", "name": "1号主变", "lat": 31.3, "lon": 120.7}
    values.update(changes)
    return ContractItem(**values)


@pytest.mark.parametrize(("changes", "words"), [
    ({"id": ""}, "item id"),
    ({"name": "  "}, "name"),
    ({"lat": 91.0}, "outside"),
    ({"lon": -180.5}, "outside"),
    ({"lat": float("nan")}, "non-finite"),
    ({"lon": float("inf")}, "non-finite"),
    ({"lat": "31.3"}, "number of degrees"),
    ({"lat": True}, "number of degrees"),
    ({"lon": None}, "number of degrees"),
    ({"kind": None}, "kind"),
])
def test_bad_items_are_refused(changes, words):
    with pytest.raises(InvalidContractError, match=words):
        item(**changes)


@pytest.mark.parametrize(("changes", "words"), [
    ({"id": ""}, "contract id"),
    ({"frequency": "fortnightly"}, "frequency 'fortnightly' is not one of daily, weekly"),
    ({"job_kind": "repair"}, "job kind 'repair'"),
    ({"job_kind": "survey"}, "job kind 'survey'"),
    ({"window_start": time(11, 30)}, "must end after it starts"),
    ({"window_end": time(8, 0)}, "must end after it starts"),
    ({"window_start": "09:00"}, "window_start must be a time of day"),
    ({"window_end": time(11, tzinfo=UTC)}, "without a zone"),
    ({"service_minutes": 0}, "service minutes"),
    ({"service_minutes": 1441}, "service minutes"),
    ({"service_minutes": 30.5}, "service minutes"),
    ({"service_minutes": True}, "service minutes"),
    ({"skills": "low_voltage"}, "skills must be a collection"),
    ({"skills": {""}}, "skill must be a non-empty string"),
    ({"starts_on": datetime(2026, 11, 17, 9)}, "starts_on must be a calendar date"),
    ({"starts_on": "2026-11-17"}, "starts_on must be a calendar date"),
    ({"ends_on": date(2026, 11, 16)}, "before it starts"),
    ({"ends_on": "2027-01-01"}, "ends_on must be a calendar date"),
    ({"items": ()}, "lists no equipment"),
    ({"items": ("1号主变",)}, "is not a ContractItem"),
    ({"items": (ITEMS[0], ContractItem("1", "2号主变", 31.3, 120.7))}, "item id is repeated"),
    ({"items": (ITEMS[0], ContractItem("9", "1号主变", 31.3, 120.7))}, "name is repeated"),
])
def test_bad_contracts_are_refused(changes, words):
    with pytest.raises(InvalidContractError, match=words):
        contract(**changes)


def test_bad_ranges_and_zones_are_refused():
    c = contract("daily")
    with pytest.raises(InvalidContractError, match="ends .* before it starts"):
        due_days(c, d("2026-11-20"), d("2026-11-19"))
    with pytest.raises(InvalidContractError, match="first must be a calendar date"):
        due_days(c, datetime(2026, 11, 17), d("2026-11-19"))
    with pytest.raises(InvalidContractError, match="last must be a calendar date"):
        visits(c, d("2026-11-17"), None, "Asia/Shanghai")
    with pytest.raises(InvalidContractError, match="unknown time zone"):
        visits(c, d("2026-11-17"), d("2026-11-18"), "Mars/Olympus_Mons")
    with pytest.raises(InvalidContractError, match="time zone name"):
        visits(c, d("2026-11-17"), d("2026-11-18"), None)
    with pytest.raises(InvalidContractError, match="unknown time zone"):
        visits(c, d("2026-11-17"), d("2026-11-18"), "../etc/passwd")
    with pytest.raises(InvalidContractError, match="is not a Contract"):
        due_days({"id": "OM1"}, d("2026-11-17"), d("2026-11-18"))
    with pytest.raises(InvalidContractError, match="must end after it starts"):
        window_instants(d("2026-11-17"), time(10), time(10), "Asia/Shanghai")


def test_errors_belong_to_the_alliance_core():
    assert issubclass(InvalidContractError, AllianceError)
    assert issubclass(InvalidContractError, ValueError)
