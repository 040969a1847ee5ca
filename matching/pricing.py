"""Exact, deterministic nodal prices of a cleared allocation.

The prices are the dual values of the clearing LP with the block choices fixed, found
combinatorially instead of read from the solver: on the radial park network a price vector is
consistent with an allocation exactly when

* every divisible order is on the right side of its node's price (a fully accepted bid is at or
  above it, a rejected bid at or below it, a partly accepted one exactly at it; mirrored for
  listings),
* the price of a node equals its parent's unless the node's limit is exactly met, in which
  case it may be higher (the congestion price of that transformer or feeder, which is ≥ 0).

Each node's feasible price interval is computed exactly (bottom-up projections of the order
conditions, then top-down lower bounds). The documented rule where the price is not unique:
**each price zone takes the midpoint of its feasible interval, rounded half-to-even to the
0.0001 tick; if only one end is finite, that end**. Zones are chosen bottom-up: a zone behind a
met limit first (from its own interval), then the zone above it, whose interval is capped by the
prices chosen below (so a substation without orders of its own takes the lowest price below).

Accepted block orders add "soft" bounds (a bid at or above the price, a listing at or below it
in each of its periods), used when they fit the hard interval, so that blocks are kept in the
money where the divisible orders leave room. All arithmetic is on
integer ticks, so the result is exact and the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matching.book import Book
from matching.errors import SolverError

NEG = -(1 << 62)
POS = 1 << 62
NO_PRICE = NEG  # marker in the price arrays


@dataclass(frozen=True)
class Flows:
    """Net load change (bought − sold, units) per period at every feeder and transformer."""

    feeder: np.ndarray  # (periods, feeders)
    transformer: np.ndarray  # (periods, transformers)
    balance: np.ndarray  # (periods,)


def flows(book: Book, units: np.ndarray) -> Flows:
    signed = book.entry_sign * units
    n_f, n_t = len(book.feeders), len(book.transformers)
    feeder = np.zeros((book.periods, n_f), dtype=np.int64)
    np.add.at(feeder, (book.entry_period, book.entry_feeder), signed)
    transformer = np.zeros((n_t, book.periods), dtype=np.int64)
    np.add.at(transformer, book.feeder_parent, feeder.T)
    balance = feeder.sum(axis=1) if n_f else np.zeros(book.periods, dtype=np.int64)
    return Flows(feeder=feeder, transformer=transformer.T.copy(), balance=balance)


@dataclass(frozen=True)
class Prices:
    """Prices in ticks per period: at the substation (system) and at every asset."""

    system: np.ndarray  # (periods,), NO_PRICE where the period has none
    transformer: np.ndarray  # (periods, transformers)
    feeder: np.ndarray  # (periods, feeders)

    @property
    def has_price(self) -> np.ndarray:
        return self.system != NO_PRICE


def _intervals(book: Book, mask_lo: np.ndarray, mask_hi: np.ndarray) -> tuple[np.ndarray, ...]:
    shape = (book.periods, len(book.feeders))
    lo, hi = np.full(shape, NEG, dtype=np.int64), np.full(shape, POS, dtype=np.int64)
    period, feeder, price = book.entry_period, book.entry_feeder, book.entry_price
    np.maximum.at(lo, (period[mask_lo], feeder[mask_lo]), price[mask_lo])
    np.minimum.at(hi, (period[mask_hi], feeder[mask_hi]), price[mask_hi])
    return lo, hi


def _up(book: Book, lo_f, hi_f, bind_f, bind_t):
    """Projects feeder intervals onto transformers and the system: across a limit that is
    met only the upper end passes (the child's price may exceed the parent's)."""
    n_t = len(book.transformers)
    lo_t = np.full((n_t, book.periods), NEG, dtype=np.int64)
    hi_t = np.full((n_t, book.periods), POS, dtype=np.int64)
    np.maximum.at(lo_t, book.feeder_parent, np.where(bind_f, NEG, lo_f).T)
    np.minimum.at(hi_t, book.feeder_parent, hi_f.T)
    lo_t, hi_t = lo_t.T, hi_t.T
    lo_r = np.where(bind_t, NEG, lo_t).max(axis=1, initial=NEG)
    hi_r = hi_t.min(axis=1, initial=POS)
    return lo_t, hi_t, lo_r, hi_r


def _pick(h_lo, h_hi, s_lo, s_hi) -> np.ndarray:
    lo, hi = np.maximum(h_lo, s_lo), np.minimum(h_hi, s_hi)
    soft_fits = lo <= hi
    # Blocks alone (no divisible order bounds the price) whose ranges cross still get a
    # price, the middle of the crossed range: the caller then finds the blocks out of the
    # money at it and excludes them, instead of seeing a period without a price.
    free = (h_lo == NEG) & (h_hi == POS)
    lo = np.where(soft_fits, lo, np.where(free, s_hi, h_lo))
    hi = np.where(soft_fits, hi, np.where(free, s_lo, h_hi))
    lo_finite, hi_finite = lo != NEG, hi != POS
    both = lo_finite & hi_finite
    total = np.where(both, lo, 0) + np.where(both, hi, 0)
    half = total // 2
    mid = np.where(total % 2 == 0, half, half + half % 2)  # round half to even
    return np.where(both, mid, np.where(lo_finite, lo, np.where(hi_finite, hi, NO_PRICE)))


def compute_prices(book: Book, units: np.ndarray, net: Flows) -> Prices:
    qty = book.entry_qty
    buy = book.is_buy[book.entry_order]
    block = book.entry_is_block
    full, zero = units == qty, units == 0
    part = ~full & ~zero
    div = ~block
    hard = _intervals(book, div & ((buy & (zero | part)) | (~buy & (full | part))),
                      div & ((buy & (full | part)) | (~buy & (zero | part))))
    accepted_block = block & ~zero
    soft = _intervals(book, accepted_block & ~buy, accepted_block & buy)
    bind_f = net.feeder == book.headroom_f
    bind_t = net.transformer == book.headroom_t
    h_t_lo, h_t_hi, h_r_lo, h_r_hi = _up(book, *hard, bind_f, bind_t)
    s_t_lo, s_t_hi, s_r_lo, s_r_hi = _up(book, *soft, bind_f, bind_t)

    has_orders = np.bincount(book.entry_period, minlength=book.periods) > 0
    for lo, hi in ((hard[0], hard[1]), (h_t_lo, h_t_hi), (h_r_lo, h_r_hi)):
        bad = (lo > hi) & (has_orders.reshape((-1,) + (1,) * (lo.ndim - 1)))
        if bad.any():
            raise SolverError("the allocation admits no consistent prices (not optimal)")

    # Feasible range of each node's price given the whole tree: a node whose limit is met
    # is at least its parent's lowest price; one whose limit is not met equals its parent.
    r_lo = np.maximum(h_t_lo, h_r_lo[:, None])
    t_lo = np.where(bind_t, r_lo, h_r_lo[:, None])
    t_hi = np.where(bind_t, h_t_hi, h_r_hi[:, None])
    parent_lo, parent_hi = t_lo[:, book.feeder_parent], t_hi[:, book.feeder_parent]
    f_lo = np.where(bind_f, np.maximum(hard[0], parent_lo), parent_lo)
    f_hi = np.where(bind_f, hard[1], parent_hi)

    # Choose bottom-up so that every zone behind a met limit gets the midpoint of its own
    # range; a parent is then capped by the prices chosen below it.
    # A node whose range is unbounded both ways (nothing below it trades) is left to its parent.
    feeder = np.where(bind_f, _pick(f_lo, f_hi, *soft), NO_PRICE)
    chosen_f = feeder != NO_PRICE
    cap_t = np.full((len(book.transformers), book.periods), POS, dtype=np.int64)
    np.minimum.at(cap_t, book.feeder_parent, np.where(chosen_f, feeder, POS).T)
    cap_t = cap_t.T
    trans = np.where(bind_t, _pick(t_lo, np.minimum(t_hi, cap_t), s_t_lo,
                                   np.minimum(s_t_hi, cap_t)), NO_PRICE)
    chosen_t = trans != NO_PRICE
    cap_r = np.where(chosen_t, trans, cap_t).min(axis=1, initial=POS)
    system = _pick(h_r_lo, np.minimum(h_r_hi, cap_r), s_r_lo, np.minimum(s_r_hi, cap_r))
    system = np.where(has_orders, system, NO_PRICE)
    trans = np.where(chosen_t, trans, system[:, None])
    feeder = np.where(chosen_f, feeder, trans[:, book.feeder_parent])
    no_price = (system == NO_PRICE)[:, None]
    return Prices(system=system, transformer=np.where(no_price, NO_PRICE, trans),
                  feeder=np.where(no_price, NO_PRICE, feeder))


def entry_prices(book: Book, prices: Prices) -> np.ndarray:
    """Node price of every entry (NO_PRICE where its period has none)."""
    return prices.feeder[book.entry_period, book.entry_feeder]
