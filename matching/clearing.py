"""One day-ahead clearing: welfare-maximising allocation, tie rule, prices, block conditions.

Steps: the book in canonical integer form → the model → the block selection and LP (see
`search`) → the tie rule (see `ties`) → nodal prices (see `pricing`). Under zonal pricing an
accepted block order must not be out of the money at the prices: every such block is excluded
and the selection is solved again, until none is left (if the time limit has passed, the
excluded blocks are simply dropped and the divisible orders re-solved). Rejected blocks that
are in the money at the final prices are reported as paradoxically rejected.
"""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np

from matching.book import Book, build_book
from matching.instance import ClearingInstance
from matching.model import build_model
from matching.pricing import NO_PRICE, Prices, compute_prices, flows
from matching.result import ClearingResult
from matching.search import Allocation, select, solve_fixed
from matching.ties import apply_tie_rule

DEFAULT_MIP_GAP = 1e-4


def _decimal(value: int, exponent: int) -> Decimal:
    return Decimal(int(value)).scaleb(exponent)


def _crossing_periods(book: Book, entries: np.ndarray) -> bool:
    """Whether some period has a bid priced at or above a listing (network ignored)."""
    period = book.entry_period[entries]
    price = book.entry_price[entries]
    buy = book.is_buy[book.entry_order[entries]]
    top_bid = np.full(book.periods, -1, dtype=np.int64)
    low_ask = np.full(book.periods, 1 << 62, dtype=np.int64)
    np.maximum.at(top_bid, period[buy], price[buy])
    np.minimum.at(low_ask, period[~buy], price[~buy])
    return bool((top_bid >= low_ask).any())


def _block_surplus(book: Book, prices: Prices) -> list[int | None]:
    """Each block's surplus at full quantity and the node prices (ticks × units), None where
    a period of the block has no price."""
    node = prices.feeder[book.entry_period, book.entry_feeder]
    out: list[int | None] = []
    for i in book.block_orders.tolist():
        a, z = book.entry_start[i], book.entry_start[i + 1]
        if (node[a:z] == NO_PRICE).any():
            out.append(None)
            continue
        gain = (book.price[i] - node[a:z]) * book.entry_qty[a:z]
        out.append(int(book.sign[i] * gain.sum()))
    return out


class _Clearing:
    def __init__(self, instance: ClearingInstance, time_limit_s: float, mip_gap: float):
        self.instance = instance
        self.time_limit_s = time_limit_s
        self.mip_gap = mip_gap
        self.started = time.perf_counter()
        self.deadline = self.started + time_limit_s
        self.stats: dict[str, float] = {}
        self.book = build_book(instance)
        n_blocks = len(self.book.block_orders)
        # The final block choices and the blocks excluded as paradoxically accepted.
        self.levels = np.zeros(n_blocks, dtype=np.int64)
        self.excluded = np.zeros(n_blocks, dtype=bool)

    def settle(self, units: np.ndarray) -> tuple[np.ndarray, Prices]:
        """Applies the tie rule and prices the allocation."""
        book = self.book
        net = flows(book, units)
        prices = compute_prices(book, units, net)
        units = apply_tie_rule(book, units, net, prices, self.instance.tie_rule)
        return units, compute_prices(book, units, flows(book, units))

    def run(self) -> ClearingResult:
        book = self.book
        if book.num_orders == 0:
            return self.result(None, None, "empty order book", False, "empty")
        if not _crossing_periods(book, np.arange(book.num_entries)):
            zero = np.zeros(book.num_entries, dtype=np.int64)
            return self.result(zero, compute_prices(book, zero, flows(book, zero)),
                               "no crossing: in no period does a bid price reach a listing "
                               "price", False, "optimal")
        model = build_model(book)
        model.linear.rows_bytes()
        self.stats["build_s"] = time.perf_counter() - self.started
        self.stats["columns"] = float(model.linear.num_vars)
        self.stats["rows"] = float(model.linear.num_rows)

        n_blocks = len(book.block_orders)
        excluded = self.excluded
        hit, solve_s, rounds = False, 0.0, 0
        allocation: Allocation | None = None
        status = "optimal"
        while True:
            rounds += 1
            if allocation is None or time.perf_counter() < self.deadline:
                selection = select(book, model, excluded, deadline=self.deadline,
                                   final_allowance_s=self.time_limit_s, mip_gap=self.mip_gap)
                solve_s += selection.solve_s
                hit |= selection.hit_time_limit
                allocation = selection.allocation
                if selection.status != "optimal":
                    status = "feasible"
                self.stats["upper_bound"] = selection.upper_bound
            else:
                # Out of time: drop the paradoxical blocks and keep the other choices.
                levels = np.where(excluded, 0, allocation.levels)
                allocation, wall, hit_lp = solve_fixed(book, model, levels, self.time_limit_s)
                if allocation is None:
                    allocation, wall2, hit_lp = solve_fixed(
                        book, model, np.zeros(n_blocks, np.int64), self.time_limit_s)
                    wall += wall2
                solve_s += wall
                hit |= hit_lp
                status = "feasible"
            if allocation is None:
                self.stats.update(solve_s=solve_s, rounds=float(rounds))
                return self.result(None, None, "time limit reached before any clearing was "
                                   "found" if hit else "no feasible clearing", hit, "empty")
            units, prices = self.settle(allocation.units)
            if self.instance.pricing != "zonal" or n_blocks == 0:
                break
            surplus = _block_surplus(book, prices)
            paradox = np.array([allocation.levels[b] > 0 and s is not None and s < 0
                                for b, s in enumerate(surplus)], dtype=bool)
            if not paradox.any():
                break
            excluded |= paradox
        self.stats.update(solve_s=solve_s, rounds=float(rounds),
                          objective=allocation.objective)
        self.levels = allocation.levels
        return self.result(units, prices, None, hit, status)

    # ------------------------------------------------------------------ result

    def _zero_reason(self, hit: bool) -> str:
        book = self.book
        if hit:
            return "time limit reached; the best clearing found trades nothing"
        if _crossing_periods(book, np.flatnonzero(~book.entry_is_block)):
            return "the grid limits leave no room for any trade"
        return "no block order can be accepted under the grid limits, the balance and the " \
            "block conditions"

    def result(self, units: np.ndarray | None, prices: Prices | None, reason: str | None,
               hit: bool, status: str) -> ClearingResult:
        book, instance = self.book, self.instance
        accepted: dict[str, dict[int, Decimal]] = {}
        order_prices: dict[str, dict[int, Decimal]] = {}
        system: dict[int, Decimal] = {}
        nodes: dict[str, dict[int, Decimal]] = {}
        welfare = rent = 0
        paradoxical: list[str] = []
        excluded: list[str] = []
        if units is not None and prices is not None:
            node = prices.feeder[book.entry_period, book.entry_feeder]
            taken = np.flatnonzero(units > 0)
            signed = book.entry_sign[taken] * units[taken]
            welfare = int((signed * book.entry_price[taken]).sum())
            rent = int((signed * node[taken]).sum())
            zonal = instance.pricing == "zonal"
            settle = node if zonal else book.entry_price
            for o, t, q, p in zip(book.entry_order[taken].tolist(),
                                  book.entry_period[taken].tolist(), units[taken].tolist(),
                                  settle[taken].tolist(), strict=True):
                oid = book.orders[o].order_id
                accepted.setdefault(oid, {})[t] = _decimal(q, -1)
                order_prices.setdefault(oid, {})[t] = _decimal(p, -4)
            periods = np.flatnonzero(prices.has_price).tolist()
            system = {t: _decimal(prices.system[t], -4) for t in periods}
            for codes, table in ((book.transformers, prices.transformer),
                                 (book.feeders, prices.feeder)):
                for j, code in enumerate(codes):
                    nodes[code] = {t: _decimal(table[t, j], -4) for t in periods}
            if zonal and len(book.block_orders):
                for b, s in enumerate(_block_surplus(book, prices)):
                    oid = book.orders[book.block_orders[b]].order_id
                    if self.levels[b] == 0 and s is not None and s > 0:
                        paradoxical.append(oid)
                excluded = [book.orders[book.block_orders[b]].order_id
                            for b in np.flatnonzero(self.excluded)]
        if not accepted and status != "empty":
            status = "empty"
            reason = reason or self._zero_reason(hit)
        notes = []
        if excluded:
            notes.append(f"{len(excluded)} block order(s) excluded as out of the money at the "
                         "clearing prices")
        if hit and accepted:
            notes.append("time limit reached; best clearing found")
        if reason is None and notes:
            reason = "; ".join(notes)
        self.stats["total_s"] = time.perf_counter() - self.started
        return ClearingResult(
            status=status, reason=reason, pricing=instance.pricing,
            welfare=_decimal(welfare, -5), congestion_rent=_decimal(rent, -5),
            hit_time_limit=hit, accepted=accepted, order_prices=order_prices,
            system_prices=system, node_prices=dict(sorted(nodes.items())),
            paradoxically_rejected=tuple(sorted(paradoxical)),
            excluded_blocks=tuple(sorted(excluded)), stats=dict(self.stats))


def clear(instance: ClearingInstance, *, time_limit_s: float = 60.0,
          mip_gap: float = DEFAULT_MIP_GAP) -> ClearingResult:
    """Clears the day-ahead book of `instance`.

    `time_limit_s` bounds the solve. When the search for the block selection is cut short, the
    best selection found is used (or every block rejected), the divisible orders are still
    cleared optimally (that last LP gets a fresh allowance of `time_limit_s`), and
    `hit_time_limit` is set. A book without blocks is one LP; if that is cut short the result
    trades nothing, with `hit_time_limit` set. `mip_gap` is the relative optimality gap the block
    selection is proven to (against the LP relaxation or CBC's bound).
    """
    return _Clearing(instance, time_limit_s, mip_gap).run()
