"""Deterministic sharing of marginal volume between orders tied at the clearing price.

After the LP, the orders at the margin of a price zone all sit exactly at the zone's price,
so any split of the zone's marginal volume between them is equally optimal; the LP picks one
arbitrarily. This module replaces it by the instance's tie rule:

* ``pro_rata``: tied orders get the same accepted fraction of their quantity (a weighted
  water-filling that respects any transformer or feeder limit inside the zone; leftover 0.1 kVA
  units from rounding go to the largest remainders, then by time priority);
* ``time_priority``: the earliest order (lowest priority number, then order id) is filled
  first, then the next.

A zone is a set of nodes with one price in a period (connected by limits that are not
congested). Where bids and listings are both at the margin (a flat overlap), the traded volume
is first extended as far as the grid allows. Listings are shared first given the bids, then
bids given the listings; every step keeps all limits, so the allocation stays optimal and the
prices stay valid. Shares are exact integers of 0.1 kVA.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from matching.book import Book
from matching.pricing import NO_PRICE, Flows, Prices

INFINITE = 1 << 62


@dataclass
class _Member:
    entry: int
    bound: int  # upper bound of the filled variable
    feeder: int
    transformer: int
    key: int  # smaller first in time priority and in remainder ties


def _subtree_totals(members: list[_Member], values: list[int]) -> tuple[dict, dict]:
    by_f: dict[int, int] = defaultdict(int)
    by_t: dict[int, int] = defaultdict(int)
    for m, v in zip(members, values, strict=True):
        by_f[m.feeder] += v
        by_t[m.transformer] += v
    return by_f, by_t


def capacity(members: list[_Member], cap_f: dict, cap_t: dict) -> int:
    """The most the members can take together under the nested limits."""
    by_f, _ = _subtree_totals(members, [m.bound for m in members])
    parent = {m.feeder: m.transformer for m in members}
    per_t: dict[int, int] = defaultdict(int)
    for f, total in by_f.items():
        per_t[parent[f]] += min(total, cap_f.get(f, INFINITE))
    return sum(min(v, cap_t.get(t, INFINITE)) for t, v in per_t.items())


def _solve_level(func, breakpoints: set[Fraction], target: Fraction) -> Fraction:
    """Smallest φ in [0, 1] with func(φ) = target for a continuous non-decreasing piecewise
    linear func whose kinks are among `breakpoints`."""
    points = sorted({Fraction(0), Fraction(1)} | {b for b in breakpoints if 0 < b < 1})
    prev, f_prev = points[0], func(points[0])
    if f_prev >= target:
        return prev
    for point in points[1:]:
        f_point = func(point)
        if f_point >= target:
            return prev + (target - f_prev) * (point - prev) / (f_point - f_prev)
        prev, f_prev = point, f_point
    return Fraction(1)


def _water_fill(members: list[_Member], cap_f: dict, cap_t: dict,
                total: int) -> list[Fraction]:
    """Weighted max-min fair shares (share_m = φ_m · bound_m) of `total` under nested caps."""
    bound_f, bound_t = _subtree_totals(members, [m.bound for m in members])
    parent = {m.feeder: m.transformer for m in members}
    feeders_of: dict[int, list[int]] = defaultdict(list)
    for f in bound_f:
        feeders_of[parent[f]].append(f)
    level_f = {f: Fraction(cap_f[f], b) if cap_f.get(f, INFINITE) < b else None
               for f, b in bound_f.items() if b}

    def inner(t: int, phi: Fraction) -> Fraction:
        return sum((min(phi, level_f[f]) if level_f.get(f) is not None else phi) * bound_f[f]
                   for f in feeders_of[t] if bound_f[f])

    level_t: dict[int, Fraction | None] = {}
    for t, b in bound_t.items():
        cap = cap_t.get(t, INFINITE)
        if b == 0 or inner(t, Fraction(1)) <= cap:
            level_t[t] = None
        else:
            kinks = {v for f in feeders_of[t] if (v := level_f.get(f)) is not None}
            level_t[t] = _solve_level(lambda phi, t=t: inner(t, phi), kinks, Fraction(cap))

    def overall(phi: Fraction) -> Fraction:
        return sum(inner(t, min(phi, lv) if (lv := level_t[t]) is not None else phi)
                   for t in bound_t)

    kinks = {v for v in level_f.values() if v is not None} | \
        {v for v in level_t.values() if v is not None}
    phi = _solve_level(overall, kinks, Fraction(total))
    shares = []
    for m in members:
        level = phi
        if (lt := level_t.get(m.transformer)) is not None:
            level = min(level, lt)
        if (lf := level_f.get(m.feeder)) is not None:
            level = min(level, lf)
        shares.append(level * m.bound)
    return shares


def fill(members: list[_Member], cap_f: dict, cap_t: dict, total: int, rule: str) -> list[int]:
    """Integer shares of `total` for the members under the nested caps by the tie rule."""
    order = sorted(range(len(members)), key=lambda i: members[i].key)
    values = [0] * len(members)
    slack_f, slack_t = dict(cap_f), dict(cap_t)

    def room(i: int) -> int:
        m = members[i]
        return min(m.bound - values[i], slack_f.get(m.feeder, INFINITE),
                   slack_t.get(m.transformer, INFINITE))

    def give(i: int, amount: int) -> None:
        m = members[i]
        values[i] += amount
        if m.feeder in slack_f:
            slack_f[m.feeder] -= amount
        if m.transformer in slack_t:
            slack_t[m.transformer] -= amount

    remaining = total
    if rule == "pro_rata":
        shares = _water_fill(members, cap_f, cap_t, total)
        for i, share in enumerate(shares):
            give(i, share.numerator // share.denominator)
        remaining = total - sum(values)
        fractional = [i for i in order if shares[i] > values[i]]
        for i in sorted(fractional, key=lambda i: -(shares[i] - values[i])):
            if remaining == 0:
                break
            if room(i) >= 1:
                give(i, 1)
                remaining -= 1
    # Time priority, and whatever rounding could not place: fill in time order.
    for i in order:
        if remaining == 0:
            break
        amount = min(room(i), remaining)
        if amount > 0:
            give(i, amount)
            remaining -= amount
    if remaining:
        raise AssertionError("tie split could not place the whole volume")
    return values


class _TieState:
    """Allocation and flows being adjusted period by period, zone by zone."""

    def __init__(self, book: Book, units: np.ndarray, net: Flows):
        self.book = book
        self.units = units
        self.net_f = net.feeder.copy()
        self.net_t = net.transformer.copy()

    def member(self, entry: int, bound: int, key: int) -> _Member:
        f = int(self.book.entry_feeder[entry])
        return _Member(entry, bound, f, int(self.book.feeder_parent[f]), key)

    def set_units(self, period: int, entries: list[int], values: list[int]) -> None:
        book = self.book
        for e, v in zip(entries, values, strict=True):
            delta = (v - int(self.units[e])) * int(book.entry_sign[e])
            if delta:
                f = int(book.entry_feeder[e])
                self.net_f[period, f] += delta
                self.net_t[period, book.feeder_parent[f]] += delta
                self.units[e] = v

    def caps(self, period: int, entries: list[int], sign: int) -> tuple[dict, dict, dict, dict]:
        """Room for the members' own total under each feeder and transformer: for bids an upper
        cap on their sum; for listings an upper cap on their *unsold* sum."""
        book = self.book
        own_f: dict[int, int] = defaultdict(int)
        own_t: dict[int, int] = defaultdict(int)
        qty_f: dict[int, int] = defaultdict(int)
        qty_t: dict[int, int] = defaultdict(int)
        for e in entries:
            f = int(book.entry_feeder[e])
            t = int(book.feeder_parent[f])
            own_f[f] += int(self.units[e])
            own_t[t] += int(self.units[e])
            qty_f[f] += int(book.entry_qty[e])
            qty_t[t] += int(book.entry_qty[e])
        cap_f, cap_t = {}, {}
        for f, own in own_f.items():
            other = int(self.net_f[period, f]) - sign * own
            room = int(book.headroom_f[period, f]) - other
            cap_f[f] = room if sign > 0 else qty_f[f] + room
        for t, own in own_t.items():
            other = int(self.net_t[period, t]) - sign * own
            room = int(book.headroom_t[period, t]) - other
            cap_t[t] = room if sign > 0 else qty_t[t] + room
        return cap_f, cap_t, qty_f, qty_t


def _split_buys(state: _TieState, period: int, entries: list[int], total: int,
                rule: str) -> None:
    book = state.book
    members = [state.member(e, int(book.entry_qty[e]), int(book.rank[book.entry_order[e]]))
               for e in entries]
    cap_f, cap_t, _, _ = state.caps(period, entries, +1)
    state.set_units(period, entries, fill(members, cap_f, cap_t, total, rule))


def _split_sells(state: _TieState, period: int, entries: list[int], total: int,
                 rule: str) -> None:
    """Listings are shared through their unsold parts, whose caps nest like the bids' ones;
    the latest listing keeps the most unsold, so the earliest sells first."""
    book = state.book
    qty = [int(book.entry_qty[e]) for e in entries]
    members = [state.member(e, q, -int(book.rank[book.entry_order[e]]))
               for e, q in zip(entries, qty, strict=True)]
    cap_f, cap_t, _, _ = state.caps(period, entries, -1)
    unsold = fill(members, cap_f, cap_t, sum(qty) - total, rule)
    state.set_units(period, entries, [q - u for q, u in zip(qty, unsold, strict=True)])


def _extend_flat_overlap(state: _TieState, period: int, buys: list[int], sells: list[int],
                         rule: str) -> None:
    book = state.book
    cap_f, cap_t, _, _ = state.caps(period, buys, +1)
    members = [state.member(e, int(book.entry_qty[e]), 0) for e in buys]
    bought = sum(int(state.units[e]) for e in buys)
    room_buy = capacity(members, cap_f, cap_t) - bought
    room_sell = sum(int(book.entry_qty[e] - state.units[e]) for e in sells)
    extra = min(room_buy, room_sell)
    if extra <= 0:
        return
    # More selling only lowers loads, so the extra listing volume needs no caps; placing it on
    # top of the current sales keeps every earlier bid feasible.
    unsold = [int(book.entry_qty[e] - state.units[e]) for e in sells]
    top = fill([state.member(e, u, int(book.rank[book.entry_order[e]]))
                for e, u in zip(sells, unsold, strict=True)], {}, {}, extra, rule)
    state.set_units(period, sells, [int(state.units[e]) + d
                                    for e, d in zip(sells, top, strict=True)])
    _split_buys(state, period, buys, bought + extra, rule)


def apply_tie_rule(book: Book, units: np.ndarray, net: Flows, prices: Prices,
                   rule: str) -> np.ndarray:
    """The allocation with every zone's marginal volume shared by `rule`."""
    units = units.copy()
    entry_price = prices.feeder[book.entry_period, book.entry_feeder]
    marginal = (~book.entry_is_block) & (entry_price != NO_PRICE) & \
        (entry_price == book.entry_price)
    candidates = np.flatnonzero(marginal)
    if len(candidates) == 0:
        return units
    # Zone of each marginal entry: the topmost node reachable over uncongested limits.
    period = book.entry_period[candidates]
    feeder = book.entry_feeder[candidates]
    trans = book.feeder_parent[feeder]
    f_price = prices.feeder[period, feeder]
    t_price = prices.transformer[period, trans]
    s_price = prices.system[period]
    zone = np.where(f_price != t_price, 2 * len(book.transformers) + 1 + feeder,
                    np.where(t_price != s_price, 1 + trans, 0))
    groups: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for e, t, z in zip(candidates.tolist(), period.tolist(), zone.tolist(), strict=True):
        buys, sells = groups.setdefault((t, z), ([], []))
        (buys if book.is_buy[book.entry_order[e]] else sells).append(e)
    state = _TieState(book, units, net)
    for (t, _zone), (buys, sells) in sorted(groups.items()):
        if buys and sells:
            _extend_flat_overlap(state, t, buys, sells, rule)
        if len(sells) > 1:
            _split_sells(state, t, sells, sum(int(state.units[e]) for e in sells), rule)
        if len(buys) > 1:
            _split_buys(state, t, buys, sum(int(state.units[e]) for e in buys), rule)
    return state.units
