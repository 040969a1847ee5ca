"""Vehicle routing with time windows: capacities, service times, skills, shifts, workload
limits, pinned jobs; minimises total Euclidean distance and explains every job it leaves out.

Two search engines work on the same model and answer in the same result type:
- `"pyvrp"` (default): PyVRP's iterated local search, the stronger search on VRPTW (measured
  in `bench/dispatch.py` against VROOM on the Solomon instances). Skills become one routing
  profile per skill set, in which unskilled visits are unreachable; workload limits become a
  second load dimension; pinned jobs fix where the vehicle starts and when it is free.
- `"ortools"`: OR-Tools' routing library (cheapest insertion + guided local search); kept as
  an independent second engine, used in the tests as a cross-check.

Both work on integers: distances and times are scaled by `SCALE` (costs rounded, travel times
rounded *up*, so a plan feasible for the solver stays feasible in exact arithmetic). Reported
distances and service starts are recomputed as unrounded Euclidean doubles; every plan can be
checked by `alliance.checker`, which shares no code with either engine.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from alliance.instances import RoutingInstance

SCALE = 1000
ENGINES = ("pyvrp", "ortools")
# An unbounded window or shift becomes this horizon (scaled units), well inside int64.
HORIZON_CAP = 10**12

REASON_NO_SKILLED_VEHICLE = "no_vehicle_with_skills"
REASON_OVER_CAPACITY = "demand_exceeds_capacity"
REASON_TIME_WINDOW = "time_window_unreachable"
REASON_WORKLOAD = "exceeds_workload_limit"
REASON_NO_ROOM = "no_room_in_plan"


@dataclass(frozen=True)
class Stop:
    job_id: str
    service_start: float


@dataclass(frozen=True)
class Route:
    vehicle_id: str
    start_time: float
    stops: tuple[Stop, ...]
    distance: float

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(s.job_id for s in self.stops)


@dataclass(frozen=True)
class Unassigned:
    job_id: str
    reason: str


@dataclass(frozen=True)
class RoutingResult:
    routes: tuple[Route, ...]
    unassigned: tuple[Unassigned, ...]
    total_distance: float
    solve_s: float
    status: str
    first_solution_s: float | None = None

    @property
    def vehicles_used(self) -> int:
        return sum(1 for r in self.routes if r.stops)


@dataclass(frozen=True)
class SearchOptions:
    time_limit_s: float = 5.0
    engine: str = "pyvrp"
    seed: int = 1
    first_solution: str = "PARALLEL_CHEAPEST_INSERTION"
    metaheuristic: str = "GUIDED_LOCAL_SEARCH"
    gls_lambda: float | None = None
    log_search: bool = False


def euclid(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def scaled(value: float, rounding=math.floor) -> int:
    """Scale to solver units; upper bounds round down and durations/lower bounds up
    (`rounding=math.ceil`), so the solver never accepts what exact arithmetic refuses."""
    if math.isinf(value):
        return HORIZON_CAP if value > 0 else 0
    return int(rounding(value * SCALE - 1e-9 if rounding is math.ceil else value * SCALE + 1e-9))


class Nodes:
    """Jobs first (node i = job i), then each distinct vehicle start/end location."""

    def __init__(self, instance: RoutingInstance) -> None:
        points = [j.location for j in instance.jobs]
        index: dict[tuple[float, float], int] = {}
        self.starts: list[int] = []
        self.ends: list[int] = []
        for v in instance.vehicles:
            for p, out in ((instance.vehicle_start(v), self.starts),
                           (instance.vehicle_end(v), self.ends)):
                key = (float(p[0]), float(p[1]))
                if key not in index:
                    index[key] = len(points)
                    points.append(key)
                out.append(index[key])
        xy = np.asarray(points, dtype=float).reshape(-1, 2)
        diff = xy[:, None, :] - xy[None, :, :]
        self.xy = xy
        self.dist = np.sqrt((diff ** 2).sum(axis=2))
        self.count = len(points)


def infeasible_alone(instance: RoutingInstance, nodes: Nodes, j: int) -> str | None:
    """Why job j cannot be served even by itself, or None if some vehicle could."""
    job = instance.jobs[j]
    skilled = [k for k, v in enumerate(instance.vehicles) if job.skills <= v.skills]
    if not skilled:
        return REASON_NO_SKILLED_VEHICLE
    sized = [k for k in skilled if job.demand <= instance.vehicles[k].capacity
             and (instance.vehicles[k].max_jobs is None or instance.vehicles[k].max_jobs >= 1)]
    if not sized:
        return REASON_OVER_CAPACITY
    timely = []
    for k in sized:
        v = instance.vehicles[k]
        there = nodes.dist[nodes.starts[k], j]
        back = nodes.dist[j, nodes.ends[k]]
        begin = max(v.shift_start + there, job.ready)
        if begin <= job.due + 1e-9 and begin + job.service + back <= v.shift_end + 1e-9:
            timely.append(k)
    if not timely:
        return REASON_TIME_WINDOW
    for k in timely:
        v = instance.vehicles[k]
        if v.max_duration is None or (nodes.dist[nodes.starts[k], j] + job.service
                                      + nodes.dist[j, nodes.ends[k]] <= v.max_duration + 1e-9):
            return None
    return REASON_WORKLOAD


def solve(instance: RoutingInstance, options: SearchOptions | None = None,
          initial: RoutingResult | None = None) -> RoutingResult:
    """Plan routes minimising total distance; jobs that cannot fit are returned with a reason.

    Pinned jobs (`Vehicle.pinned`) open their vehicle's route in the given order and are never
    left out. `initial` (a plan of the same jobs and vehicles, e.g. the running plan with one
    job inserted) is where the search starts; routes it holds that break a rule are ignored.
    """
    options = options or SearchOptions()
    if options.engine not in ENGINES:
        raise ValueError(f"unknown routing engine {options.engine!r}; use one of {ENGINES}")
    t0 = time.perf_counter()
    nodes = Nodes(instance)
    jobs, vehicles = instance.jobs, instance.vehicles
    pinned = {job_id for v in vehicles for job_id in v.pinned}
    reasons = {j: r for j, job in enumerate(jobs) if job.id not in pinned
               and (r := infeasible_alone(instance, nodes, j)) is not None}
    if options.engine == "pyvrp":
        from alliance import routing_pyvrp
        return routing_pyvrp.solve(instance, nodes, reasons, options, initial, t0)

    manager = pywrapcp.RoutingIndexManager(nodes.count, len(vehicles), nodes.starts, nodes.ends)
    routing = pywrapcp.RoutingModel(manager)

    cost = np.rint(nodes.dist * SCALE).astype(np.int64)
    cost_cb = routing.RegisterTransitMatrix(cost.tolist())
    routing.SetArcCostEvaluatorOfAllVehicles(cost_cb)

    service = np.zeros(nodes.count, dtype=np.int64)
    service[:len(jobs)] = [scaled(j.service, math.ceil) for j in jobs]
    travel = np.ceil(nodes.dist * SCALE - 1e-9).astype(np.int64) + service[:, None]
    horizon = min(HORIZON_CAP, max(
        [scaled(v.shift_end) for v in vehicles] + [scaled(j.due) for j in jobs] + [0]))
    time_cb = routing.RegisterTransitMatrix(travel.tolist())
    routing.AddDimension(time_cb, horizon, horizon, False, "Time")
    time_dim = routing.GetDimensionOrDie("Time")

    _add_capacity(routing, manager, instance, nodes)
    _add_shifts_and_workload(routing, time_dim, instance)

    # A dropped job costs more than any detour it could save, so the search leaves a job
    # out only when it finds no feasible place for it.
    penalty = int(cost.max()) * 4 * (len(jobs) + 1) + 1
    for j, job in enumerate(jobs):
        index = manager.NodeToIndex(j)
        if job.id not in pinned:
            routing.AddDisjunction([index], penalty)
        if j in reasons:
            routing.solver().Add(routing.ActiveVar(index) == 0)
            continue
        time_dim.CumulVar(index).SetRange(scaled(job.ready, math.ceil),
                                          min(horizon, scaled(job.due)))
        allowed = [k for k, v in enumerate(vehicles) if job.skills <= v.skills]
        if len(allowed) < len(vehicles):
            routing.VehicleVar(index).SetValues([-1, *allowed])

    _pin(routing, manager, instance)
    for k in range(len(vehicles)):
        routing.AddVariableMinimizedByFinalizer(time_dim.CumulVar(routing.End(k)))
        routing.AddVariableMaximizedByFinalizer(time_dim.CumulVar(routing.Start(k)))

    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = getattr(
        routing_enums_pb2.FirstSolutionStrategy, options.first_solution)
    params.local_search_metaheuristic = getattr(
        routing_enums_pb2.LocalSearchMetaheuristic, options.metaheuristic)
    if options.gls_lambda is not None:
        params.guided_local_search_lambda_coefficient = options.gls_lambda
    params.time_limit.FromMilliseconds(max(1, int(options.time_limit_s * 1000)))
    params.log_search = options.log_search
    first: list[float] = []
    routing.AddAtSolutionCallback(
        lambda: first or first.append(time.perf_counter() - t0))
    start = None
    if initial is not None:
        routing.CloseModelWithParameters(params)
        start = routing.ReadAssignmentFromRoutes(_initial_routes(initial, manager, instance), True)
    if start is not None:
        solution = routing.SolveFromAssignmentWithParameters(start, params)
    else:
        solution = routing.SolveWithParameters(params)
    status = _STATUS.get(routing.status(), str(routing.status()))
    elapsed = time.perf_counter() - t0
    first_s = first[0] if first else None

    if solution is None:
        unassigned = tuple(Unassigned(job.id, reasons.get(j, REASON_NO_ROOM))
                           for j, job in enumerate(jobs))
        return RoutingResult((), unassigned, 0.0, elapsed, status, first_s)

    routes = []
    served: set[int] = set()
    for k, v in enumerate(vehicles):
        index = routing.Start(k)
        start_time = solution.Min(time_dim.CumulVar(index)) / SCALE
        prev = nodes.starts[k]
        stops, dist = [], 0.0
        index = solution.Value(routing.NextVar(index))
        while not routing.IsEnd(index):
            node = manager.IndexToNode(index)
            served.add(node)
            dist += float(nodes.dist[prev, node])
            stops.append(Stop(jobs[node].id, solution.Min(time_dim.CumulVar(index)) / SCALE))
            prev = node
            index = solution.Value(routing.NextVar(index))
        if stops:
            dist += float(nodes.dist[prev, nodes.ends[k]])
        routes.append(Route(v.id, start_time, tuple(stops), dist))
    unassigned = tuple(Unassigned(job.id, reasons.get(j, REASON_NO_ROOM))
                       for j, job in enumerate(jobs) if j not in served)
    total = math.fsum(r.distance for r in routes)
    return RoutingResult(tuple(routes), unassigned, total, elapsed, status, first_s)


def _pin(routing, manager, instance: RoutingInstance) -> None:
    """Each vehicle's pinned jobs follow its start, in order, on that vehicle."""
    node_of = {job.id: j for j, job in enumerate(instance.jobs)}
    for k, v in enumerate(instance.vehicles):
        previous = routing.Start(k)
        for job_id in v.pinned:
            index = manager.NodeToIndex(node_of[job_id])
            routing.VehicleVar(index).SetValues([k])
            routing.NextVar(previous).SetValues([index])
            previous = index


def _initial_routes(plan: RoutingResult, manager, instance: RoutingInstance) -> list[list[int]]:
    node_of = {job.id: j for j, job in enumerate(instance.jobs)}
    by_vehicle = {r.vehicle_id: r for r in plan.routes}
    return [[manager.NodeToIndex(node_of[s.job_id]) for s in by_vehicle[v.id].stops
             if s.job_id in node_of] if v.id in by_vehicle else []
            for v in instance.vehicles]


def _add_capacity(routing, manager, instance: RoutingInstance, nodes: Nodes) -> None:
    demand = [0] * nodes.count
    for j, job in enumerate(instance.jobs):
        demand[j] = int(job.demand)
    if any(demand):
        cb = routing.RegisterUnaryTransitVector(demand)
        routing.AddDimensionWithVehicleCapacity(
            cb, 0, [int(v.capacity) for v in instance.vehicles], True, "Load")
    limits = [v.max_jobs for v in instance.vehicles]
    if any(m is not None for m in limits):
        visits = [1] * len(instance.jobs) + [0] * (nodes.count - len(instance.jobs))
        cb = routing.RegisterUnaryTransitVector(visits)
        caps = [len(instance.jobs) if m is None else int(m) for m in limits]
        routing.AddDimensionWithVehicleCapacity(cb, 0, caps, True, "Visits")


def _add_shifts_and_workload(routing, time_dim, instance: RoutingInstance) -> None:
    for k, v in enumerate(instance.vehicles):
        lo, hi = scaled(v.shift_start, math.ceil), min(scaled(v.shift_end), HORIZON_CAP)
        time_dim.CumulVar(routing.Start(k)).SetRange(lo, hi)
        time_dim.CumulVar(routing.End(k)).SetRange(lo, hi)
        if v.max_duration is not None:
            time_dim.SetSpanUpperBoundForVehicle(scaled(v.max_duration), k)


_STATUS = {
    0: "not_solved", 1: "success", 2: "partial_success_time_limit", 3: "fail",
    4: "fail_timeout", 5: "invalid", 6: "infeasible", 7: "optimal",
}
