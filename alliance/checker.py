"""Solver-independent check of a routing plan against its instance, in exact doubles.

It re-simulates every route from the route's start time (waiting allowed when early) and
reports each broken rule: jobs missing, visited twice or unknown, late service starts,
capacity, shift start/end, skills, workload limits, pinned jobs not opening their vehicle's
route in order, and a reported distance that does not match the recomputed Euclidean total.
It imports nothing from the solver module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from alliance.instances import RoutingInstance

EPS = 1e-6


class _Stop(Protocol):
    job_id: str


class _Route(Protocol):
    vehicle_id: str
    start_time: float
    stops: Sequence[_Stop]


class _Unassigned(Protocol):
    job_id: str


class _Plan(Protocol):
    routes: Sequence[_Route]
    unassigned: Sequence[_Unassigned]
    total_distance: float


@dataclass(frozen=True)
class Violation:
    kind: str
    subject: str
    detail: str


@dataclass(frozen=True)
class PlanCheck:
    violations: tuple[Violation, ...]
    total_distance: float
    served: int

    @property
    def ok(self) -> bool:
        return not self.violations

    def kinds(self) -> set[str]:
        return {v.kind for v in self.violations}


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.sqrt((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2)


def check_plan(instance: RoutingInstance, plan: _Plan, distance_tol: float = 1e-6) -> PlanCheck:
    """Check `plan` (anything with routes/unassigned/total_distance) against `instance`."""
    jobs = {j.id: j for j in instance.jobs}
    vehicles = {v.id: v for v in instance.vehicles}
    out: list[Violation] = []
    seen: dict[str, int] = {}
    used_vehicles: set[str] = set()
    total = 0.0

    for route in plan.routes:
        v = vehicles.get(route.vehicle_id)
        if v is None:
            out.append(Violation("unknown_vehicle", route.vehicle_id, "not in the instance"))
            continue
        if route.vehicle_id in used_vehicles:
            out.append(Violation("vehicle_twice", v.id, "vehicle has two routes"))
        used_vehicles.add(v.id)
        head = tuple(s.job_id for s in route.stops[:len(v.pinned)])
        if head != v.pinned:
            out.append(Violation("pinned", v.id, f"route opens with {list(head)}, "
                                 f"pinned {list(v.pinned)}"))
        if not route.stops:
            continue
        t = route.start_time
        if t < v.shift_start - EPS:
            out.append(Violation("shift_start", v.id, f"leaves at {t:.3f} before shift "
                                 f"start {v.shift_start}"))
        pos = instance.vehicle_start(v)
        load, dist = 0, 0.0
        for stop in route.stops:
            job = jobs.get(stop.job_id)
            if job is None:
                out.append(Violation("unknown_job", stop.job_id, f"on route of {v.id}"))
                continue
            seen[job.id] = seen.get(job.id, 0) + 1
            leg = _dist(pos, job.location)
            dist += leg
            arrival = t + leg
            begin = max(arrival, job.ready)
            if begin > job.due + EPS:
                out.append(Violation("late_arrival", job.id, f"{v.id} starts service at "
                                     f"{begin:.3f} after due {job.due}"))
            if not job.skills <= v.skills:
                out.append(Violation("skill_mismatch", job.id, f"{v.id} lacks "
                                     f"{sorted(job.skills - v.skills)}"))
            load += job.demand
            t = begin + job.service
            pos = job.location
        if load > v.capacity:
            out.append(Violation("over_capacity", v.id, f"load {load} > capacity {v.capacity}"))
        back = _dist(pos, instance.vehicle_end(v))
        dist += back
        t += back
        if t > v.shift_end + EPS:
            out.append(Violation("shift_end", v.id, f"returns at {t:.3f} after shift end "
                                 f"{v.shift_end}"))
        if v.max_duration is not None and t - route.start_time > v.max_duration + EPS:
            out.append(Violation("workload", v.id, f"works {t - route.start_time:.3f} > "
                                 f"{v.max_duration}"))
        if v.max_jobs is not None and len(route.stops) > v.max_jobs:
            out.append(Violation("workload", v.id, f"{len(route.stops)} jobs > {v.max_jobs}"))
        total += dist

    listed = [u.job_id for u in plan.unassigned]
    for job_id in listed:
        if job_id not in jobs:
            out.append(Violation("unknown_job", job_id, "listed unassigned"))
        seen[job_id] = seen.get(job_id, 0) + 1
    for job_id, count in seen.items():
        if count > 1 and job_id in jobs:
            out.append(Violation("double_visit", job_id, f"appears {count} times"))
    routed = {r.vehicle_id for r in plan.routes}
    for v in instance.vehicles:
        if v.pinned and v.id not in routed:
            out.append(Violation("pinned", v.id, f"no route, pinned {list(v.pinned)}"))
    for job_id in jobs:
        if job_id not in seen:
            out.append(Violation("missing_job", job_id, "neither routed nor listed unassigned"))
    if abs(total - plan.total_distance) > distance_tol * max(1.0, total):
        out.append(Violation("distance_mismatch", "plan", f"reported {plan.total_distance:.6f}"
                             f", recomputed {total:.6f}"))
    served = sum(1 for r in plan.routes for s in r.stops if s.job_id in jobs)
    return PlanCheck(tuple(out), total, served)
