"""The PyVRP engine of `alliance.routing`: the same model, PyVRP's iterated local search.

Mapping (all integers, scaled as in `alliance.routing`):
- every job and every distinct vehicle start/end point is a location; start/end points are
  depots; jobs are optional clients whose prize outweighs any detour, so a job is left out
  only when no feasible place for it is found;
- vehicles with the same start, end, shift, limits and skills form one vehicle type;
- skills: one routing profile per distinct skill set, in which a visit needing a skill the
  profile lacks takes longer than any shift (so it can never be part of a feasible route);
- workload: `max_jobs` is a second load dimension (each visit loads 1), `max_duration` the
  shift duration;
- pinned jobs are done first, in order, from the vehicle's start: the vehicle then starts
  where the last of them is, when it is finished, with what capacity and workload are left.
Routes are re-timed in exact doubles from the solver's departure time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pyvrp
from pyvrp.stop import MaxRuntime

from alliance.instances import RoutingInstance, Vehicle
from alliance.routing import (
    HORIZON_CAP,
    REASON_NO_ROOM,
    SCALE,
    Nodes,
    Route,
    RoutingResult,
    SearchOptions,
    Stop,
    Unassigned,
    scaled,
)

# A visit a vehicle must not make takes this long (scaled): beyond any shift.
_UNREACHABLE = 4 * HORIZON_CAP


@dataclass(frozen=True)
class _Free:
    """Where and when a vehicle is free once its pinned jobs are done, and what is left."""

    node: int
    at: float
    capacity: int
    max_jobs: int | None
    max_duration: float | None


def _after_pins(instance: RoutingInstance, nodes: Nodes, k: int, index: dict[str, int]) -> _Free:
    v = instance.vehicles[k]
    node, t, load = nodes.starts[k], v.shift_start, 0
    for job_id in v.pinned:
        j = index[job_id]
        job = instance.jobs[j]
        t = max(t + float(nodes.dist[node, j]), job.ready) + job.service
        node, load = j, load + job.demand
    used = t - v.shift_start
    return _Free(
        node, t, max(0, v.capacity - load),
        None if v.max_jobs is None else max(0, v.max_jobs - len(v.pinned)),
        None if v.max_duration is None else max(0.0, v.max_duration - used))


class _FirstFeasible:
    """Stops at the time limit; notes when the first feasible plan appeared."""

    def __init__(self, seconds: float, t0: float) -> None:
        self._limit = MaxRuntime(max(0.01, seconds))
        self._t0 = t0
        self.first_s: float | None = None

    def __call__(self, best_cost: int) -> bool:
        if self.first_s is None and best_cost < _UNREACHABLE:
            self.first_s = time.perf_counter() - self._t0
        return self._limit(best_cost)


def solve(instance: RoutingInstance, nodes: Nodes, reasons: dict[int, str],
          options: SearchOptions, initial: RoutingResult | None, t0: float) -> RoutingResult:
    jobs, vehicles = instance.jobs, instance.vehicles
    index = {job.id: j for j, job in enumerate(jobs)}
    pinned = {job_id for v in vehicles for job_id in v.pinned}
    free = [_after_pins(instance, nodes, k, index) for k in range(len(vehicles))]
    planned = [j for j, job in enumerate(jobs) if j not in reasons and job.id not in pinned]
    with_visits = any(v.max_jobs is not None for v in vehicles)

    # Depots: every node a vehicle starts (after its pins) or ends at.
    depot_nodes = sorted({f.node for f in free} | set(nodes.ends))
    depot_of = {n: d for d, n in enumerate(depot_nodes)}
    location_of = depot_nodes + planned  # PyVRP location order: depots, then clients
    client_of = {j: c for c, j in enumerate(planned)}

    skill_sets = sorted({v.skills for v in vehicles}, key=sorted)
    profile_of = {skills: p for p, skills in enumerate(skill_sets)}

    dist = nodes.dist[np.ix_(location_of, location_of)]
    distance = np.rint(dist * SCALE).astype(np.int64)
    travel = np.ceil(dist * SCALE - 1e-9).astype(np.int64)
    durations = []
    for skills in skill_sets:
        matrix = travel.copy()
        unfit = [len(depot_nodes) + c for c, j in enumerate(planned)
                 if not jobs[j].skills <= skills]
        matrix[:, unfit] = _UNREACHABLE
        np.fill_diagonal(matrix, 0)
        durations.append(matrix)

    prize = int(distance.max(initial=0)) * 4 * (len(jobs) + 1) + 1
    clients = [
        pyvrp.Client(
            location=len(depot_nodes) + c,
            delivery=[jobs[j].demand, 1] if with_visits else [jobs[j].demand],
            service_duration=scaled(jobs[j].service, math.ceil),
            tw_early=scaled(jobs[j].ready, math.ceil),
            tw_late=min(HORIZON_CAP, scaled(jobs[j].due)),
            required=False, prize=prize)
        for c, j in enumerate(planned)]
    depots = [pyvrp.Depot(location=d) for d in range(len(depot_nodes))]

    type_of_vehicle: list[int] = []
    type_keys: dict[tuple, int] = {}
    for k, v in enumerate(vehicles):
        f = free[k]
        key = (depot_of[f.node], depot_of[nodes.ends[k]], f.capacity, f.max_jobs,
               scaled(f.at, math.ceil), min(HORIZON_CAP, scaled(v.shift_end)),
               HORIZON_CAP if f.max_duration is None else scaled(f.max_duration),
               profile_of[v.skills], bool(v.pinned))
        type_of_vehicle.append(type_keys.setdefault(key, len(type_keys)))
    counts = [type_of_vehicle.count(t) for t in range(len(type_keys))]
    vehicle_types = [
        pyvrp.VehicleType(
            num_available=counts[t], start_depot=start, end_depot=end,
            capacity=[cap, len(jobs) if max_jobs is None else max_jobs] if with_visits else [cap],
            tw_early=early, tw_late=late, shift_duration=duration, profile=profile,
            # After pinned work the vehicle leaves at once: its workload clock is running.
            start_late=early if pinned else None)
        for (start, end, cap, max_jobs, early, late, duration, profile, pinned), t
        in sorted(type_keys.items(), key=lambda kv: kv[1])]

    routes: list[list[int]] = [[] for _ in vehicles]
    departures: list[float | None] = [None] * len(vehicles)
    first_s = None
    status = "success"
    if clients:
        data = pyvrp.ProblemData(
            locations=[pyvrp.Location(x=x, y=y) for x, y in nodes.xy[location_of] * SCALE],
            clients=clients, depots=depots, vehicle_types=vehicle_types,
            distance_matrices=[distance] * len(skill_sets), duration_matrices=durations)
        stop = _FirstFeasible(options.time_limit_s - (time.perf_counter() - t0), t0)
        start = _initial_solution(data, initial, index, client_of, type_of_vehicle, vehicles)
        result = pyvrp.solve(data, stop=stop, seed=options.seed, collect_stats=False,
                             initial_solution=start)
        first_s = stop.first_s
        if result.best.is_feasible():
            slots = {t: [k for k, tv in enumerate(type_of_vehicle) if tv == t]
                     for t in range(len(type_keys))}
            for route in result.best.routes():
                k = slots[route.vehicle_type()].pop(0)
                routes[k] = [planned[a.idx] for a in route if a.is_client()]
                departures[k] = route.start_time() / SCALE
        else:
            status = "fail"
    elif vehicles:
        first_s = time.perf_counter() - t0

    out, served = [], set()
    for k, v in enumerate(vehicles):
        order = [index[job_id] for job_id in v.pinned] + routes[k]
        served.update(order)
        out.append(_timed_route(instance, nodes, k, v, order, departures[k]))
    unassigned = tuple(Unassigned(job.id, reasons.get(j, REASON_NO_ROOM))
                       for j, job in enumerate(jobs) if j not in served)
    total = math.fsum(r.distance for r in out)
    return RoutingResult(tuple(out), unassigned, total, time.perf_counter() - t0, status,
                         first_s)


def _initial_solution(data, initial: RoutingResult | None, index: dict[str, int],
                      client_of: dict[int, int], type_of_vehicle: list[int],
                      vehicles: tuple[Vehicle, ...]):
    """The given plan as a PyVRP solution (pinned and unknown jobs dropped), or None."""
    if initial is None:
        return None
    k_of = {v.id: k for k, v in enumerate(vehicles)}
    routes = []
    for route in initial.routes:
        k = k_of.get(route.vehicle_id)
        visits = [client_of[index[s.job_id]] for s in route.stops
                  if s.job_id in index and index[s.job_id] in client_of]
        if k is not None and visits:
            routes.append(pyvrp.Route(data, visits, type_of_vehicle[k]))
    try:
        return pyvrp.Solution(data, routes)
    except (ValueError, IndexError, RuntimeError):
        return None


def _timed_route(instance: RoutingInstance, nodes: Nodes, k: int, v: Vehicle,
                 order: list[int], departure: float | None) -> Route:
    """Service starts in exact doubles, leaving when the solver's schedule leaves (exact
    travel is never longer than the solver's rounded-up travel, so every visit and the
    return happen no later than the solver planned them). Pinned routes leave at the shift
    start."""
    if not order:
        return Route(v.id, v.shift_start, (), 0.0)
    start = v.shift_start if v.pinned or departure is None else max(v.shift_start, departure)
    t, node, dist, stops = start, nodes.starts[k], 0.0, []
    for j in order:
        leg = float(nodes.dist[node, j])
        dist += leg
        begin = max(t + leg, instance.jobs[j].ready)
        stops.append(Stop(instance.jobs[j].id, begin))
        t, node = begin + instance.jobs[j].service, j
    dist += float(nodes.dist[node, nodes.ends[k]])
    return Route(v.id, start, tuple(stops), dist)
