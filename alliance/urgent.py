"""Urgent repair dispatch: one round of offers matching waiting urgent jobs to electricians.

Lexicographic goal, solved exactly as one min-cost flow (OR-Tools `SimpleMinCostFlow`):

1. as many jobs as possible predicted on site by their deadline;
2. then as many of the remaining jobs as possible still assigned (late is better than never);
3. then the least total tier-3 cost. An on-time pair costs its travel minutes, plus
   `wait_weight` minutes per minute the electrician must still wait before setting off (a busy
   one; at 1 this ranks on-time choices by predicted arrival, favouring those who can leave
   now over those whose end of work is only an estimate). A late pair costs its lateness plus
   its whole time to arrive (wait and travel), so among a job's late options the least-late
   always wins. Interrupting planned work adds `preempt_penalty_minutes`, so it happens only
   when that saves more than the penalty, or when it is needed to be on time.

Why a flow: the problem is a rectangular bipartite assignment (each electrician takes at most
one job per round, each job at most one electrician) with forbidden pairs (skills, exclusions,
shift). In a flow network forbidden pairs are simply missing arcs and "unassigned" is one extra
arc per job to the sink, so there is no need for the dummy rows/columns and big-M costs that
`linear_sum_assignment` (perfect matching on the smaller side) would need; integral flows make
the LP optimum an assignment, so no MIP search (CP-SAT) is needed. The three tiers are folded
into one integer cost with weights that make them strictly lexicographic.

Predicted on-site time of electrician e for job j:
`max(now + response_minutes, free_at) + travel(e.position, j.position)`.
An electrician is eligible for a job when they hold every required skill, are not excluded for
that job, and are free no later than their shift end (`max(now, free_at) <= shift_end`): an
offer made on shift is honoured, so the response allowance, the travel and the repair itself
may run into overtime.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from ortools.graph.python import min_cost_flow

from alliance.errors import AllianceError, InvalidDispatchInputError, InvalidPositionError
from alliance.travel import LatLon, TravelModel, as_positions

REASON_NO_QUALIFIED = "no_qualified_electrician"
REASON_ALL_EXCLUDED = "all_excluded"
REASON_OFF_SHIFT = "no_electrician_on_shift"
REASON_TAKEN = "all_taken_by_other_jobs"

_EPS = 1e-9
# Costs are in hundredths of a minute; per-pair costs are capped (at 10,000 minutes, which only
# days-late pairs reach) so the lexicographic weights and OR-Tools' internal cost scaling stay
# far inside int64.
_COST_SCALE = 100
_MAX_PAIR_COST = 10**6


@dataclass(frozen=True)
class UrgentJob:
    """An urgent job waiting for an electrician."""

    id: str
    position: LatLon
    deadline: float
    skills: frozenset[str] = frozenset()
    excluded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CandidateElectrician:
    """An electrician as seen at the dispatch moment.

    `free_at`/`position`: when and where they can start towards a new job (for one busy on an
    urgent job: its expected end and its site). `preempts`: the id of the interruptible planned
    job they would have to leave (their `free_at` is then `now`), or None.
    """

    id: str
    position: LatLon
    free_at: float
    skills: frozenset[str] = frozenset()
    shift_end: float = math.inf
    preempts: str | None = None


@dataclass(frozen=True)
class UrgentDispatchInstance:
    now: float
    jobs: tuple[UrgentJob, ...]
    electricians: tuple[CandidateElectrician, ...]
    travel: TravelModel = field(default_factory=TravelModel)
    response_minutes: float = 2.0
    preempt_penalty_minutes: float = 15.0
    wait_weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", tuple(self.jobs))
        object.__setattr__(self, "electricians", tuple(self.electricians))
        validate_dispatch_instance(self)


@dataclass(frozen=True)
class Assignment:
    job_id: str
    electrician_id: str
    departs: float
    arrival: float
    travel_minutes: float
    deadline: float
    preempts: str | None = None

    @property
    def late(self) -> bool:
        return self.arrival > self.deadline + _EPS

    @property
    def escalate(self) -> bool:
        """The best plan still has this job on site after its deadline: tell staff/provider."""
        return self.late


@dataclass(frozen=True)
class UnassignedJob:
    job_id: str
    reason: str
    escalate: bool = True


@dataclass(frozen=True)
class UrgentDispatchResult:
    assignments: tuple[Assignment, ...]
    unassigned: tuple[UnassignedJob, ...]
    solve_s: float

    @property
    def on_time(self) -> int:
        return sum(1 for a in self.assignments if not a.late)

    @property
    def total_travel_minutes(self) -> float:
        return sum(a.travel_minutes for a in self.assignments)

    @property
    def preemptions(self) -> int:
        return sum(1 for a in self.assignments if a.preempts is not None)

    @property
    def escalations(self) -> tuple[str, ...]:
        return tuple(sorted([a.job_id for a in self.assignments if a.escalate]
                            + [u.job_id for u in self.unassigned]))


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_dispatch_instance(inst: UrgentDispatchInstance) -> None:
    """Raise `InvalidDispatchInputError` naming the first problem found."""
    if not _finite(inst.now):
        raise InvalidDispatchInputError(f"now must be a finite number, got {inst.now!r}")
    if not _finite(inst.response_minutes) or inst.response_minutes < 0:
        raise InvalidDispatchInputError("response_minutes must be a finite number >= 0")
    if not _finite(inst.preempt_penalty_minutes) or inst.preempt_penalty_minutes < 0:
        raise InvalidDispatchInputError("preempt_penalty_minutes must be a finite number >= 0")
    if not _finite(inst.wait_weight) or inst.wait_weight < 0:
        raise InvalidDispatchInputError("wait_weight must be a finite number >= 0")
    if not isinstance(inst.travel, TravelModel):
        raise InvalidDispatchInputError("travel must be a TravelModel")
    seen: set[str] = set()
    for j in inst.jobs:
        if not j.id or j.id in seen:
            raise InvalidDispatchInputError(f"job id {j.id!r} is empty or appears twice")
        seen.add(j.id)
        if not _finite(j.deadline):
            raise InvalidDispatchInputError(f"job {j.id!r}: deadline must be finite")
    seen = set()
    for e in inst.electricians:
        if not e.id or e.id in seen:
            raise InvalidDispatchInputError(f"electrician id {e.id!r} is empty or appears twice")
        seen.add(e.id)
        if not _finite(e.free_at) or e.free_at < inst.now - _EPS:
            raise InvalidDispatchInputError(
                f"electrician {e.id!r}: free_at {e.free_at!r} must be finite and >= now")
        if not (_finite(e.shift_end) or e.shift_end == math.inf):
            raise InvalidDispatchInputError(f"electrician {e.id!r}: bad shift_end")
        if e.preempts is not None and e.free_at > inst.now + _EPS:
            raise InvalidDispatchInputError(
                f"electrician {e.id!r}: preempting planned work means free_at = now")
    try:
        as_positions([j.position for j in inst.jobs] or np.empty((0, 2)), "job position")
        as_positions([e.position for e in inst.electricians] or np.empty((0, 2)),
                     "electrician position")
    except InvalidPositionError as exc:
        raise InvalidDispatchInputError(str(exc)) from exc


@dataclass(frozen=True)
class PairTable:
    """Every (job, electrician) pair's prediction, jobs and electricians sorted by id."""

    jobs: tuple[UrgentJob, ...]
    electricians: tuple[CandidateElectrician, ...]
    travel: np.ndarray       # minutes, (n_jobs, n_electricians)
    departs: np.ndarray      # (n_electricians,)
    arrival: np.ndarray      # (n_jobs, n_electricians)
    qualified: np.ndarray    # bool: holds every required skill
    excluded: np.ndarray     # bool: excluded for this job
    on_shift: np.ndarray     # bool, (n_electricians,): free by their shift end
    cost: np.ndarray         # tier-3 cost in minutes (travel, lateness, preemption, wait)

    @property
    def eligible(self) -> np.ndarray:
        return self.qualified & ~self.excluded & self.on_shift[None, :]

    @property
    def on_time(self) -> np.ndarray:
        return self.arrival <= np.array([j.deadline for j in self.jobs])[:, None] + _EPS


def pair_table(inst: UrgentDispatchInstance) -> PairTable:
    """Predictions for every pair, vectorised (skills as bit masks)."""
    jobs = tuple(sorted(inst.jobs, key=lambda j: j.id))
    elecs = tuple(sorted(inst.electricians, key=lambda e: e.id))
    n, m = len(jobs), len(elecs)
    if n and m:
        travel = inst.travel.minutes_matrix([e.position for e in elecs],
                                            [j.position for j in jobs]).T
    else:
        travel = np.zeros((n, m))
    departs = np.array([max(inst.now + inst.response_minutes, e.free_at) for e in elecs],
                       dtype=float).reshape(m)
    arrival = departs[None, :] + travel
    skill_bit = {s: k for k, s in enumerate(sorted(
        {s for j in jobs for s in j.skills}))}

    def mask(skills: frozenset[str]) -> int:
        return sum(1 << skill_bit[s] for s in skills if s in skill_bit)

    # Python ints hold any number of distinct skills; object arrays keep the & vectorised.
    need = np.array([mask(j.skills) for j in jobs] + [0], dtype=object)[:n]
    have = np.array([mask(e.skills) for e in elecs] + [0], dtype=object)[:m]
    qualified = (need[:, None] & ~have[None, :]) == 0 if n and m else np.zeros((n, m), bool)
    qualified = np.asarray(qualified, dtype=bool).reshape(n, m)
    col = {e.id: k for k, e in enumerate(elecs)}
    excluded = np.zeros((n, m), dtype=bool)
    for i, j in enumerate(jobs):
        for eid in j.excluded:
            if eid in col:
                excluded[i, col[eid]] = True
    on_shift = np.array([max(inst.now, e.free_at) <= e.shift_end + _EPS for e in elecs],
                        dtype=bool).reshape(m)
    deadlines = np.array([j.deadline for j in jobs], dtype=float).reshape(n)
    lateness = np.maximum(0.0, arrival - deadlines[:, None])
    preempt = np.array([e.preempts is not None for e in elecs], dtype=float).reshape(m)
    wait = np.broadcast_to((departs - (inst.now + inst.response_minutes))[None, :], (n, m))
    late = arrival > deadlines[:, None] + _EPS
    cost = (travel + inst.preempt_penalty_minutes * preempt[None, :]
            + np.where(late, lateness + wait, inst.wait_weight * wait))
    return PairTable(jobs, elecs, travel, departs, arrival, qualified, excluded, on_shift, cost)


def dispatch(inst: UrgentDispatchInstance) -> UrgentDispatchResult:
    """One dispatch round: the lexicographically best set of offers (see module doc)."""
    t0 = time.perf_counter()
    tab = pair_table(inst)
    n, m = len(tab.jobs), len(tab.electricians)
    eligible = tab.eligible
    on_time = tab.on_time
    rows, cols = np.nonzero(eligible)
    pair_cost = np.minimum(np.rint(tab.cost[rows, cols] * _COST_SCALE), _MAX_PAIR_COST)
    pair_cost = pair_cost.astype(np.int64)
    # Tier weights: B beats any tier-3 total, A beats any change in tiers 2 and 3 together.
    worst = np.zeros(n, dtype=np.int64)
    np.maximum.at(worst, rows, pair_cost)
    tier3_bound = int(worst.sum()) + 1
    weight_b = tier3_bound
    weight_a = (n + 1) * weight_b + tier3_bound
    late = ~on_time[rows, cols]
    pair_cost = pair_cost + weight_a * late.astype(np.int64)

    source, sink = 0, n + m + 1
    job_node = 1 + np.arange(n, dtype=np.int32)
    elec_node = 1 + n + np.arange(m, dtype=np.int32)
    tails = np.concatenate([np.full(n, source, np.int32), job_node[rows], elec_node,
                            job_node]).astype(np.int32)
    heads = np.concatenate([job_node, elec_node[cols], np.full(m, sink, np.int32),
                            np.full(n, sink, np.int32)]).astype(np.int32)
    costs = np.concatenate([np.zeros(n, np.int64), pair_cost, np.zeros(m, np.int64),
                            np.full(n, weight_a + weight_b, np.int64)]).astype(np.int64)
    caps = np.ones(len(tails), dtype=np.int64)

    assignments: list[Assignment] = []
    taken_job: set[int] = set()
    if n:
        flow = min_cost_flow.SimpleMinCostFlow()
        arcs = flow.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
        supplies = np.zeros(n + m + 2, dtype=np.int64)
        supplies[source], supplies[sink] = n, -n
        flow.set_nodes_supplies(np.arange(n + m + 2, dtype=np.int32), supplies)
        status = flow.solve()
        if status != flow.OPTIMAL:  # cannot happen: the dummy arcs always carry all supply
            raise AllianceError(f"min cost flow failed with status {status}")
        used = flow.flows(arcs[n:n + len(rows)]) > 0
        for i, k in zip(rows[used], cols[used], strict=True):
            j, e = tab.jobs[i], tab.electricians[k]
            taken_job.add(int(i))
            assignments.append(Assignment(
                job_id=j.id, electrician_id=e.id, departs=float(tab.departs[k]),
                arrival=float(tab.arrival[i, k]), travel_minutes=float(tab.travel[i, k]),
                deadline=j.deadline, preempts=e.preempts))
    unassigned = tuple(UnassignedJob(j.id, _reason(tab, i))
                       for i, j in enumerate(tab.jobs) if i not in taken_job)
    assignments.sort(key=lambda a: a.job_id)
    return UrgentDispatchResult(tuple(assignments), unassigned, time.perf_counter() - t0)


def _reason(tab: PairTable, i: int) -> str:
    if not tab.qualified[i].any():
        return REASON_NO_QUALIFIED
    if not (tab.qualified[i] & ~tab.excluded[i]).any():
        return REASON_ALL_EXCLUDED
    if not tab.eligible[i].any():
        return REASON_OFF_SHIFT
    return REASON_TAKEN


def check_dispatch(inst: UrgentDispatchInstance, result: UrgentDispatchResult) -> list[str]:
    """Solver-independent check of a dispatch round; returns the broken rules (empty if none).

    Recomputes every prediction with the scalar travel model: each job is either assigned once
    or unassigned, no electrician takes two jobs, skills, exclusions and shift end hold, and
    the reported times match.
    """
    problems: list[str] = []
    jobs = {j.id: j for j in inst.jobs}
    elecs = {e.id: e for e in inst.electricians}
    seen_jobs: list[str] = [a.job_id for a in result.assignments] + \
        [u.job_id for u in result.unassigned]
    if sorted(seen_jobs) != sorted(jobs):
        problems.append("jobs in the result do not match the jobs in the input exactly once")
    used = [a.electrician_id for a in result.assignments]
    if len(used) != len(set(used)):
        problems.append("an electrician was given two jobs in one round")
    for a in result.assignments:
        j, e = jobs.get(a.job_id), elecs.get(a.electrician_id)
        if j is None or e is None:
            problems.append(f"{a.job_id}/{a.electrician_id}: unknown job or electrician")
            continue
        if not j.skills <= e.skills:
            problems.append(f"{a.job_id}: {e.id} lacks {sorted(j.skills - e.skills)}")
        if e.id in j.excluded:
            problems.append(f"{a.job_id}: {e.id} is excluded for this job")
        departs = max(inst.now + inst.response_minutes, e.free_at)
        if max(inst.now, e.free_at) > e.shift_end + 1e-6:
            problems.append(f"{a.job_id}: {e.id} is only free after their shift end")
        arrival = departs + inst.travel.minutes(e.position, j.position)
        if abs(arrival - a.arrival) > 1e-6 or abs(departs - a.departs) > 1e-6:
            problems.append(f"{a.job_id}: reported times do not match the travel model")
        if a.preempts != e.preempts:
            problems.append(f"{a.job_id}: preemption marker does not match the electrician")
    return problems
