"""Read-side figures of the two alliances for the staff view and the energy-cloud butler's
provider cockpit. Pure queries: nothing here writes, and every figure is defined once, here.

Definitions (the pages, the tests and the report all read them from this docstring):

- **Standing** of a company: the core's standing (`alliance.membership.standing`) assessed
  afresh on the park's day, not the cached `providers.standing_*` columns; a company that is
  not an admitted member (status other than approved) never receives offers, and says so
  first (the same rule `services.alliance.refresh_provider` stores).
- **Valid electricians**: active roster entries with a home base holding a certificate valid
  on the day (`membership.is_valid_electrician`), the number the admission rule counts.
- **Expiries within N days**: `membership.expiries_within` of every admitted member: the
  licence and the certificates still valid on the day that expire by the day + N
  (inclusive), soonest first.
- **On-site SLA** of a period `[start, end)`: the urgent jobs created in the period, except
  those *withdrawn*: cancelled before their on-site deadline with nobody checked in (the
  promise was called off before it could be kept or missed). Each counted job is
  *on time* (first check-in at or before the deadline), *late* (first check-in after the
  deadline, or none while the deadline has passed) or *open* (no check-in yet, deadline
  still ahead). Hit rate = on time / (on time + late), None while nothing is decided. Mean
  arrival minutes = mean of (first check-in − creation) over the counted jobs with one.
- **Escalated jobs**: jobs whose status is `escalated` (handed to staff, not yet offered
  again). **Open jobs**: jobs neither closed nor cancelled.
- **Map**: active electricians of admitted members at their last reported position while it
  is fresh (`services.alliance.POSITION_FRESH_FOR`), else at their home base (not drawn
  without either); their state is *on_job* while a job in a committing status holds them,
  else *free* when one of their shifts covers now, else *off_shift*. Open jobs at their
  place. Positions are projected with `TravelModel.to_plane` around the middle of what is
  drawn: (east, north) in travel minutes.
- **Cockpit** of one energy-cloud-butler provider: its O&M contracts with their items; its
  patrol and inspection jobs generated from a contract item (`contract_item_id`) due within
  the next `UPCOMING_DAYS` days (today included) and not closed or cancelled; the alarms
  whose job is one of its open jobs; the SLA of its own jobs over `COCKPIT_SLA_DAYS` days;
  its roster's standing with the certificates expiring within `EXPIRY_WARN_DAYS` days.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from alliance import lifecycle
from alliance import membership as core

from ..models import (
    ACTIVE_JOB_STATUSES,
    Alarm,
    Alliance,
    Electrician,
    Job,
    OmContract,
    Provider,
    ProviderStatus,
    User,
)
from . import alliance as membership
from .calendar import local_day
from .errors import FieldProblem

EXPIRY_WARN_DAYS = 30
SLA_WINDOWS_DAYS = (7, 30)
COCKPIT_SLA_DAYS = 30
UPCOMING_DAYS = 7
DESK_LIMIT = 100

_S = lifecycle.JobStatus
TERMINAL = tuple(sorted(s.value for s in lifecycle.TERMINAL_STATUSES))

# Outcomes of one urgent job against the on-site promise (see the module docstring).
ON_TIME, LATE, OPEN, WITHDRAWN = "on_time", "late", "open", "withdrawn"
# Electrician states on the map.
FREE, ON_JOB, OFF_SHIFT = "free", "on_job", "off_shift"
ELECTRICIAN_STATES = (FREE, ON_JOB, OFF_SHIFT)

# Which staff actions the desk offers a job in each status. A hint for the page only: the
# lifecycle core decides, and refuses a step that does not fit the job's status.
DESK_ACTIONS: dict[str, frozenset[str]] = {
    "offer": frozenset({_S.NEW.value, _S.AWAITING_DISPATCH.value, _S.ESCALATED.value}),
    "escalate": frozenset({_S.NEW.value, _S.AWAITING_DISPATCH.value}),
    "no_show": frozenset({_S.ACCEPTED.value, _S.EN_ROUTE.value}),
}


# --------------------------------------------------------------------------- members


@dataclass(frozen=True)
class MemberRow:
    """One company of an alliance as the staff table shows it on a day."""

    code: str
    name: str
    alliance: str
    status: str
    licence_level: int | None
    licence_expiry: date | None
    electricians: int  # active roster entries
    valid_electricians: int
    receives_offers: bool
    reasons: list[FieldProblem]  # translatable: message and params


def valid_electrician_count(provider: Provider, day: date) -> int:
    count = 0
    for row in provider.electricians:
        if not row.active:
            continue
        checked = membership.core_electrician(row)
        if checked is not None and core.is_valid_electrician(checked, day):
            count += 1
    return count


def member_row(provider: Provider, day: date) -> MemberRow:
    result = membership.assess(provider, day)
    reasons, receives = result.reasons, result.receives_offers
    if provider.status != ProviderStatus.APPROVED:
        reasons = [{"code": membership.NOT_ADMITTED, "figures": {"status": provider.status}},
                   *reasons]
        receives = False
    return MemberRow(
        code=provider.code, name=provider.name, alliance=provider.alliance,
        status=provider.status, licence_level=provider.licence_level,
        licence_expiry=provider.licence_expiry,
        electricians=sum(1 for e in provider.electricians if e.active),
        valid_electricians=valid_electrician_count(provider, day),
        receives_offers=receives, reasons=membership.reason_problems(reasons))


def _providers(session: Session, provider_id: int | None = None) -> list[Provider]:
    query = (select(Provider).order_by(Provider.code)
             .options(selectinload(Provider.electricians)
                      .selectinload(Electrician.certificates)))
    if provider_id is not None:
        query = query.where(Provider.id == provider_id)
    return list(session.scalars(query))


def members_by_alliance(session: Session, day: date) -> dict[str, list[MemberRow]]:
    """Every company that applied to an alliance, per alliance (in `Alliance.ALL` order)."""
    found: dict[str, list[MemberRow]] = {a: [] for a in Alliance.ALL}
    for provider in _providers(session):
        found.setdefault(provider.alliance, []).append(member_row(provider, day))
    return found


# --------------------------------------------------------------------------- expiries


@dataclass(frozen=True)
class ExpiryRow:
    alliance: str
    provider_code: str
    provider_name: str
    kind: str  # "licence" or "certificate"
    number: str
    expires: date
    days_left: int
    certificate_type: str | None = None
    electrician_code: str | None = None
    electrician_name: str | None = None


def _provider_expiries(provider: Provider, day: date, days: int) -> list[ExpiryRow]:
    whole = membership.core_provider(provider)
    if whole is None:
        return []
    by_id = {str(e.id): e for e in provider.electricians}
    rows = []
    for x in core.expiries_within(whole, day, days):
        person = by_id.get(x.electrician_id) if x.electrician_id else None
        rows.append(ExpiryRow(
            alliance=provider.alliance, provider_code=provider.code, provider_name=provider.name,
            kind=x.kind, number=x.number, expires=x.expires, days_left=x.days_left,
            certificate_type=x.certificate_type,
            electrician_code=person.code if person is not None else None,
            electrician_name=person.name if person is not None else None))
    return rows


def expiries(session: Session, day: date, days: int = EXPIRY_WARN_DAYS, *,
             provider_id: int | None = None) -> list[ExpiryRow]:
    """Licences and certificates of admitted members running out within `days` days."""
    rows = []
    for provider in _providers(session, provider_id):
        if provider.status == ProviderStatus.APPROVED:
            rows.extend(_provider_expiries(provider, day, days))
    rows.sort(key=lambda r: (r.expires, r.provider_code, r.kind, r.electrician_code or "",
                             r.number))
    return rows


# --------------------------------------------------------------------------- SLA


def sla_outcome(*, created_at: datetime, deadline: datetime,
                clock_stopped_at: datetime | None, status: str, closed_at: datetime | None,
                now: datetime) -> str:
    """One urgent job against the on-site promise: on time, late, open or withdrawn."""
    if clock_stopped_at is not None:
        met = lifecycle.sla_met(lifecycle.JobState(
            id="job", kind=lifecycle.JobKind.REPAIR, urgent=True, created_at=created_at,
            on_site_deadline=deadline, clock_stopped_at=clock_stopped_at))
        return ON_TIME if met else LATE
    if status == _S.CANCELLED.value and closed_at is not None and closed_at < deadline:
        return WITHDRAWN
    return LATE if now > deadline else OPEN


@dataclass(frozen=True)
class SlaFigures:
    """The on-site promise kept over a period (see the module docstring)."""

    start: datetime
    end: datetime
    on_time: int = 0
    late: int = 0
    open: int = 0
    withdrawn: int = 0
    mean_arrival_minutes: float | None = None

    @property
    def counted(self) -> int:
        return self.on_time + self.late + self.open

    @property
    def decided(self) -> int:
        return self.on_time + self.late

    @property
    def hit_rate(self) -> float | None:
        return self.on_time / self.decided if self.decided else None


def sla(session: Session, start: datetime, end: datetime, now: datetime, *,
        alliance: str | None = None, provider_id: int | None = None) -> SlaFigures:
    """The SLA of the urgent jobs created in `[start, end)`, of one alliance or provider."""
    query = select(Job.created_at, Job.on_site_deadline, Job.clock_stopped_at, Job.status,
                   Job.closed_at).where(Job.urgent.is_(True), Job.created_at >= start,
                                        Job.created_at < end)
    if alliance is not None:
        query = query.where(Job.alliance == alliance)
    if provider_id is not None:
        query = query.where(Job.provider_id == provider_id)
    counts: dict[str, int] = defaultdict(int)
    arrivals: list[float] = []
    for created, deadline, stopped, status, closed in session.execute(query):
        outcome = sla_outcome(created_at=created, deadline=deadline, clock_stopped_at=stopped,
                              status=status, closed_at=closed, now=now)
        counts[outcome] += 1
        if stopped is not None:
            arrivals.append((stopped - created).total_seconds() / 60)
    mean = round(sum(arrivals) / len(arrivals), 1) if arrivals else None
    return SlaFigures(start=start, end=end, on_time=counts[ON_TIME], late=counts[LATE],
                      open=counts[OPEN], withdrawn=counts[WITHDRAWN],
                      mean_arrival_minutes=mean)


def sla_table(session: Session, now: datetime,
              windows: tuple[int, ...] = SLA_WINDOWS_DAYS) -> dict[str, dict[int, SlaFigures]]:
    """Per alliance, the SLA of the last `days` days up to now, for each window."""
    return {a: {days: sla(session, now - timedelta(days=days), now, now, alliance=a)
                for days in windows} for a in Alliance.ALL}


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobRow:
    """A job as the desk, the escalations list and the cockpit show it."""

    code: str
    title: str
    kind: str
    alliance: str
    provider_code: str | None
    enterprise_name: str
    urgent: bool
    status: str
    created_at: datetime
    on_site_deadline: datetime | None
    time_left_s: int | None
    electrician: str | None
    last_reason: str | None
    due_on: date | None = None
    item_name: str | None = None
    planned_start: datetime | None = None
    actions: frozenset[str] = frozenset()


def _time_left(job: Job, now: datetime) -> int | None:
    if job.on_site_deadline is None:
        return None
    left = lifecycle.time_left(lifecycle.JobState(
        id=job.code, kind=job.kind, urgent=job.urgent, created_at=job.created_at,
        on_site_deadline=job.on_site_deadline, status=job.status,
        clock_stopped_at=job.clock_stopped_at), now)
    return None if left is None else int(left.total_seconds())


def job_row(job: Job, now: datetime) -> JobRow:
    return JobRow(
        code=job.code, title=job.title, kind=job.kind, alliance=job.alliance,
        provider_code=job.provider.code if job.provider is not None else None,
        enterprise_name=job.enterprise.name, urgent=job.urgent, status=job.status,
        created_at=job.created_at, on_site_deadline=job.on_site_deadline,
        time_left_s=_time_left(job, now),
        electrician=(f"{job.electrician.code} {job.electrician.name}"
                     if job.electrician is not None else None),
        last_reason=job.last_reason, due_on=job.due_on,
        item_name=job.contract_item.name if job.contract_item is not None else None,
        planned_start=job.planned_start,
        actions=frozenset(a for a, statuses in DESK_ACTIONS.items() if job.status in statuses))


def _job_query():
    return select(Job).options(selectinload(Job.enterprise), selectinload(Job.provider),
                               selectinload(Job.electrician), selectinload(Job.contract_item))


def escalated_jobs(session: Session, now: datetime) -> list[JobRow]:
    """Jobs handed to staff and not yet offered again, oldest first."""
    rows = session.scalars(_job_query().where(Job.status == _S.ESCALATED.value)
                           .order_by(Job.created_at, Job.id))
    return [job_row(j, now) for j in rows]


def open_jobs(session: Session, now: datetime, limit: int = DESK_LIMIT) -> list[JobRow]:
    """Open jobs for the desk: urgent first, then by deadline (or creation), oldest first."""
    rows = session.scalars(_job_query().where(Job.status.not_in(TERMINAL))
                           .order_by(Job.urgent.desc(), Job.on_site_deadline, Job.created_at,
                                     Job.id).limit(limit))
    return [job_row(j, now) for j in rows]


# --------------------------------------------------------------------------- map


@dataclass(frozen=True)
class MapPoint:
    """One thing on the map: an electrician (state free / on_job / off_shift) or an open job
    (state = its status). `x`, `y` are travel minutes east and north of the map's middle."""

    kind: str  # "electrician" or "job"
    ref: str  # electrician id or job code
    label: str
    alliance: str
    state: str
    lat: float
    lon: float
    x: float = 0.0
    y: float = 0.0
    urgent: bool = False
    provider_code: str | None = None
    source: str | None = None  # electricians: "last" (fresh report) or "home"


@dataclass(frozen=True)
class MapData:
    electricians: list[MapPoint] = field(default_factory=list)
    jobs: list[MapPoint] = field(default_factory=list)
    without_position: int = 0  # electricians with neither a fresh report nor a home base
    centre: tuple[float, float] | None = None

    @property
    def points(self) -> list[MapPoint]:
        return self.electricians + self.jobs


def electrician_position(row: Electrician, now: datetime) -> tuple[float, float, str] | None:
    """Where an electrician is taken to be: the last report while fresh, else home."""
    if (row.last_seen_at is not None and row.last_lat is not None and row.last_lon is not None
            and now - row.last_seen_at <= membership.POSITION_FRESH_FOR):
        return float(row.last_lat), float(row.last_lon), "last"
    if row.home_lat is not None and row.home_lon is not None:
        return float(row.home_lat), float(row.home_lon), "home"
    return None


def _holding(session: Session) -> set[int]:
    return set(session.scalars(select(Job.electrician_id).where(
        Job.electrician_id.is_not(None), Job.status.in_(ACTIVE_JOB_STATUSES))))


def electrician_state(row: Electrician, now: datetime, zone: str, holding: set[int]) -> str:
    if row.id in holding:
        return ON_JOB
    if any(s.covers(now) for s in membership.shifts_around(row, now, zone)):
        return FREE
    return OFF_SHIFT


def map_data(session: Session, now: datetime, zone: str, *,
             provider_id: int | None = None) -> MapData:
    """Electricians and open jobs to draw (of one provider when `provider_id` is given)."""
    holding = _holding(session)
    query = (select(Electrician).join(Provider)
             .where(Provider.status == ProviderStatus.APPROVED, Electrician.active.is_(True))
             .options(selectinload(Electrician.provider))
             .order_by(Provider.code, Electrician.code))
    jobs = _job_query().where(Job.status.not_in(TERMINAL)).order_by(Job.created_at, Job.id)
    if provider_id is not None:
        query = query.where(Provider.id == provider_id)
        jobs = jobs.where(Job.provider_id == provider_id)
    people, missing = [], 0
    for row in session.scalars(query):
        where = electrician_position(row, now)
        if where is None:
            missing += 1
            continue
        lat, lon, source = where
        people.append(MapPoint(kind="electrician", ref=str(row.id),
                               label=f"{row.code} {row.name}", alliance=row.provider.alliance,
                               state=electrician_state(row, now, zone, holding), lat=lat,
                               lon=lon, provider_code=row.provider.code, source=source))
    places = [MapPoint(kind="job", ref=j.code, label=f"{j.code} {j.title}", alliance=j.alliance,
                       state=j.status, lat=float(j.lat), lon=float(j.lon), urgent=j.urgent,
                       provider_code=j.provider.code if j.provider is not None else None)
              for j in session.scalars(jobs)]
    everything = people + places
    if not everything:
        return MapData(without_position=missing)
    lats = [p.lat for p in everything]
    lons = [p.lon for p in everything]
    centre = ((min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2)
    plane = membership.TRAVEL.to_plane([(p.lat, p.lon) for p in everything], centre)
    placed = [_at(p, float(x), float(y)) for p, (x, y) in zip(everything, plane, strict=True)]
    return MapData(electricians=placed[:len(people)], jobs=placed[len(people):],
                   without_position=missing, centre=centre)


def _at(point: MapPoint, x: float, y: float) -> MapPoint:
    return MapPoint(**{**point.__dict__, "x": round(x, 3), "y": round(y, 3)})


# --------------------------------------------------------------------------- staff view


@dataclass(frozen=True)
class StaffView:
    day: date
    now: datetime
    members: dict[str, list[MemberRow]]
    expiries: list[ExpiryRow]
    sla: dict[str, dict[int, SlaFigures]]
    escalated: list[JobRow]
    open_jobs: list[JobRow]
    map: MapData


def staff_view(session: Session, now: datetime, zone: str,
               warn_days: int = EXPIRY_WARN_DAYS) -> StaffView:
    day = local_day(now, zone)
    return StaffView(day=day, now=now, members=members_by_alliance(session, day),
                     expiries=expiries(session, day, warn_days), sla=sla_table(session, now),
                     escalated=escalated_jobs(session, now), open_jobs=open_jobs(session, now),
                     map=map_data(session, now, zone))


# --------------------------------------------------------------------------- cockpit


@dataclass(frozen=True)
class AlarmRow:
    id: int
    rule: str
    enterprise_name: str | None
    starts_at: datetime
    ends_at: datetime
    raised_at: datetime
    details: dict
    job_code: str
    job_status: str


@dataclass(frozen=True)
class Cockpit:
    provider: Provider
    day: date
    member: MemberRow
    contracts: list[OmContract]
    upcoming: list[JobRow]
    alarms: list[AlarmRow]
    sla: SlaFigures
    roster: list[membership.ElectricianStatus]
    expiries: list[ExpiryRow]


def contracts_of(session: Session, provider_id: int) -> list[OmContract]:
    return list(session.scalars(
        select(OmContract).where(OmContract.provider_id == provider_id)
        .options(selectinload(OmContract.items), selectinload(OmContract.enterprise))
        .order_by(OmContract.code)))


def upcoming_planned(session: Session, provider_id: int, day: date, now: datetime,
                     days: int = UPCOMING_DAYS) -> list[JobRow]:
    """Contract-generated patrols and inspections due from `day` for `days` days, open."""
    rows = session.scalars(_job_query().where(
        Job.provider_id == provider_id, Job.contract_item_id.is_not(None),
        Job.due_on >= day, Job.due_on < day + timedelta(days=days),
        Job.status.not_in(TERMINAL))
        .order_by(Job.due_on, Job.planned_start.asc().nulls_last(), Job.code))
    return [job_row(j, now) for j in rows]


def _details(text: str) -> dict:
    try:
        found = json.loads(text or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def open_alarms(session: Session, provider_id: int) -> list[AlarmRow]:
    """Alarms whose job is one of the provider's open jobs, newest first."""
    rows = session.execute(
        select(Alarm, Job).join(Job, Alarm.job_id == Job.id)
        .where(Job.provider_id == provider_id, Job.status.not_in(TERMINAL))
        .options(selectinload(Alarm.enterprise))
        .order_by(Alarm.starts_at.desc(), Alarm.id.desc()))
    return [AlarmRow(id=a.id, rule=a.rule,
                     enterprise_name=a.enterprise.name if a.enterprise is not None else None,
                     starts_at=a.starts_at, ends_at=a.ends_at, raised_at=a.raised_at,
                     details=_details(a.details), job_code=j.code, job_status=j.status)
            for a, j in rows]


def cockpit(session: Session, user: User, now: datetime, zone: str) -> Cockpit:
    """The provider cockpit of `user`'s company (an energy-cloud-butler member)."""
    provider = user.provider
    day = local_day(now, zone)
    _found, _standing, roster = membership.roster(session, user, provider.code, day,
                                                  EXPIRY_WARN_DAYS)
    return Cockpit(
        provider=provider, day=day, member=member_row(provider, day),
        contracts=contracts_of(session, provider.id),
        upcoming=upcoming_planned(session, provider.id, day, now),
        alarms=open_alarms(session, provider.id),
        sla=sla(session, now - timedelta(days=COCKPIT_SLA_DAYS), now, now,
                provider_id=provider.id),
        roster=roster,
        expiries=_provider_expiries(provider, day, EXPIRY_WARN_DAYS))
