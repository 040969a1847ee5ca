"""Automatic dispatch: rounds of urgent offers and plans of a day's planned work.

Urgent jobs (`urgent_round`): every urgent job waiting for an electrician (new, back to
dispatch after a decline, an expired offer, a no-show or "cannot complete", or escalated) is
matched in one exact `alliance.urgent` min-cost flow: as many as possible on site by their
deadline, then as many as possible assigned at all, then the least travel. Who may take which
job is the platform's own eligibility (`alliance.offerable_electricians`: membership and
standing, certificates for the skills, shift, exclusions, not already holding an urgent job
or at work); a pair the platform refuses is an excluded pair in the core's instance. A job
nobody can reach by its deadline is escalated to staff and the provider (once) and still
offered to the least-late electrician, if any: late is better than never.

Planned work (`plan_day`): the day's patrols, inspections and non-urgent repairs of one
dispatch scope (the shared pool, or one energy-cloud-butler provider's own electricians) are
one vehicle routing problem with time windows, skills, shifts and workload limits, solved by
`alliance.routing` and checked by its independent checker before anything is stored. Jobs
already offered to or taken by an electrician stay with that electrician, in their planned
order, at the head of the route (the core's pins): re-planning after a new job arrives, a
decline or an expired offer moves nobody's accepted work. Each newly placed job is offered to
its electrician until its planned start; jobs that fit nowhere are recorded with the reason.

Both read in one transaction and then offer each job in its own (`jobs.offer` locks the
electrician's row and re-checks eligibility, and the database refuses a second active urgent
job for one person), so two rounds running at once never book anyone twice: the loser's
offer is refused and its job waits for the next round.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from alliance import membership as members
from alliance import urgent as urgent_core
from alliance.checker import check_plan
from alliance.instances import Job as RouteJob
from alliance.instances import RoutingInstance, Vehicle
from alliance.lifecycle import JobStatus
from alliance.routing import RoutingResult, SearchOptions, Unassigned, solve

from ..models import (
    Alliance,
    DispatchPlan,
    Electrician,
    Job,
    Park,
    Provider,
    ProviderStatus,
    utcnow,
)
from . import alliance as membership
from . import jobs as job_service
from .calendar import local_day
from .errors import ServiceError

log = logging.getLogger(__name__)


class DispatchCheckFailed(RuntimeError):
    """A solver's answer failed the independent check: nothing of it is offered or stored."""

WAITING = tuple(s.value for s in (JobStatus.NEW, JobStatus.AWAITING_DISPATCH,
                                  JobStatus.ESCALATED))
# Planned work the plan may still move: not yet offered to anyone.
UNPLACED = tuple(s.value for s in (JobStatus.NEW, JobStatus.AWAITING_DISPATCH))
# Planned work that stays with its electrician when the day is planned again.
HELD = tuple(s.value for s in (JobStatus.OFFERED, JobStatus.ACCEPTED, JobStatus.EN_ROUTE,
                               JobStatus.ON_SITE, JobStatus.IN_PROGRESS))
# Escalation reasons by the core's reason codes (the job's last reason, shown to staff).
NOBODY_IN_TIME = "nobody can be on site by the deadline"
_UNASSIGNED_REASONS = {
    urgent_core.REASON_NO_QUALIFIED: "no qualified electrician is free",
    urgent_core.REASON_ALL_EXCLUDED: "every qualified electrician is excluded from this job",
    urgent_core.REASON_OFF_SHIFT: "no qualified electrician is on shift",
    urgent_core.REASON_TAKEN: "every electrician who could come is taken by other jobs",
}


# --------------------------------------------------------------------------- urgent


@dataclass(frozen=True)
class UrgentRound:
    """What one round did: offers made, jobs escalated, jobs still waiting."""

    offered: tuple[tuple[str, int], ...] = ()  # (job code, electrician id)
    escalated: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    solve_s: float = 0.0


def _minutes(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 60.0


def _shift_end(row: Electrician, at: datetime, zone: str) -> float:
    """Minutes from `at` to the end of the shift covering it (inf when none is known)."""
    ends = [s.end for s in membership.shifts_around(row, at, zone) if s.covers(at)]
    return _minutes(max(ends), at) if ends else math.inf


def _urgent_instance(session: Session, waiting: list[Job], at: datetime):
    """The core's instance for the waiting urgent jobs at `at` (times in minutes from `at`)."""
    allowed: dict[int, set[int]] = {}
    rows: dict[int, Electrician] = {}
    for job in waiting:
        allowed[job.id] = set()
        for candidate in membership.offerable_electricians(session, job, at):
            allowed[job.id].add(candidate.electrician_id)
            if candidate.electrician_id not in rows:
                rows[candidate.electrician_id] = session.get(Electrician,
                                                             candidate.electrician_id)
    everyone = {str(i) for i in rows}
    jobs = tuple(urgent_core.UrgentJob(
        id=job.code, position=(float(job.lat), float(job.lon)),
        deadline=_minutes(job.on_site_deadline, at),
        excluded=frozenset(everyone - {str(i) for i in allowed[job.id]}))
        for job in waiting)
    electricians = tuple(urgent_core.CandidateElectrician(
        id=str(row.id), position=membership.position_of(row, at), free_at=0.0,
        shift_end=_shift_end(row, at, waiting[0].park.timezone))
        for row in rows.values())
    return urgent_core.UrgentDispatchInstance(now=0.0, jobs=jobs, electricians=electricians,
                                              travel=membership.TRAVEL)


def urgent_round(platform, *, at: datetime | None = None) -> UrgentRound:
    """Offer every waiting urgent job to the best electrician now (see the module docstring)."""
    at = at or utcnow()
    with platform.unit_of_work() as session:
        waiting = list(session.scalars(
            select(Job).where(Job.urgent.is_(True), Job.status.in_(WAITING))
            .options(selectinload(Job.exclusions))
            .order_by(Job.on_site_deadline, Job.id)))
        if not waiting:
            return UrgentRound()
        instance = _urgent_instance(session, waiting, at)
        status = {job.code: job.status for job in waiting}
    result = urgent_core.dispatch(instance)
    problems = urgent_core.check_dispatch(instance, result)
    if problems:  # never offer a round the independent check refuses
        raise DispatchCheckFailed("urgent dispatch: " + "; ".join(problems))

    escalate: dict[str, str] = {}
    for missing in result.unassigned:
        escalate[missing.job_id] = _UNASSIGNED_REASONS.get(missing.reason, missing.reason)
    for a in result.assignments:
        if a.arrival > a.deadline + 1e-9:
            escalate[a.job_id] = NOBODY_IN_TIME
    escalated = []
    for code, reason in escalate.items():
        if status[code] == JobStatus.ESCALATED.value:
            continue
        try:
            job_service.escalate(platform, code, reason, actor_id=None, at=at)
            escalated.append(code)
        except ServiceError as exc:  # taken or changed meanwhile
            log.info("urgent job %s not escalated: %s", code, exc)

    offered = []
    for a in result.assignments:
        try:
            job_service.offer(platform, a.job_id, int(a.electrician_id), actor_id=None, at=at)
            offered.append((a.job_id, int(a.electrician_id)))
        except ServiceError as exc:  # someone else's round took the person or the job
            log.info("urgent job %s not offered to %s: %s", a.job_id, a.electrician_id, exc)
    taken = {code for code, _ in offered}
    return UrgentRound(offered=tuple(offered), escalated=tuple(escalated),
                       waiting=tuple(j.code for j in waiting if j.code not in taken),
                       solve_s=result.solve_s)


# --------------------------------------------------------------------------- planned work


@dataclass(frozen=True)
class Scope:
    """Who dispatches planned work: the shared pool (`provider_id` None) or one butler
    provider's own electricians."""

    alliance: str
    provider_id: int | None = None

    @classmethod
    def of(cls, job: Job) -> Scope:
        return cls(job.alliance, job.provider_id)


@dataclass
class PlanOutcome:
    plan_id: int | None
    placed: int = 0
    offered: list[str] = field(default_factory=list)
    unplaced: list[dict] = field(default_factory=list)
    status: str = "empty"


def _day_bounds(day: date, zone: str) -> tuple[datetime, datetime]:
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(0), tz)
    return start, datetime.combine(day + timedelta(days=1), time(0), tz)


def _in_scope(query, scope: Scope):
    query = query.where(Job.alliance == scope.alliance)
    if scope.provider_id is None:
        return query.where(Job.provider_id.is_(None))
    return query.where(Job.provider_id == scope.provider_id)


def _day_jobs(session: Session, park: Park, scope: Scope, day: date) -> tuple[list[Job],
                                                                           list[Job]]:
    """The scope's planned work of `day`: (jobs held by an electrician from an earlier plan of
    the day, jobs waiting to be placed). A job belongs to a day by its time window; one
    without a window waits for the first plan made on or after the day it was raised."""
    start, end = _day_bounds(day, park.timezone)
    query = _in_scope(select(Job).where(
        Job.park_id == park.id, Job.urgent.is_(False),
        or_(Job.window_start.is_(None), Job.window_start < end),
        or_(Job.window_end.is_(None), Job.window_end > start),
        or_(Job.window_start.is_not(None), Job.created_at < end)), scope)
    query = query.options(selectinload(Job.exclusions)).order_by(Job.id)
    held, waiting = [], []
    for job in session.scalars(query):
        if job.status in UNPLACED:
            waiting.append(job)
        elif (job.status in HELD and job.planned_start is not None
              and start <= job.planned_start < end
              and job.planned_electrician_id == job.electrician_id):
            held.append(job)
    return held, waiting


def _scope_electricians(session: Session, park: Park, scope: Scope,
                        day: date) -> list[tuple[Electrician, members.Electrician]]:
    """The scope's electricians who may work on `day`: active, of an admitted provider in
    good standing, with a home base and a shift starting that day, not on an urgent job."""
    query = (select(Electrician).join(Provider)
             .where(Provider.status == ProviderStatus.APPROVED,
                    Provider.alliance == scope.alliance, Electrician.active.is_(True))
             .options(selectinload(Electrician.certificates))
             .order_by(Electrician.id))
    if scope.provider_id is not None:
        query = query.where(Provider.id == scope.provider_id)
    noon = datetime.combine(day, time(12), ZoneInfo(park.timezone))
    # Someone holding an urgent job now may not be offered planned work (see
    # `alliance.eligibility`); a later plan takes them up again once they are free.
    on_urgent = set(session.scalars(select(Job.electrician_id).where(
        Job.urgent.is_(True), Job.electrician_id.is_not(None), Job.status.in_(HELD))))
    standing: dict[int, bool] = {}
    found = []
    for row in session.scalars(query):
        if row.id in on_urgent:
            continue
        if row.provider_id not in standing:
            standing[row.provider_id] = membership.assess(row.provider, day).receives_offers
        if not standing[row.provider_id]:
            continue
        checked = membership.core_electrician(row, around=noon, zone=park.timezone)
        if checked is None or not members.offerable_skills(checked, day):
            continue
        if not any(s.start.astimezone(ZoneInfo(park.timezone)).date() == day
                   for s in checked.shifts):
            continue
        found.append((row, checked))
    return found


def _exclusion_skill(job: Job) -> str:
    return f"not-excluded:{job.id}"


def _build_instance(park: Park, day: date, at: datetime, held: list[Job], waiting: list[Job],
                    people: list[tuple[Electrician, members.Electrician]]
                    ) -> tuple[RoutingInstance, datetime, dict[str, str]]:
    """The day as a routing instance in minutes from local midnight, positions projected to
    the plane in travel minutes around the park's centre. Returns it, its time origin, and
    the waiting jobs left out before solving with their reasons.

    Exclusions (a decline, an expired offer, a no-show) become a skill of their own that
    every electrician but the excluded ones holds. Held work is pinned to its electrician
    and asks for no skill (it is theirs already); an electrician whose shift is over keeps
    their held work and gets nothing new, so neither is in the instance."""
    zone = ZoneInfo(park.timezone)
    origin, _ = _day_bounds(day, park.timezone)
    now = max(0.0, _minutes(at, origin))
    travel = membership.TRAVEL

    shifts = {}
    for row, checked in people:
        shift = min((s for s in checked.shifts if s.start.astimezone(zone).date() == day),
                    key=lambda s: s.start)
        begin, end = max(_minutes(shift.start, origin), now), _minutes(shift.end, origin)
        if end > begin:
            shifts[row.id] = (begin, end)
    people = [(row, checked) for row, checked in people if row.id in shifts]
    held = [j for j in held if j.electrician_id in shifts]
    held_by: dict[int, list[Job]] = {}
    for job in held:
        held_by.setdefault(job.electrician_id, []).append(job)
    for jobs in held_by.values():
        jobs.sort(key=lambda j: (j.planned_seq or 0, j.planned_start))

    homes = [(float(r.home_lat), float(r.home_lon)) for r, _ in people]
    sites = [(float(j.lat), float(j.lon)) for j in held + waiting]
    centre = tuple(np.mean(np.array(homes + sites), axis=0))
    xy = [tuple(map(float, p)) for p in travel.to_plane(homes + sites, centre)]
    home_xy, site_xy = xy[:len(homes)], xy[len(homes):]

    left_out: dict[str, str] = {}
    route_jobs = []
    for job, where in zip(held + waiting, site_xy, strict=True):
        ready = _minutes(job.window_start, origin) if job.window_start else 0.0
        due = _minutes(job.window_end, origin) if job.window_end else 24 * 60.0
        skills: set[str] = set()
        if job in held:
            due = math.inf  # held work is done whatever the clock says
        else:
            ready = max(ready, now)
            if due < ready:
                left_out[job.code] = "time_window_passed"
                continue
            if not people:
                left_out[job.code] = "nobody_works_that_day"
                continue
            skills.update(job.skill_list)
            if job.exclusions:
                skills.add(_exclusion_skill(job))
        route_jobs.append(RouteJob(
            id=job.code, location=where, ready=max(0.0, ready), due=max(due, ready),
            service=job.service_minutes + travel.setup_minutes, skills=frozenset(skills)))

    placed_ids = {j.id for j in route_jobs}
    vehicles = []
    for (row, checked), home in zip(people, home_xy, strict=True):
        skills = set(members.offerable_skills(checked, day))
        skills.update(_exclusion_skill(j) for j in waiting
                      if j.exclusions and j.code in placed_ids
                      and row.id not in {x.electrician_id for x in j.exclusions})
        begin, end = shifts[row.id]
        vehicles.append(Vehicle(id=str(row.id), shift_start=begin, shift_end=end,
                                skills=frozenset(skills), start=home, end=home,
                                pinned=tuple(j.code for j in held_by.get(row.id, ()))))
    instance = RoutingInstance(name=f"{park.code}-{day.isoformat()}", depot=(0.0, 0.0),
                               jobs=tuple(route_jobs), vehicles=tuple(vehicles),
                               meta={"now": now})
    return instance, origin, left_out


def plan_day(platform, park_id: int, day: date, scope: Scope, *, at: datetime | None = None,
             seconds: float | None = None) -> PlanOutcome:
    """Plan (or plan again) one scope's planned work of `day` and offer what was placed."""
    at = at or utcnow()
    seconds = seconds if seconds is not None else platform.settings.plan_seconds
    with platform.unit_of_work() as session:
        park = session.get(Park, park_id)
        held, waiting = _day_jobs(session, park, scope, day)
        if not waiting:
            return PlanOutcome(plan_id=None)
        people = _scope_electricians(session, park, scope, day)
        instance, origin, left_out = _build_instance(park, day, at, held, waiting, people)
        waiting_codes = {j.code for j in waiting}

    if instance.jobs and instance.vehicles:
        result = solve(instance, SearchOptions(time_limit_s=seconds))
    else:
        result = RoutingResult(routes=(), unassigned=tuple(
            Unassigned(j.id, "nobody_works_that_day") for j in instance.jobs),
            total_distance=0.0, solve_s=0.0, status="empty")
    report = check_plan(instance, result)
    if not report.ok:
        found = "; ".join(f"{v.kind} {v.subject}: {v.detail}" for v in report.violations[:5])
        raise DispatchCheckFailed(f"plan of {day}: {found}")

    unplaced = [{"job": code, "reason": reason} for code, reason in left_out.items()]
    unplaced += [{"job": u.job_id, "reason": u.reason} for u in result.unassigned
                 if u.job_id in waiting_codes]
    placed: dict[str, tuple[int, int, datetime]] = {}
    for route in result.routes:
        for seq, stop in enumerate(route.stops, start=1):
            placed[stop.job_id] = (int(route.vehicle_id), seq,
                                   origin + timedelta(minutes=stop.service_start))

    with platform.unit_of_work() as session:
        plan = DispatchPlan(park_id=park_id, day=day, alliance=scope.alliance,
                            provider_id=scope.provider_id, engine="pyvrp", status=result.status,
                            solve_s=round(result.solve_s, 3), placed=len(placed),
                            travel_minutes=round(result.total_distance),
                            unplaced=json.dumps(unplaced, ensure_ascii=False), created_at=at)
        session.add(plan)
        session.flush()
        for job in session.scalars(select(Job).where(Job.code.in_(list(placed)))):
            electrician_id, seq, start = placed[job.code]
            if job.code not in waiting_codes and job.electrician_id != electrician_id:
                continue  # changed hands since it was read: the next plan takes it up
            job.plan_id, job.planned_seq, job.planned_start = plan.id, seq, start
            job.planned_electrician_id = electrician_id
        plan_id = plan.id

    outcome = PlanOutcome(plan_id=plan_id, placed=len(placed), unplaced=unplaced,
                          status=result.status)
    offer_for = timedelta(minutes=platform.settings.offer_minutes)
    for code in sorted(waiting_codes & set(placed), key=lambda c: placed[c][2]):
        electrician_id, _, start = placed[code]
        expires = max(start, at + offer_for)
        try:
            job_service.offer(platform, code, electrician_id, actor_id=None, at=at,
                              expires_at=expires)
            outcome.offered.append(code)
        except ServiceError as exc:  # taken or changed meanwhile: the next plan takes it up
            log.info("planned job %s not offered to %s: %s", code, electrician_id, exc)
    reasons: dict[str, int] = {}
    for u in unplaced:
        reasons[u["reason"]] = reasons.get(u["reason"], 0) + 1
    log.info("plan %s of %s (%s, %s): %s placed, %s offered, unplaced %s", plan_id, day,
             scope, result.status, len(placed), len(outcome.offered), reasons or "none")
    return outcome


def days_to_plan(platform, at: datetime | None = None,
                 days_ahead: int = 1) -> list[tuple[int, date, Scope]]:
    """(park, day, scope) with planned work waiting to be placed, from today up to
    `days_ahead` days later, in each park's zone."""
    at = at or utcnow()
    due: set[tuple[int, date, Scope]] = set()
    with platform.unit_of_work() as session:
        for park in session.scalars(select(Park)):
            today = local_day(at, park.timezone)
            for offset in range(days_ahead + 1):
                day = today + timedelta(days=offset)
                for scope in _waiting_scopes(session, park, day):
                    due.add((park.id, day, scope))
    return sorted(due, key=lambda d: (d[0], d[1], d[2].alliance, d[2].provider_id or 0))


def _waiting_scopes(session: Session, park: Park, day: date) -> Iterable[Scope]:
    start, end = _day_bounds(day, park.timezone)
    rows = session.execute(select(Job.alliance, Job.provider_id).where(
        Job.park_id == park.id, Job.urgent.is_(False), Job.status.in_(UNPLACED),
        or_(Job.window_start.is_(None), Job.window_start < end),
        or_(Job.window_end.is_(None), Job.window_end > start),
        or_(Job.window_start.is_not(None), Job.created_at < end)).distinct())
    for alliance, provider_id in rows:
        if alliance == Alliance.ENERGY_CLOUD_BUTLER and provider_id is None:
            continue
        yield Scope(alliance, provider_id)
