"""The welfare-maximising clearing model of a book, built from vectorised parts.

Columns are the accepted quantity of each divisible (order, period) entry in 0.1 kVA units and
the acceptance level of each block order; rows are, per period, the balance (bought = sold) and
the loading limit of every transformer and feeder. The objective is in yuan (one hour of each
period): bid value minus listing cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matching.book import Book
from matching.lp import LinearModel, ModelArrays

# Objective coefficient of one tick times one unit (0.0001 yuan/kVA·h × 0.1 kVA), in yuan.
YUAN_PER_TICK_UNIT = 1e-5


@dataclass(frozen=True)
class ClearingModel:
    """The linear model and where each entry and block sits in it."""

    linear: LinearModel
    div_entries: np.ndarray  # entry index of each divisible column (columns 0..len-1)
    block_col: np.ndarray  # column of each block's level
    block_switch_col: np.ndarray  # column of a minimum-fraction block's on/off switch, or -1

    @property
    def num_div(self) -> int:
        return len(self.div_entries)


def _rows(book: Book, period: np.ndarray, feeder: np.ndarray) -> tuple[np.ndarray, ...]:
    """Balance, transformer and feeder row of entries in `period` at `feeder`."""
    p, n_t, n_f = book.periods, len(book.transformers), len(book.feeders)
    return (period,
            p + period * n_t + book.feeder_parent[feeder],
            p + p * n_t + period * n_f + feeder)


def _add_balance_and_limits(book: Book, arrays: ModelArrays) -> None:
    p = book.periods
    arrays.add_rows(np.zeros(p), np.zeros(p))
    for headroom in (book.headroom_t, book.headroom_f):
        arrays.add_rows(np.full(headroom.size, -np.inf), headroom.ravel().astype(np.float64))


def _add_divisible(book: Book, arrays: ModelArrays) -> np.ndarray:
    entries = np.flatnonzero(~book.entry_is_block)
    sign = book.entry_sign[entries].astype(np.float64)
    qty = book.entry_qty[entries].astype(np.float64)
    obj = sign * book.entry_price[entries] * YUAN_PER_TICK_UNIT
    first = arrays.add_vars(np.zeros(len(entries)), qty, obj)
    cols = first + np.arange(len(entries))
    for rows in _rows(book, book.entry_period[entries], book.entry_feeder[entries]):
        arrays.add_coefficients(rows, cols, sign)
    return entries


def _add_blocks(book: Book, arrays: ModelArrays) -> tuple[np.ndarray, np.ndarray]:
    orders = book.block_orders
    n = len(orders)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    grid = book.block_grid
    starts, ends = book.entry_start[orders], book.entry_start[orders + 1]
    lengths = ends - starts
    block_of_entry = np.repeat(np.arange(n), lengths)
    entries = np.repeat(starts, lengths) + np.arange(lengths.sum()) - \
        np.repeat(np.cumsum(lengths) - lengths, lengths)
    sign = book.sign[orders]
    step = book.entry_qty[entries] // grid[block_of_entry]  # units per level step
    step_total = np.bincount(block_of_entry, weights=step, minlength=n)
    obj = sign * book.price[orders] * step_total * YUAN_PER_TICK_UNIT
    first = arrays.add_vars(np.zeros(n), grid.astype(np.float64), obj, integer=True)
    level_col = first + np.arange(n)
    values = (sign[block_of_entry] * step).astype(np.float64)
    for rows in _rows(book, book.entry_period[entries], book.feeder[orders][block_of_entry]):
        arrays.add_coefficients(rows, level_col[block_of_entry], values)
    # A minimum-fraction block with a smallest level above one step needs an on/off switch:
    # min_level * on ≤ level ≤ grid * on.
    switch_col = np.full(n, -1, dtype=np.int64)
    switched = np.flatnonzero(book.block_min_level > 1)
    if len(switched):
        m = len(switched)
        s_first = arrays.add_vars(np.zeros(m), np.ones(m), np.zeros(m), integer=True)
        switch_col[switched] = s_first + np.arange(m)
        r_low = arrays.add_rows(np.zeros(m), np.full(m, np.inf))
        r_high = arrays.add_rows(np.full(m, -np.inf), np.zeros(m))
        rows_low, rows_high = r_low + np.arange(m), r_high + np.arange(m)
        arrays.add_coefficients(np.concatenate([rows_low, rows_low, rows_high, rows_high]),
                                np.concatenate([level_col[switched], switch_col[switched],
                                                level_col[switched], switch_col[switched]]),
                                np.concatenate([np.ones(m),
                                                -book.block_min_level[switched].astype(float),
                                                np.ones(m), -grid[switched].astype(float)]))
    return level_col, switch_col


def build_model(book: Book) -> ClearingModel:
    arrays = ModelArrays()
    _add_balance_and_limits(book, arrays)
    div_entries = _add_divisible(book, arrays)
    block_col, switch_col = _add_blocks(book, arrays)
    return ClearingModel(linear=arrays.finish(), div_entries=div_entries,
                         block_col=block_col, block_switch_col=switch_col)


def fixed_bounds(model: ClearingModel, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column bounds with every block fixed at `levels` (divisible columns left free)."""
    lb, ub = model.linear.var_lb.copy(), model.linear.var_ub.copy()
    lb[model.block_col] = ub[model.block_col] = levels
    switched = model.block_switch_col >= 0
    on = (levels > 0).astype(np.float64)
    lb[model.block_switch_col[switched]] = ub[model.block_switch_col[switched]] = on[switched]
    return lb, ub
