"""Solving the clearing model: the LP for divisible orders, and the block selection.

The block selection is a small branch-and-bound wrapped around CLP: solve the LP relaxation
(an upper bound), round its block levels down and re-solve with the blocks fixed (a feasible
incumbent); if the two are within the relative gap the selection is proven good enough.
Otherwise every block whose reduced cost shows it cannot be in any better solution is fixed
(reduced-cost fixing) and CBC searches the rest. Most blocks are decided by the relaxation, so
the MIP that CBC sees is small.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from matching.book import Book, block_entry_quantities
from matching.errors import SolverError
from matching.lp import solve_lp, solve_mip
from matching.model import ClearingModel, fixed_bounds

INTEGRALITY_TOLERANCE = 1e-6

log = logging.getLogger(__name__)


@dataclass
class Allocation:
    """Accepted units of every entry for one block selection, and its objective (yuan)."""

    levels: np.ndarray  # per block
    units: np.ndarray  # per entry, int64
    objective: float


@dataclass
class Selection:
    allocation: Allocation | None
    status: str  # "optimal" | "feasible"
    hit_time_limit: bool
    upper_bound: float
    solve_s: float


def _remaining(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 0.0)


def solve_fixed(book: Book, model: ClearingModel, levels: np.ndarray,
                time_limit_s: float) -> tuple[Allocation | None, float, bool]:
    """The optimal divisible allocation with every block at `levels`: (allocation or None if
    infeasible or not solved, solver seconds, whether the time limit stopped it)."""
    lb, ub = fixed_bounds(model, levels)
    solution = solve_lp(model.linear, lb, ub, time_limit_s=time_limit_s)
    if solution.status != "optimal":
        return None, solution.wall_s, solution.status in ("not_solved", "feasible")
    x = solution.x[:model.num_div]
    rounded = np.rint(x)
    if len(x) and np.abs(x - rounded).max() > INTEGRALITY_TOLERANCE:
        raise SolverError("the LP vertex is not integral in 0.1 kVA units")
    units = block_entry_quantities(book, levels)
    units[model.div_entries] = np.clip(rounded.astype(np.int64), 0,
                                       book.entry_qty[model.div_entries])
    return Allocation(levels=levels, units=units, objective=solution.objective), \
        solution.wall_s, False


def _round_down(book: Book, values: np.ndarray) -> np.ndarray:
    levels = np.floor(values + INTEGRALITY_TOLERANCE).astype(np.int64)
    levels = np.minimum(levels, book.block_grid)
    return np.where(levels >= book.block_min_level, levels, 0)


def select(book: Book, model: ClearingModel, excluded: np.ndarray, *, deadline: float,
           final_allowance_s: float, mip_gap: float) -> Selection:
    """The best block selection found before `deadline` (blocks in `excluded` stay rejected),
    with its optimal divisible allocation."""
    n_blocks = len(book.block_orders)
    zero = np.zeros(n_blocks, dtype=np.int64)
    solve_s = 0.0
    if n_blocks == 0:
        allocation, wall, hit = solve_fixed(book, model, zero, _remaining(deadline))
        status = "optimal" if allocation is not None else "feasible"
        return Selection(allocation, status, hit, allocation.objective if allocation else 0.0,
                         wall)

    lb, ub = model.linear.var_lb.copy(), model.linear.var_ub.copy()
    ub[model.block_col[excluded]] = 0
    ub[model.block_switch_col[excluded & (model.block_switch_col >= 0)]] = 0

    def fallback(hit: bool) -> Selection:
        # Rejecting every block is always feasible; it gets a fresh allowance so that a cut
        # search still clears the divisible orders.
        allocation, wall, hit_lp = solve_fixed(book, model, zero,
                                               max(_remaining(deadline), final_allowance_s))
        return Selection(allocation, "feasible", hit or hit_lp,
                         allocation.objective if allocation else 0.0, solve_s + wall)

    if _remaining(deadline) <= 0:
        return fallback(True)
    relaxed = solve_lp(model.linear, lb, ub, time_limit_s=_remaining(deadline))
    solve_s += relaxed.wall_s
    if relaxed.status != "optimal":
        if relaxed.status == "not_solved":
            return fallback(True)
        raise SolverError(f"the clearing relaxation is {relaxed.status}")
    upper = relaxed.objective
    fractional = int(((relaxed.x[model.block_col] % 1) > INTEGRALITY_TOLERANCE).sum())
    log.debug("relaxation %.6f in %.2f s, %d fractional block(s)", upper, relaxed.wall_s,
              fractional)

    incumbent, wall, _ = solve_fixed(book, model, _round_down(book, relaxed.x[model.block_col]),
                                     max(_remaining(deadline), final_allowance_s))
    solve_s += wall
    if incumbent is None:
        incumbent, wall, hit = solve_fixed(book, model, zero,
                                           max(_remaining(deadline), final_allowance_s))
        solve_s += wall
        if incumbent is None:
            return Selection(None, "feasible", hit, upper, solve_s)
    log.debug("rounded incumbent %.6f (gap %.2e)", incumbent.objective,
              (upper - incumbent.objective) / max(abs(upper), 1.0))
    tolerance = mip_gap * max(abs(upper), 1.0)
    if upper - incumbent.objective <= tolerance:
        return Selection(incumbent, "optimal", False, upper, solve_s)
    if _remaining(deadline) <= 0:
        return Selection(incumbent, "feasible", True, upper, solve_s)

    # Reduced-cost fixing: an integer column at a bound whose reduced cost exceeds the gap
    # cannot move in any solution better than the incumbent.
    integer_cols = np.concatenate([model.block_col,
                                   model.block_switch_col[model.block_switch_col >= 0]])
    x, rc = relaxed.x[integer_cols], relaxed.reduced_costs[integer_cols]
    gap = upper - incumbent.objective
    at_lower = (x <= lb[integer_cols] + INTEGRALITY_TOLERANCE) & (-rc > gap)
    at_upper = (x >= ub[integer_cols] - INTEGRALITY_TOLERANCE) & (rc > gap)
    ub[integer_cols[at_lower]] = lb[integer_cols[at_lower]]
    lb[integer_cols[at_upper]] = ub[integer_cols[at_upper]]
    log.debug("reduced-cost fixing leaves %d of %d integer column(s) free",
              int((lb[integer_cols] < ub[integer_cols]).sum()), len(integer_cols))
    mip = solve_mip(model.linear, lb, ub, time_limit_s=_remaining(deadline), mip_gap=mip_gap)
    solve_s += mip.wall_s
    log.debug("cbc %s %.6f (bound %.6f) in %.2f s", mip.status, mip.objective,
              mip.best_bound, mip.wall_s)
    proven = mip.status in ("optimal", "infeasible")  # infeasible: nothing beats the incumbent
    best, status, hit = incumbent, "feasible", not proven
    if mip.x is not None and mip.objective > incumbent.objective:
        levels = np.rint(mip.x[model.block_col]).astype(np.int64)
        candidate, wall, _ = solve_fixed(book, model, levels,
                                         max(_remaining(deadline), final_allowance_s))
        solve_s += wall
        if candidate is not None and candidate.objective >= incumbent.objective:
            best = candidate
    if proven:
        status = "optimal"
        upper = best.objective if mip.status == "infeasible" else \
            max(min(upper, mip.best_bound), best.objective)
    return Selection(best, status, hit, upper, solve_s)
