"""The order book and the network in exact integer units and canonical order, as numpy arrays.

Everything downstream (model, prices, ties, result) works on this form: prices in ticks of
0.0001 yuan per kVA per hour, quantities in units of 0.1 kVA, orders sorted by order id and
assets sorted by code, so that the same book in any input order gives the same arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np

from matching.instance import ClearingInstance, Order

TICKS_PER_YUAN = 10_000
UNITS_PER_KVA = 10


def price_ticks(price: Decimal) -> int:
    return int(price.scaleb(4))


def kva_units(kva: Decimal) -> int:
    return int(kva.scaleb(1))


@dataclass(frozen=True)
class Book:
    """One clearing's input as arrays. Orders are indexed 0..n-1 in order-id order; each
    (order, period) pair with a quantity is an *entry*, entries sorted by (order, period)."""

    orders: tuple[Order, ...]
    periods: int
    # per order
    is_buy: np.ndarray  # bool
    sign: np.ndarray  # +1 buy, -1 sell (int64)
    price: np.ndarray  # int64 ticks
    feeder: np.ndarray  # int64 index into `feeders`
    is_block: np.ndarray  # bool
    priority: np.ndarray  # int64
    rank: np.ndarray  # int64: position in (priority, order id) order, for time priority
    entry_start: np.ndarray  # int64 (n + 1,): entries of order i are entry_start[i]:[i + 1]
    # per entry
    entry_order: np.ndarray
    entry_period: np.ndarray
    entry_qty: np.ndarray  # int64 units of 0.1 kVA
    # network
    transformers: tuple[str, ...]
    feeders: tuple[str, ...]
    feeder_parent: np.ndarray  # int64 transformer index of each feeder
    headroom_t: np.ndarray  # (periods, transformers) int64 units: room for a net load increase
    headroom_f: np.ndarray  # (periods, feeders)
    # blocks: a block order is accepted at level k of `block_grid` steps (0 = rejected);
    # each period's accepted quantity is qty * k / grid, exact in 0.1 kVA units.
    block_orders: np.ndarray  # int64 order indices of the blocks, ascending
    block_grid: np.ndarray  # int64
    block_min_level: np.ndarray  # int64, smallest non-zero level

    @property
    def num_orders(self) -> int:
        return len(self.orders)

    @property
    def num_entries(self) -> int:
        return len(self.entry_order)

    @property
    def entry_sign(self) -> np.ndarray:
        return self.sign[self.entry_order]

    @property
    def entry_feeder(self) -> np.ndarray:
        return self.feeder[self.entry_order]

    @property
    def entry_price(self) -> np.ndarray:
        return self.price[self.entry_order]

    @property
    def entry_is_block(self) -> np.ndarray:
        return self.is_block[self.entry_order]


def _headroom(limit: Decimal, base: Decimal) -> int:
    """Room for extra load in whole 0.1 kVA units; none (not negative) where the base load
    already exceeds the limit: trading may then only lower the load there."""
    room = (limit - base).scaleb(1).to_integral_value(ROUND_FLOOR)
    return max(int(room), 0)


def _block_grid(order: Order, qty_units: list[int]) -> tuple[int, int]:
    """(grid, smallest level) of a block: all-or-none is one step; a minimum-fraction order
    moves in steps of 1/g where g is the gcd of its per-period quantities, the finest fraction
    that keeps every period's quantity on the 0.1 kVA grid and equal across periods."""
    if order.all_or_none:
        return 1, 1
    grid = math.gcd(*qty_units)
    assert order.min_fraction is not None
    smallest = int((order.min_fraction * grid).to_integral_value(ROUND_CEILING))
    return grid, max(smallest, 1)


def build_book(instance: ClearingInstance) -> Book:
    orders = tuple(sorted(instance.orders, key=lambda o: o.order_id))
    network = instance.network
    transformers = tuple(sorted(a.code for a in network.assets if a.kind == "transformer"))
    feeders = tuple(sorted(a.code for a in network.assets if a.kind == "feeder"))
    t_index = {code: i for i, code in enumerate(transformers)}
    f_index = {code: i for i, code in enumerate(feeders)}
    by_code = {a.code: a for a in network.assets}
    feeder_parent = np.array([t_index[by_code[f].parent] for f in feeders], dtype=np.int64)
    p = instance.periods
    headroom_t = np.array([[_headroom(by_code[c].limit_kva, by_code[c].base_load[t])
                            for c in transformers] for t in range(p)], dtype=np.int64)
    headroom_f = np.array([[_headroom(by_code[c].limit_kva, by_code[c].base_load[t])
                            for c in feeders] for t in range(p)], dtype=np.int64)
    headroom_t = headroom_t.reshape(p, len(transformers))
    headroom_f = headroom_f.reshape(p, len(feeders))

    n = len(orders)
    entry_period: list[int] = []
    entry_qty: list[int] = []
    counts = np.empty(n, dtype=np.int64)
    block_orders, block_grid, block_min = [], [], []
    for i, order in enumerate(orders):
        quantities = sorted(order.quantities)
        units = [kva_units(q) for _, q in quantities]
        entry_period.extend(t for t, _ in quantities)
        entry_qty.extend(units)
        counts[i] = len(quantities)
        if order.is_block:
            grid, smallest = _block_grid(order, units)
            block_orders.append(i)
            block_grid.append(grid)
            block_min.append(smallest)
    entry_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=entry_start[1:])
    is_buy = np.array([o.side == "buy" for o in orders], dtype=bool)
    priority = np.array([o.priority for o in orders], dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    # Orders are already in id order, so a stable sort on priority gives (priority, id).
    rank[np.argsort(priority, kind="stable")] = np.arange(n)
    return Book(
        orders=orders, periods=p,
        is_buy=is_buy, sign=np.where(is_buy, 1, -1).astype(np.int64),
        price=np.array([price_ticks(o.price) for o in orders], dtype=np.int64),
        feeder=np.array([f_index[network.enterprise_feeder[o.enterprise]] for o in orders],
                        dtype=np.int64),
        is_block=np.array([o.is_block for o in orders], dtype=bool),
        priority=priority, rank=rank, entry_start=entry_start,
        entry_order=np.repeat(np.arange(n, dtype=np.int64), counts),
        entry_period=np.array(entry_period, dtype=np.int64),
        entry_qty=np.array(entry_qty, dtype=np.int64),
        transformers=transformers, feeders=feeders, feeder_parent=feeder_parent,
        headroom_t=headroom_t, headroom_f=headroom_f,
        block_orders=np.array(block_orders, dtype=np.int64),
        block_grid=np.array(block_grid, dtype=np.int64),
        block_min_level=np.array(block_min, dtype=np.int64))


def block_entry_quantities(book: Book, levels: np.ndarray) -> np.ndarray:
    """Accepted units of every entry of the block orders at the given levels (zeros for
    entries of divisible orders)."""
    out = np.zeros(book.num_entries, dtype=np.int64)
    for b, order in enumerate(book.block_orders.tolist()):
        level = int(levels[b])
        if level:
            a, z = book.entry_start[order], book.entry_start[order + 1]
            out[a:z] = book.entry_qty[a:z] * level // book.block_grid[b]
    return out
