"""Custody O&M contracts (托管运维): on which days a contract's patrols or inspections fall
due, and each visit's time window as UTC instants.

A contract looks after a list of equipment items at a frequency: daily; weekly on the
weekday of `starts_on`; monthly on the day of the month of `starts_on`, moved to the month's
last day where the month is shorter (31 January → 28 or 29 February, 31 March → 30 April).
Visits fall only within [starts_on, ends_on] (open-ended without `ends_on`).

The visit window is a local time of day in the park's zone, start < end on the same day;
`visits` turns it into UTC instants with zoneinfo. Across a daylight-saving change the window
spans every instant whose wall clock reads a time within it: a start (or end) the clocks
skip becomes the instant of the change, a start the clocks repeat its first occurrence and
an end its last. A window the clocks skip entirely is moved past the change, keeping its
length (as RFC 5545 reads skipped local times).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alliance.errors import (  # noqa: F401  (re-exported)
    ContractError,
    InvalidContractError,
    InvalidPositionError,
)
from alliance.lifecycle import JobKind
from alliance.travel import as_positions

MAX_SERVICE_MINUTES = 24 * 60
VISIT_KINDS: tuple[JobKind, ...] = (JobKind.PATROL, JobKind.INSPECTION)


class Frequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


# ----------------------------------------------------------------------------- input checks


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidContractError(message)


def _check_text(what: str, value: object) -> None:
    _require(isinstance(value, str) and value.strip() != "", f"{what} must be a non-empty string")


def _check_day(what: str, value: object) -> None:
    # datetime is a date subclass but cannot be compared with a date: refuse it by name.
    _require(isinstance(value, date) and not isinstance(value, datetime),
             f"{what} must be a calendar date, got {value!r}")


def _check_range(first: object, last: object) -> None:
    _check_day("first", first)
    _check_day("last", last)
    _require(first <= last, f"the day range ends ({last}) before it starts ({first})")


def _zone(zone: object) -> ZoneInfo:
    _require(isinstance(zone, str) and zone.strip() != "",
             f"zone must be a time zone name such as Asia/Shanghai, got {zone!r}")
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidContractError(f"unknown time zone {zone!r}") from exc


# ----------------------------------------------------------------------------- the contract


@dataclass(frozen=True)
class ContractItem:
    """One piece of equipment under the contract and where it stands (degrees)."""

    id: str
    name: str
    lat: float
    lon: float
    kind: str = ""

    def __post_init__(self) -> None:
        _check_text("item id", self.id)
        _check_text(f"item {self.id}: name", self.name)
        _require(isinstance(self.kind, str), f"item {self.id}: kind must be a string")
        for name in ("lat", "lon"):
            value = getattr(self, name)
            _require(isinstance(value, (int, float, Decimal)) and not isinstance(value, bool),
                     f"item {self.id}: {name} must be a number of degrees, got {value!r}")
        try:
            (lat, lon), = as_positions((float(self.lat), float(self.lon)), f"item {self.id}")
        except InvalidPositionError as exc:
            raise InvalidContractError(str(exc)) from exc
        object.__setattr__(self, "lat", float(lat))
        object.__setattr__(self, "lon", float(lon))


@dataclass(frozen=True)
class Contract:
    """A custody O&M contract: what is visited, how often, within which local window."""

    id: str
    frequency: Frequency
    window_start: time
    window_end: time
    starts_on: date
    items: tuple[ContractItem, ...]
    job_kind: JobKind = JobKind.PATROL
    service_minutes: int = 30
    skills: frozenset[str] = frozenset()
    ends_on: date | None = None

    def __post_init__(self) -> None:
        _check_text("contract id", self.id)
        where = f"contract {self.id}"
        try:
            object.__setattr__(self, "frequency", Frequency(self.frequency))
        except ValueError:
            raise InvalidContractError(
                f"{where}: frequency {self.frequency!r} is not one of "
                f"{', '.join(f.value for f in Frequency)}") from None
        try:
            kind = JobKind(self.job_kind)
        except ValueError:
            kind = None
        _require(kind in VISIT_KINDS, f"{where}: job kind {self.job_kind!r} is not one of "
                                      f"{', '.join(k.value for k in VISIT_KINDS)}")
        object.__setattr__(self, "job_kind", kind)
        for name in ("window_start", "window_end"):
            value = getattr(self, name)
            _require(isinstance(value, time), f"{where}: {name} must be a time of day, got "
                                              f"{value!r}")
            _require(value.tzinfo is None, f"{where}: {name} is a local time of day in the "
                                           f"park's zone; give it without a zone")
        _require(self.window_start < self.window_end,
                 f"{where}: the window must end after it starts "
                 f"({self.window_start} to {self.window_end})")
        minutes = self.service_minutes
        _require(isinstance(minutes, int) and not isinstance(minutes, bool)
                 and 1 <= minutes <= MAX_SERVICE_MINUTES,
                 f"{where}: service minutes must be a whole number from 1 to "
                 f"{MAX_SERVICE_MINUTES}, got {minutes!r}")
        _require(isinstance(self.skills, Iterable) and not isinstance(self.skills, str),
                 f"{where}: skills must be a collection of skill codes")
        skills = frozenset(self.skills)
        for skill in skills:
            _check_text(f"{where}: skill", skill)
        object.__setattr__(self, "skills", skills)
        _check_day(f"{where}: starts_on", self.starts_on)
        if self.ends_on is not None:
            _check_day(f"{where}: ends_on", self.ends_on)
            _require(self.ends_on >= self.starts_on,
                     f"{where}: ends on {self.ends_on}, before it starts on {self.starts_on}")
        _require(isinstance(self.items, Iterable) and not isinstance(self.items, str),
                 f"{where}: items must be a collection of contract items")
        items = tuple(self.items)
        _require(len(items) > 0, f"{where}: lists no equipment")
        for item in items:
            _require(isinstance(item, ContractItem), f"{where}: {item!r} is not a ContractItem")
        _require(len({i.id for i in items}) == len(items), f"{where}: an item id is repeated")
        _require(len({i.name.strip() for i in items}) == len(items),
                 f"{where}: an equipment name is repeated")
        object.__setattr__(self, "items", items)


@dataclass(frozen=True)
class Visit:
    """One due patrol or inspection of one item on one day, its window in UTC."""

    contract_id: str
    item: ContractItem
    day: date
    window_start: datetime
    window_end: datetime
    job_kind: JobKind
    service_minutes: int
    skills: frozenset[str]


# ----------------------------------------------------------------------------- calendar


def _check_contract(contract: object) -> None:
    _require(isinstance(contract, Contract), f"{contract!r} is not a Contract")


def _monthly(day_of_month: int, lo: date, hi: date) -> list[date]:
    days = []
    year, month = lo.year, lo.month
    while True:
        due = date(year, month, min(day_of_month, calendar.monthrange(year, month)[1]))
        if due > hi:
            return days
        if due >= lo:
            days.append(due)
        if (year, month) == (9999, 12):
            return days
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def due_days(contract: Contract, first: date, last: date) -> list[date]:
    """The days in [first, last] on which the contract's visits fall due, in order."""
    _check_contract(contract)
    _check_range(first, last)
    lo = max(first, contract.starts_on)
    hi = last if contract.ends_on is None else min(last, contract.ends_on)
    if lo > hi:
        return []
    if contract.frequency is Frequency.DAILY:
        return [lo + timedelta(days=n) for n in range((hi - lo).days + 1)]
    if contract.frequency is Frequency.WEEKLY:
        start = lo + timedelta(days=(contract.starts_on.weekday() - lo.weekday()) % 7)
        return [start + timedelta(days=7 * n) for n in range((hi - start).days // 7 + 1)]
    return _monthly(contract.starts_on.day, lo, hi)


# ----------------------------------------------------------------------------- windows


def _change_instant(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant in (before, after] at which the zone's UTC offset changes (to the second)."""
    offset = before.astimezone(zone).utcoffset()
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _readings(day: date, at: time, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The first and last UTC instant the wall clock reads `at` on `day` (equal unless the
    clocks repeat it); both the instant of the change when the clocks skip it."""
    wall = datetime.combine(day, at)
    # PEP 495: fold=0 reads a local time with the offset before a change, fold=1 after it.
    before = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    after = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if before <= after:
        return before, after
    change = _change_instant(after, before, zone)  # skipped: `after` is the earlier instant
    return change, change


def window_instants(day: date, start: time, end: time, zone: str) -> tuple[datetime, datetime]:
    """The UTC instants a local window [start, end] on `day` in `zone` begins and ends."""
    _check_day("day", day)
    for name, value in (("start", start), ("end", end)):
        _require(isinstance(value, time) and value.tzinfo is None,
                 f"{name} must be a time of day without a zone, got {value!r}")
    _require(start < end, f"the window must end after it starts ({start} to {end})")
    tz = _zone(zone)
    return _window(day, start, end, tz)


def _window(day: date, start: time, end: time, tz: ZoneInfo) -> tuple[datetime, datetime]:
    begins, _ = _readings(day, start, tz)
    _, ends = _readings(day, end, tz)
    if ends <= begins:  # the clocks skip the whole window: move it past the change
        begins = datetime.combine(day, start).replace(tzinfo=tz, fold=0).astimezone(UTC)
        ends = begins + (datetime.combine(day, end) - datetime.combine(day, start))
    return begins, ends


def visits(contract: Contract, first: date, last: date, zone: str) -> list[Visit]:
    """One visit per item per due day in [first, last], ordered by day then item, with the
    local window converted to UTC in `zone` (the park's time zone)."""
    _check_contract(contract)
    _check_range(first, last)
    tz = _zone(zone)
    found = []
    for day in due_days(contract, first, last):
        begins, ends = _window(day, contract.window_start, contract.window_end, tz)
        found.extend(Visit(contract_id=contract.id, item=item, day=day, window_start=begins,
                           window_end=ends, job_kind=contract.job_kind,
                           service_minutes=contract.service_minutes, skills=contract.skills)
                     for item in contract.items)
    return found
