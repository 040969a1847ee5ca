"""Plain routing problem model (jobs, vehicles, depot) and a reader for Solomon/Homberger files.

Coordinates are planar; travel time equals Euclidean distance (speed 1), the convention of
the Solomon and Gehring–Homberger VRPTW benchmarks. Times are in the instance's own unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from alliance.errors import InvalidRoutingInstanceError, RoutingError  # noqa: F401  (re-exported)

Point = tuple[float, float]


@dataclass(frozen=True)
class Job:
    """A visit: where, how much load it takes, when service may start, how long it lasts."""

    id: str
    location: Point
    demand: int = 0
    ready: float = 0.0
    due: float = math.inf
    service: float = 0.0
    skills: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Vehicle:
    """A vehicle or an electrician: capacity, shift (working time window), skills, limits.

    `start`/`end` default to the instance's depot. `max_duration` bounds the time from leaving
    `start` to arriving at `end`; `max_jobs` bounds the number of visits (workload limits).
    `pinned` names jobs this vehicle must visit first, in this order (live re-planning: the
    job an electrician is already travelling to or working on stays where it is).
    """

    id: str
    capacity: int = 0
    shift_start: float = 0.0
    shift_end: float = math.inf
    skills: frozenset[str] = frozenset()
    start: Point | None = None
    end: Point | None = None
    max_duration: float | None = None
    max_jobs: int | None = None
    pinned: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoutingInstance:
    """A capacitated VRP with time windows, service times and optional field-service rules."""

    name: str
    depot: Point
    jobs: tuple[Job, ...]
    vehicles: tuple[Vehicle, ...]
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        validate_instance(self)

    def vehicle_start(self, vehicle: Vehicle) -> Point:
        return vehicle.start if vehicle.start is not None else self.depot

    def vehicle_end(self, vehicle: Vehicle) -> Point:
        return vehicle.end if vehicle.end is not None else self.depot


def _finite_point(p: Point) -> bool:
    return len(p) == 2 and all(isinstance(c, (int, float)) and math.isfinite(c) for c in p)


def validate_instance(instance: RoutingInstance) -> None:
    """Raise `InvalidRoutingInstanceError` naming the first problem found."""
    if not _finite_point(instance.depot):
        raise InvalidRoutingInstanceError(f"depot has invalid coordinates {instance.depot!r}")
    seen: set[str] = set()
    for job in instance.jobs:
        if job.id in seen:
            raise InvalidRoutingInstanceError(f"job id {job.id!r} appears twice")
        seen.add(job.id)
        if not _finite_point(job.location):
            raise InvalidRoutingInstanceError(f"job {job.id!r} has invalid coordinates")
        if job.demand < 0 or job.service < 0:
            raise InvalidRoutingInstanceError(f"job {job.id!r} has negative demand or service")
        if job.due < job.ready:
            raise InvalidRoutingInstanceError(f"job {job.id!r}: time window ends before it starts")
    vseen: set[str] = set()
    pinned: set[str] = set()
    by_id = {job.id: job for job in instance.jobs}
    for v in instance.vehicles:
        for job_id in v.pinned:
            if job_id not in seen:
                raise InvalidRoutingInstanceError(f"vehicle {v.id!r} pins unknown job {job_id!r}")
            if job_id in pinned:
                raise InvalidRoutingInstanceError(f"job {job_id!r} is pinned twice")
            pinned.add(job_id)
            if not by_id[job_id].skills <= v.skills:
                raise InvalidRoutingInstanceError(
                    f"vehicle {v.id!r} pins job {job_id!r} without its skills")
        if v.id in vseen:
            raise InvalidRoutingInstanceError(f"vehicle id {v.id!r} appears twice")
        vseen.add(v.id)
        if v.capacity < 0:
            raise InvalidRoutingInstanceError(f"vehicle {v.id!r} has negative capacity")
        if v.shift_end < v.shift_start:
            raise InvalidRoutingInstanceError(f"vehicle {v.id!r}: shift ends before it starts")
        for p in (v.start, v.end):
            if p is not None and not _finite_point(p):
                raise InvalidRoutingInstanceError(f"vehicle {v.id!r} has invalid coordinates")
        if v.max_duration is not None and v.max_duration < 0:
            raise InvalidRoutingInstanceError(f"vehicle {v.id!r} has a negative max_duration")
        if v.max_jobs is not None and v.max_jobs < 0:
            raise InvalidRoutingInstanceError(f"vehicle {v.id!r} has a negative max_jobs")


def read_solomon(path: str | Path) -> RoutingInstance:
    """Read a Solomon or Gehring–Homberger VRPTW file.

    Customer 0 is the depot; its due date becomes every vehicle's shift end. Jobs are named by
    their customer number. The fleet is the file's vehicle number, all of the same capacity.
    """
    path = Path(path)
    lines = [ln.split() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    name = lines[0][0]
    try:
        vi = next(i for i, ln in enumerate(lines) if ln[0].upper() == "VEHICLE")
        n_vehicles, capacity = int(lines[vi + 2][0]), int(lines[vi + 2][1])
        rows = [ln for ln in lines[vi + 3:] if ln[0].lstrip("-").isdigit() and len(ln) >= 7]
    except (StopIteration, IndexError, ValueError) as exc:
        raise InvalidRoutingInstanceError(f"{path.name}: not a Solomon-format file") from exc
    if not rows or int(rows[0][0]) != 0:
        raise InvalidRoutingInstanceError(f"{path.name}: depot (customer 0) missing")
    numbers = [[float(c) for c in r[:7]] for r in rows]
    depot_row = numbers[0]
    depot = (depot_row[1], depot_row[2])
    jobs = tuple(
        Job(id=str(int(r[0])), location=(r[1], r[2]), demand=int(r[3]), ready=r[4], due=r[5],
            service=r[6])
        for r in numbers[1:])
    vehicles = tuple(
        Vehicle(id=f"v{k + 1}", capacity=capacity, shift_start=depot_row[4],
                shift_end=depot_row[5])
        for k in range(n_vehicles))
    return RoutingInstance(name=name, depot=depot, jobs=jobs, vehicles=vehicles,
                           meta={"source": path.name})
