"""Live re-planning of a running field-service day: the problem that remains at a moment, the
cheapest insertion of one urgent job that moves nobody else, and a short re-optimisation.

Conventions (times and distances in the instance's unit; travel time = Euclidean distance):

- A route's schedule is the one `alliance.checker` simulates: leave the start at the route's
  `start_time`, start each service as soon as the electrician is there and the window is
  open, wait otherwise.
- The remaining problem at `now` (`live_problem`) is a new `RoutingInstance` plus the running
  plan carried over to it. Completed jobs are dropped. The job an electrician is travelling to,
  waiting at or working on (`ElectricianState.current`) stays in the problem, pinned first on
  that electrician (`Vehicle.pinned`), its due time lifted (it is under way, lateness can no
  longer be planned away). Working on it: the electrician starts *at the job's site* at `now`
  and the job keeps only its remaining service time (until `free_at`, the expected end).
  Travelling or waiting: the electrician starts at its current position, at the later of `now`
  and `free_at`. An electrician who has left home works against an absolute bound: the shift
  end becomes `min(shift_end, left_home_at + max_duration)` and `max_duration` is dropped, so a
  later plan cannot hide time already worked. An electrician still at home keeps his home,
  shift end and `max_duration`; his shift starts no earlier than `now`. A bound already broken
  by the work under way is widened to what that work needs (a commitment is kept).
  Planned stops that no longer fit after a delay leave the carried plan, one at a time, as
  unassigned (`time_window_unreachable` for a missed window, `no_room_in_plan` for a shift or
  workload overrun).
- `insert_job` puts one new job into a running plan without moving any other job (same
  electrician, same order), never before a vehicle's pinned prefix, never into a leg already
  driven and never with service before `now`. An electrician whose route has not started by
  `now` may leave as early as `max(shift_start, now)`; one whose route started before `now`
  keeps its departure time. Each candidate position is checked in O(1) from forward time
  slack (all positions of all electricians at once with numpy), then the winner is
  re-simulated exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from alliance.checker import check_plan
from alliance.errors import InvalidReplanInputError
from alliance.instances import Job, Point, RoutingInstance, Vehicle
from alliance.routing import (
    REASON_NO_ROOM,
    REASON_NO_SKILLED_VEHICLE,
    REASON_OVER_CAPACITY,
    REASON_TIME_WINDOW,
    REASON_WORKLOAD,
    Route,
    RoutingResult,
    SearchOptions,
    Stop,
    Unassigned,
    solve,
)

# Feasibility tolerance of the slack arithmetic; the checker allows 1e-6, so whatever passes
# here also passes there.
EPS = 1e-7
OBJECTIVES = ("earliest_start", "least_detour")


@dataclass(frozen=True)
class ElectricianState:
    """Where one electrician stands at `now` (see the module's conventions).

    `done`: jobs completed today. `current`: the job travelled to, waited at or worked on
    (`on_site` = service has begun). `position`: where the electrician is when not on site
    (default: the route's start). `free_at`: when he can move on (on site: the expected end of
    the job, default the full service time from `now`; otherwise default `now`). `left_home_at`:
    when the working day began, for `max_duration` (default the shift start, the conservative
    choice). A state with neither `current`, `position` nor `left_home_at` means "still at
    home, route not started".
    """

    vehicle_id: str
    done: tuple[str, ...] = ()
    current: str | None = None
    on_site: bool = False
    position: Point | None = None
    free_at: float | None = None
    left_home_at: float | None = None

    @property
    def away(self) -> bool:
        return (self.current is not None or self.position is not None
                or self.left_home_at is not None or bool(self.done))


@dataclass(frozen=True)
class LivePlan:
    """The remaining problem at `now` and the running plan carried over to it."""

    now: float
    instance: RoutingInstance
    plan: RoutingResult
    done: tuple[str, ...]
    dropped: tuple[Unassigned, ...]


@dataclass(frozen=True)
class Insertion:
    """Outcome of `insert_job`: the instance with the new job, and the plan serving it or not.

    `position` is the index of the new job among its electrician's stops; `service_start` is
    its predicted start; `added_distance` the detour. When it fits nowhere `vehicle_id` is None,
    the plan is the input plan with the job listed unassigned, and `reason` says why.
    """

    instance: RoutingInstance
    plan: RoutingResult
    job_id: str
    vehicle_id: str | None
    position: int | None
    service_start: float | None
    added_distance: float | None
    reason: str | None = None

    @property
    def feasible(self) -> bool:
        return self.vehicle_id is not None


def _dist(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


@dataclass(frozen=True)
class _Schedule:
    begins: tuple[float, ...]
    end_time: float
    distance: float


def _simulate(start: Point, end: Point, depart: float, jobs: list[Job]) -> _Schedule:
    """The checker's schedule: earliest service starts from `depart`."""
    t, pos, dist, begins = depart, start, 0.0, []
    for job in jobs:
        leg = _dist(pos, job.location)
        dist += leg
        begin = max(t + leg, job.ready)
        begins.append(begin)
        t = begin + job.service
        pos = job.location
    if jobs:
        back = _dist(pos, end)
        dist += back
        t += back
    return _Schedule(tuple(begins), t, dist)


def _route_ok(vehicle: Vehicle, jobs: list[Job], depart: float, sched: _Schedule) -> bool:
    if depart < vehicle.shift_start - EPS:
        return False
    if any(b > job.due + EPS for b, job in zip(sched.begins, jobs, strict=True)):
        return False
    if jobs and sched.end_time > vehicle.shift_end + EPS:
        return False
    if jobs and vehicle.max_duration is not None \
            and sched.end_time - depart > vehicle.max_duration + EPS:
        return False
    if vehicle.max_jobs is not None and len(jobs) > vehicle.max_jobs:
        return False
    return sum(j.demand for j in jobs) <= vehicle.capacity


def _latest_departure(vehicle: Vehicle, jobs: list[Job], earliest: float) -> float:
    """Departure at or after `earliest` that respects `max_duration` with the earliest service
    starts: only as late as the duration limit demands (the checker measures from departure)."""
    if not jobs or vehicle.max_duration is None:
        return earliest
    sched = _simulate(_start(vehicle), _end(vehicle), earliest, jobs)
    return earliest + max(0.0, sched.end_time - earliest - vehicle.max_duration)


def _start(vehicle: Vehicle) -> Point:
    return vehicle.start  # set on every vehicle by `_resolve`


def _end(vehicle: Vehicle) -> Point:
    return vehicle.end


def _resolve(instance: RoutingInstance) -> tuple[Vehicle, ...]:
    """Vehicles with explicit start and end points (the depot where they are left open)."""
    return tuple(v if v.start is not None and v.end is not None else dataclasses.replace(
        v, start=instance.vehicle_start(v), end=instance.vehicle_end(v))
        for v in instance.vehicles)


def _route(vehicle: Vehicle, jobs: list[Job], depart: float) -> Route:
    sched = _simulate(_start(vehicle), _end(vehicle), depart, jobs)
    return Route(vehicle.id, depart, _stops(jobs, sched), sched.distance)


def _stops(jobs: list[Job], sched: _Schedule) -> tuple[Stop, ...]:
    return tuple(Stop(j.id, b) for j, b in zip(jobs, sched.begins, strict=True))


def _result(routes: list[Route], unassigned: list[Unassigned], status: str) -> RoutingResult:
    return RoutingResult(tuple(routes), tuple(unassigned),
                         math.fsum(r.distance for r in routes), 0.0, status)


def idle_plan(instance: RoutingInstance) -> RoutingResult:
    """Every electrician idle, every job unassigned (`no_room_in_plan`): a plan to insert into."""
    vehicles = _resolve(instance)
    return _result([Route(v.id, v.shift_start, (), 0.0) for v in vehicles],
                   [Unassigned(j.id, REASON_NO_ROOM) for j in instance.jobs], "idle")


# --- the remaining problem at `now` ----------------------------------------------------------

def state_from_plan(instance: RoutingInstance, plan: RoutingResult, vehicle_id: str,
                    now: float) -> ElectricianState:
    """Where an electrician who follows `plan` exactly stands at `now`.

    Travelling: position interpolated along the straight leg. Before the route's start time or
    with an empty route: still at home. After the last job: on the way home (or home), away.
    """
    vehicles = {v.id: v for v in _resolve(instance)}
    if vehicle_id not in vehicles:
        raise InvalidReplanInputError(f"unknown vehicle {vehicle_id!r}")
    route = next((r for r in plan.routes if r.vehicle_id == vehicle_id), None)
    return _state_on_route(vehicles[vehicle_id], route, {j.id: j for j in instance.jobs}, now)


def _state_on_route(v: Vehicle, route: Route | None, jobs_by_id: Mapping[str, Job],
                    now: float) -> ElectricianState:
    if route is None or not route.stops or now <= route.start_time:
        return ElectricianState(v.id)
    try:
        jobs = [jobs_by_id[s.job_id] for s in route.stops]
    except KeyError as exc:
        raise InvalidReplanInputError(f"plan routes unknown job {exc.args[0]!r}") from None
    t, pos = route.start_time, _start(v)
    for i, job in enumerate(jobs):
        leg = _dist(pos, job.location)
        arrival = t + leg
        begin = max(arrival, job.ready)
        done = tuple(j.id for j in jobs[:i])
        if now < arrival:
            frac = (now - t) / leg if leg > 0 else 1.0
            where = (pos[0] + frac * (job.location[0] - pos[0]),
                     pos[1] + frac * (job.location[1] - pos[1]))
            return ElectricianState(v.id, done, job.id, False, where, now, route.start_time)
        if now < begin:
            return ElectricianState(v.id, done, job.id, False, job.location, now,
                                    route.start_time)
        if now < begin + job.service:
            return ElectricianState(v.id, done, job.id, True, None, begin + job.service,
                                    route.start_time)
        t, pos = begin + job.service, job.location
    end = _end(v)
    leg = _dist(pos, end)
    frac = min(1.0, (now - t) / leg) if leg > 0 else 1.0
    where = (pos[0] + frac * (end[0] - pos[0]), pos[1] + frac * (end[1] - pos[1]))
    return ElectricianState(v.id, tuple(j.id for j in jobs), None, False, where, now,
                            route.start_time)


def live_problem(instance: RoutingInstance, plan: RoutingResult, now: float,
                 states: Mapping[str, ElectricianState] | None = None) -> LivePlan:
    """The problem that remains at `now` and the running plan carried over to it.

    `states` maps vehicle ids to what the platform knows; an electrician without one is taken
    to follow `plan` exactly (`state_from_plan`). See the module docstring for the rules.
    """
    if not math.isfinite(now):
        raise InvalidReplanInputError("now must be a finite time")
    states = dict(states or {})
    vehicles = _resolve(instance)
    known_vehicles = {v.id for v in vehicles}
    jobs_by_id = {j.id: j for j in instance.jobs}
    for vid, st in states.items():
        if vid not in known_vehicles or st.vehicle_id != vid:
            raise InvalidReplanInputError(f"state for unknown or mismatched vehicle {vid!r}")
    routes_by_vehicle = {r.vehicle_id: r for r in plan.routes}
    full = {v.id: states.get(v.id) or _state_on_route(v, routes_by_vehicle.get(v.id),
                                                        jobs_by_id, now)
            for v in vehicles}

    done: set[str] = set()
    current_of: dict[str, str] = {}
    for st in full.values():
        for job_id in (*st.done, *([st.current] if st.current else [])):
            if job_id not in jobs_by_id:
                raise InvalidReplanInputError(f"{st.vehicle_id}: unknown job {job_id!r}")
        if done & set(st.done):
            raise InvalidReplanInputError(f"{st.vehicle_id}: a done job is reported twice")
        done.update(st.done)
        if st.current is not None:
            if st.current in current_of:
                raise InvalidReplanInputError(f"job {st.current!r} is current for two vehicles")
            current_of[st.current] = st.vehicle_id
        if st.on_site and st.current is None:
            raise InvalidReplanInputError(f"{st.vehicle_id}: on site without a current job")
    if done & set(current_of):
        raise InvalidReplanInputError("a job is both done and under way")

    # Jobs of the remaining problem: done ones dropped, those under way adjusted.
    new_jobs: dict[str, Job] = {}
    for job in instance.jobs:
        if job.id in done:
            continue
        owner = current_of.get(job.id)
        if owner is None:
            new_jobs[job.id] = job
            continue
        st = full[owner]
        if st.on_site:
            end = st.free_at if st.free_at is not None else now + job.service
            new_jobs[job.id] = dataclasses.replace(
                job, ready=min(job.ready, now), due=math.inf, service=max(0.0, end - now))
        else:
            new_jobs[job.id] = dataclasses.replace(job, due=math.inf)

    new_vehicles: list[Vehicle] = []
    carried: list[tuple[Vehicle, list[Job], float | None]] = []
    for v in vehicles:
        st = full[v.id]
        route = routes_by_vehicle.get(v.id)
        planned = [s.job_id for s in route.stops] if route else []
        pinned_left = [j for j in v.pinned if j not in done and j not in current_of]
        head = ([st.current] if st.current else []) + pinned_left
        rest = [j for j in planned
                if j in new_jobs and j not in current_of and j not in head]
        sequence = [new_jobs[j] for j in head + rest]
        if st.away:
            left = st.left_home_at if st.left_home_at is not None else v.shift_start
            shift_end = v.shift_end
            if v.max_duration is not None:
                shift_end = min(shift_end, left + v.max_duration)
            if st.on_site:
                start, free = new_jobs[st.current].location, now
            else:
                start = st.position if st.position is not None else _start(v)
                free = max(now, st.free_at) if st.free_at is not None else now
            nv = dataclasses.replace(v, start=start, shift_start=free,
                                     shift_end=max(shift_end, free), max_duration=None,
                                     pinned=tuple(head))
            needed = _simulate(start, _end(nv), free, sequence[:len(head)]).end_time
            if head and needed > nv.shift_end:
                nv = dataclasses.replace(nv, shift_end=needed)
            carried.append((nv, sequence, free))
        else:
            begin = max(v.shift_start, now)
            nv = dataclasses.replace(v, shift_start=begin, shift_end=max(v.shift_end, begin),
                                     pinned=tuple(head))
            # The route has not started: it keeps its departure while that is still ahead.
            keep = (route.start_time if route is not None
                    and route.start_time >= nv.shift_start else None)
            carried.append((nv, sequence, keep))
        new_vehicles.append(nv)

    new_instance = RoutingInstance(
        name=f"{instance.name}@{now:g}", depot=instance.depot, jobs=tuple(new_jobs.values()),
        vehicles=tuple(new_vehicles),
        meta={**instance.meta, "now": now, "live_of": instance.name})

    routes: list[Route] = []
    dropped: list[Unassigned] = []
    for nv, sequence, depart in carried:
        sequence = list(sequence)
        while True:
            at = depart if depart is not None else _latest_departure(
                nv, sequence, nv.shift_start)
            sched = _simulate(_start(nv), _end(nv), at, sequence)
            if _route_ok(nv, sequence, at, sched):
                break
            depart = None
            fixed = len(nv.pinned)
            late = next((i for i in range(fixed, len(sequence))
                         if sched.begins[i] > sequence[i].due + EPS), None)
            if late is not None:
                dropped.append(Unassigned(sequence.pop(late).id, REASON_TIME_WINDOW))
            elif len(sequence) > fixed:
                dropped.append(Unassigned(sequence.pop().id, REASON_NO_ROOM))
            else:  # only work under way is left, and its bounds were widened to fit it
                break
        routes.append(Route(nv.id, at, _stops(sequence, sched), sched.distance))

    routed = {s.job_id for r in routes for s in r.stops}
    reasons = {u.job_id: u.reason for u in plan.unassigned}
    reasons.update({u.job_id: u.reason for u in dropped})
    unassigned = [Unassigned(j, reasons.get(j, REASON_NO_ROOM))
                  for j in new_jobs if j not in routed]
    carried_plan = _result(routes, unassigned, "carried")
    return LivePlan(now, new_instance, carried_plan, tuple(sorted(done)), tuple(dropped))


# --- cheapest insertion of one job ---------------------------------------------------------

@dataclass
class _Candidates:
    """One row per (vehicle, position) where the new job may go: insert after stop `position`
    (0 = straight from the start). Slack terms follow Savelsbergh's forward time slack with
    waiting: G_i = due_i - begin_i + W_i, W_i = waiting up to and including stop i."""

    vehicle: np.ndarray        # index into the instance's vehicles
    position: np.ndarray
    from_xy: np.ndarray        # node before the gap
    to_xy: np.ndarray          # node after the gap (the route's end for the last gap)
    depart: np.ndarray         # when the vehicle leaves the node before the gap
    arrive_next: np.ndarray    # when it now reaches the node after the gap
    wait_before: np.ndarray    # W up to the node before the gap
    slack_after: np.ndarray    # min G over later stops and the route end (shift end)
    slack_before: np.ndarray   # min G over earlier stops (inf if none)
    base_leg: np.ndarray       # the leg the new job splits (0 for an empty route)
    # Per-vehicle figures, repeated on each row.
    earliest: np.ndarray       # departure the schedule was computed from
    end_time: np.ndarray
    wait_total: np.ndarray
    max_duration: np.ndarray   # inf when unlimited
    flexible: np.ndarray       # departure may still move later (route not started by `now`)
    n_stops: np.ndarray
    load: np.ndarray


def _candidates(vehicles: tuple[Vehicle, ...], indices: list[int],
                routes: Mapping[str, Route], jobs_by_id: Mapping[str, Job], now: float,
                alone: bool = False) -> _Candidates:
    """Rows for the vehicles in `indices`. `alone`: pretend each route ends right after the
    first position open to insertion (used to explain why a job fits nowhere)."""
    rows: dict[str, list] = {name: [] for name in (
        "position", "from_xy", "to_xy", "depart", "arrive_next", "wait_before", "slack_after",
        "slack_before", "base_leg")}
    per_vehicle: dict[str, list] = {name: [] for name in (
        "vehicle", "earliest", "end_time", "wait_total", "max_duration", "flexible", "n_stops",
        "load")}
    counts: list[int] = []
    for k in indices:
        v = vehicles[k]
        route = routes.get(v.id)
        stops = route.stops if route is not None else ()
        departed = bool(stops) and route.start_time < now - EPS
        e = route.start_time if departed else max(v.shift_start, now)
        jobs = [jobs_by_id[s.job_id] for s in stops]
        xs, deps, arrs, waits, gs = [_start(v)], [e], [], [0.0], []
        t, pos, w_cum = e, _start(v), 0.0
        for job in jobs:
            a = t + _dist(pos, job.location)
            b = max(a, job.ready)
            w_cum += b - a
            t, pos = b + job.service, job.location
            xs.append(pos)
            deps.append(t)
            arrs.append(a)
            waits.append(w_cum)
            gs.append(job.due - b + w_cum)
        first = len(v.pinned)
        if departed:  # never into a leg already driven
            while first <= len(jobs) and deps[first] < now - EPS:
                first += 1
        if alone and first <= len(jobs):
            xs, deps, waits, gs = xs[:first + 1], deps[:first + 1], waits[:first + 1], gs[:first]
            jobs = jobs[:first]
            t, pos, w_cum = deps[-1], xs[-1], waits[-1]
        n = len(jobs)
        if first > n:
            continue
        end_time = t + _dist(pos, _end(v)) if jobs else e
        arrs = arrs[:n] + [end_time]
        gs.append(v.shift_end - end_time + w_cum)
        suffix = gs[:]                       # suffix[i] = min(gs[i:])
        for i in range(n - 1, -1, -1):
            suffix[i] = min(suffix[i], suffix[i + 1])
        prefix = [math.inf] * (n + 1)        # prefix[i] = min(gs[:i])
        for i in range(1, n + 1):
            prefix[i] = min(prefix[i - 1], gs[i - 1])
        nexts = xs[1:] + [_end(v)]
        rows["position"].extend(range(first, n + 1))
        rows["from_xy"].extend(xs[first:])
        rows["to_xy"].extend(nexts[first:])
        rows["depart"].extend(deps[first:])
        rows["arrive_next"].extend(arrs[first:])
        rows["wait_before"].extend(waits[first:])
        rows["slack_after"].extend(suffix[first:])
        rows["slack_before"].extend(prefix[first:])
        rows["base_leg"].extend([_dist(a, b) for a, b in zip(xs[first:], nexts[first:],
                                                              strict=True)] if n else [0.0])
        counts.append(n + 1 - first)
        per_vehicle["vehicle"].append(k)
        per_vehicle["earliest"].append(e)
        per_vehicle["end_time"].append(end_time)
        per_vehicle["wait_total"].append(w_cum)
        per_vehicle["max_duration"].append(
            math.inf if v.max_duration is None else v.max_duration)
        per_vehicle["flexible"].append(not departed)
        per_vehicle["n_stops"].append(n)
        per_vehicle["load"].append(sum(j.demand for j in jobs))
    arrays = {}
    for name, values in rows.items():
        if name in ("from_xy", "to_xy"):
            arrays[name] = np.asarray(values, dtype=float).reshape(-1, 2)
        else:
            arrays[name] = np.asarray(values, dtype=np.int64 if name == "position" else float)
    for name, values in per_vehicle.items():
        dtype = {"vehicle": np.int64, "n_stops": np.int64, "load": np.int64,
                 "flexible": bool}.get(name, float)
        arrays[name] = np.repeat(np.asarray(values, dtype=dtype), counts)
    return _Candidates(**arrays)


@dataclass
class _Evaluation:
    window_ok: np.ndarray      # the new job's own window
    later_ok: np.ndarray       # later stops' windows and the shift end
    duration_ok: np.ndarray
    start: np.ndarray          # the new job's service start (after any forced later departure)
    detour: np.ndarray
    delay: np.ndarray          # departure delay the duration limit forces
    room: np.ndarray           # most departure delay that keeps every window and the end time
    wait_to_job: np.ndarray

    @property
    def feasible(self) -> np.ndarray:
        return self.window_ok & self.later_ok & self.duration_ok


def _evaluate(c: _Candidates, job: Job, now: float) -> _Evaluation:
    """All candidate positions at once; see `_Candidates` for the slack terms."""
    u = np.asarray(job.location, dtype=float)
    leg_in = np.hypot(*(c.from_xy - u).T)
    leg_out = np.hypot(*(u - c.to_xy).T)
    arrive = c.depart + leg_in
    begin = np.maximum(arrive, max(job.ready, now))
    wait = begin - arrive
    window_ok = begin <= job.due + EPS
    # Push-forward at the next node; by the triangle inequality it is never negative (but
    # for rounding), and the waiting downstream absorbs it before anything moves.
    push = np.maximum(0.0, begin + job.service + leg_out - c.arrive_next)
    later_ok = push <= c.slack_after - c.wait_before + EPS
    wait_after = c.wait_total - c.wait_before
    end_time = c.end_time + np.maximum(0.0, push - wait_after)
    wait_to_job = c.wait_before + wait
    wait_total = wait_to_job + np.maximum(0.0, wait_after - push)
    with np.errstate(invalid="ignore"):
        slack0 = np.minimum(np.minimum(c.slack_before, job.due - begin + wait_to_job),
                            c.slack_after + wait - push)
        room = np.where(c.flexible, np.minimum(wait_total, slack0), 0.0)
        delay = np.maximum(0.0, end_time - c.earliest - c.max_duration)
    duration_ok = delay <= room + EPS
    start = begin + np.maximum(0.0, delay - wait_to_job)
    detour = leg_in + leg_out - c.base_leg
    return _Evaluation(window_ok, later_ok, duration_ok, start, detour, delay, room,
                       wait_to_job)


def _order(c: _Candidates, ev: _Evaluation, objective: str) -> np.ndarray:
    """Feasible rows best first; near-equal times or distances (1e-6) count as ties."""
    rows = np.flatnonzero(ev.feasible)
    start = np.round(ev.start[rows], 6)
    detour = np.round(ev.detour[rows], 6)
    primary, secondary = (start, detour) if objective == "earliest_start" else (detour, start)
    return rows[np.lexsort((c.position[rows], c.vehicle[rows], secondary, primary))]


def insert_job(instance: RoutingInstance, plan: RoutingResult, job: Job,
               now: float | None = None, objective: str = "earliest_start") -> Insertion:
    """Insert `job` into `plan` at the best feasible place, moving no other job.

    `objective`: "earliest_start" (urgent jobs: earliest service start, then least added
    distance) or "least_detour" (the reverse). `now` defaults to the `now` a `live_problem`
    instance records, else no clock limit. Checks time windows of every later stop, shift end,
    `max_duration`, `max_jobs`, capacity and skills.
    """
    if objective not in OBJECTIVES:
        raise InvalidReplanInputError(f"objective must be one of {OBJECTIVES}")
    if now is None:
        now = instance.meta.get("now", -math.inf)
    jobs_by_id = {j.id: j for j in instance.jobs}
    if job.id in jobs_by_id:
        raise InvalidReplanInputError(f"job id {job.id!r} is already in the instance")
    new_instance = dataclasses.replace(instance, jobs=instance.jobs + (job,),
                                       meta=dict(instance.meta))
    vehicles = _resolve(instance)
    routes = {r.vehicle_id: r for r in plan.routes}
    for r in plan.routes:
        for s in r.stops:
            if s.job_id not in jobs_by_id:
                raise InvalidReplanInputError(f"plan routes unknown job {s.job_id!r}")

    def fits(k: int) -> bool:
        v = vehicles[k]
        if not job.skills <= v.skills or job.demand > v.capacity:
            return False
        r = routes.get(v.id)
        if r is None:
            return v.max_jobs is None or v.max_jobs >= 1
        if v.max_jobs is not None and len(r.stops) + 1 > v.max_jobs:
            return False
        return not job.demand or (sum(jobs_by_id[s.job_id].demand for s in r.stops)
                                  + job.demand <= v.capacity)

    eligible = [k for k in range(len(vehicles)) if fits(k)]
    cands = _candidates(vehicles, eligible, routes, jobs_by_id, now)
    ev = _evaluate(cands, job, now)
    for row in _order(cands, ev, objective):
        k, p = int(cands.vehicle[row]), int(cands.position[row])
        v = vehicles[k]
        old = routes.get(v.id)
        sequence = [jobs_by_id[s.job_id] for s in old.stops] if old is not None else []
        sequence.insert(p, job)
        delay = float(ev.delay[row])
        if cands.flexible[row] and not v.pinned:
            # Leave as late as the new job's start allows: less idle time, same promise.
            delay = max(delay, min(float(ev.wait_to_job[row]), float(ev.room[row])))
        depart = float(cands.earliest[row]) + delay
        sched = _simulate(_start(v), _end(v), depart, sequence)
        if not _route_ok(v, sequence, depart, sched) or sched.begins[p] < now - EPS:
            continue  # rounding disagreed with the slack arithmetic; take the next best
        new_route = Route(v.id, depart, _stops(sequence, sched), sched.distance)
        new_routes = [new_route if r.vehicle_id == v.id else r for r in plan.routes]
        if old is None:
            new_routes.append(new_route)
        added = sched.distance - (old.distance if old is not None else 0.0)
        result = RoutingResult(tuple(new_routes), plan.unassigned,
                               math.fsum(r.distance for r in new_routes), 0.0, "inserted")
        return Insertion(new_instance, result, job.id, v.id, p, sched.begins[p], added)
    reason = _why_not(vehicles, routes, jobs_by_id, job, now)
    result = dataclasses.replace(plan, unassigned=plan.unassigned + (Unassigned(job.id, reason),),
                                 status="inserted")
    return Insertion(new_instance, result, job.id, None, None, None, None, reason)


def _why_not(vehicles: tuple[Vehicle, ...], routes: Mapping[str, Route],
             jobs_by_id: Mapping[str, Job], job: Job, now: float) -> str:
    """The reason constant of `alliance.routing` that explains a failed insertion.

    No qualified electrician → skills; none large enough → capacity; none could reach it in
    its window even with nothing else to do after the work under way → time window; places
    exist in time but every one breaks a job count or duration limit → workload; otherwise the
    running plan is in the way → no room.
    """
    skilled = [k for k, v in enumerate(vehicles) if job.skills <= v.skills]
    if not skilled:
        return REASON_NO_SKILLED_VEHICLE
    sized = [k for k in skilled if job.demand <= vehicles[k].capacity]
    if not sized:
        return REASON_OVER_CAPACITY
    alone = _candidates(vehicles, sized, routes, jobs_by_id, now, alone=True)
    ev = _evaluate(alone, job, now)
    if not (ev.window_ok & ev.later_ok).any():
        return REASON_TIME_WINDOW
    full = _candidates(vehicles, sized, routes, jobs_by_id, now)
    ev = _evaluate(full, job, now)
    timely = ev.window_ok & ev.later_ok
    if not timely.any():
        return REASON_NO_ROOM
    max_jobs = np.asarray([math.inf if vehicles[k].max_jobs is None else vehicles[k].max_jobs
                           for k in full.vehicle], dtype=float)
    capacity = np.asarray([vehicles[k].capacity for k in full.vehicle], dtype=float)
    load_ok = full.load + job.demand <= capacity
    workload_ok = ev.duration_ok & (full.n_stops + 1 <= max_jobs)
    if (timely & load_ok & ~workload_ok).any():
        return REASON_WORKLOAD
    return REASON_NO_ROOM


# --- short re-optimisation -------------------------------------------------------------------

def reoptimise(instance: RoutingInstance, plan: RoutingResult, seconds: float,
               options: SearchOptions | None = None) -> RoutingResult:
    """A short improvement of `plan` by `alliance.routing.solve(..., initial=plan)`, OR-Tools
    unless `options` names another engine; pins are kept (they are solver constraints).
    Returns the solver's plan only when it passes the checker, serves every job `plan` serves
    and serves more or drives less; otherwise `plan` itself."""
    opts = dataclasses.replace(options or SearchOptions(engine="ortools"), time_limit_s=seconds)
    candidate = _settle_pinned(instance, solve(instance, opts, initial=plan))
    if not check_plan(instance, candidate).ok:
        return plan
    served = {s.job_id for r in plan.routes for s in r.stops}
    served_new = {s.job_id for r in candidate.routes for s in r.stops}
    if not served <= served_new:
        return plan
    if len(served_new) > len(served) or candidate.total_distance < plan.total_distance - 1e-9:
        return candidate
    return plan


def _settle_pinned(instance: RoutingInstance, result: RoutingResult) -> RoutingResult:
    """Work under way starts now: the solver may report a later departure for an electrician
    with pinned jobs (it maximises departures); put it back to the earliest one when that keeps
    the route feasible (it always does without a duration limit)."""
    vehicles = {v.id: v for v in _resolve(instance)}
    jobs_by_id = {j.id: j for j in instance.jobs}
    routes = []
    changed = False
    for r in result.routes:
        v = vehicles.get(r.vehicle_id)
        if v is None or not v.pinned or not r.stops or r.start_time <= v.shift_start:
            routes.append(r)
            continue
        sequence = [jobs_by_id[s.job_id] for s in r.stops]
        sched = _simulate(_start(v), _end(v), v.shift_start, sequence)
        if _route_ok(v, sequence, v.shift_start, sched):
            routes.append(_route(v, sequence, v.shift_start))
            changed = True
        else:
            routes.append(r)
    if not changed:
        return result
    return dataclasses.replace(result, routes=tuple(routes),
                               total_distance=math.fsum(r.distance for r in routes))
