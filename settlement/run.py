"""One settlement run's money: capacity payments, deviation charges, the penalty pool and the
congestion rent, as statement lines in integer fen that sum to exactly zero.

Sign convention: a positive amount is paid by the account, a negative one is received.
Buyers pay the clearing price for what they bought, sellers receive it for what they sold,
and the park operator receives the difference (the congestion rent). Deviation charges form
a penalty pool that is paid back to the enterprises that were not charged, in proportion to
their contracted capacity (a residual reallocation, as in the UK balancing and settlement
code). All amounts are computed exactly (integers over one common denominator, so a day of
a large park is quick) and rounded together by the largest-remainder method, ties going to the
earlier line in statement order, so the run's money sums to zero to the fen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from settlement.money import FEN_PER_YUAN, decimal_places, largest_remainder, scaled_int

OPERATOR = "operator"  # the park operator's account: congestion rent, an unshared pool


@dataclass(frozen=True)
class Trade:
    """Capacity one enterprise bought or sold in one period at its clearing price."""

    enterprise: str
    order_id: str
    side: str  # "buy" | "sell"
    period: int
    kva: Decimal
    price: Decimal  # yuan per kVA per hour


@dataclass(frozen=True)
class Charge:
    """A deviation charge of one enterprise in one period (exact yuan)."""

    enterprise: str
    period: int
    yuan: Decimal


@dataclass(frozen=True)
class Line:
    """One statement line: who, what for, which period (None for a day total), fen."""

    account: str
    kind: str  # capacity | deviation | penalty-pool | congestion-rent
    period: int | None
    reference: str
    fen: int


def line_key(line: Line) -> tuple[str, str, int, str]:
    """The order of statement lines (a day total before the periods)."""
    return (line.account, line.kind, -1 if line.period is None else line.period,
            line.reference)


def settle(trades: Sequence[Trade], charges: Sequence[Charge],
           contracted_kva: Mapping[str, Decimal], hours: Decimal) -> list[Line]:
    """The run's statement lines, sorted, summing to zero fen."""
    hours = Decimal(hours)
    values = []  # exact fen of each trade, signed, as (numerator, decimal places)
    for trade in trades:
        if trade.side not in ("buy", "sell"):
            raise ValueError(f"trade {trade.order_id}: side must be 'buy' or 'sell'")
        places = [decimal_places(Decimal(x)) for x in (trade.kva, trade.price, hours)]
        number = (scaled_int(Decimal(trade.kva), places[0])
                  * scaled_int(Decimal(trade.price), places[1])
                  * scaled_int(hours, places[2]) * FEN_PER_YUAN)
        values.append((number if trade.side == "buy" else -number, sum(places)))
    amounts = []
    for charge in charges:
        yuan = Decimal(charge.yuan)
        if yuan < 0:
            raise ValueError(f"{charge.enterprise}: a deviation charge cannot be negative")
        places = decimal_places(yuan)
        amounts.append((scaled_int(yuan, places) * FEN_PER_YUAN, places))
    places = max((p for _, p in values + amounts), default=0)
    weight_places = max((decimal_places(Decimal(k)) for k in contracted_kva.values()),
                        default=0)
    return settle_exact(
        ((t.enterprise, t.order_id, t.period, n * 10 ** (places - p))
         for t, (n, p) in zip(trades, values, strict=True)),
        ((c.enterprise, c.period, n * 10 ** (places - p))
         for c, (n, p) in zip(charges, amounts, strict=True)),
        {e: scaled_int(Decimal(k), weight_places) for e, k in contracted_kva.items()},
        10 ** places)


def settle_exact(capacity: Iterable[tuple[str, str, int, int]],
                 charges: Iterable[tuple[str, int, int]], weights: Mapping[str, int],
                 denominator: int) -> list[Line]:
    """`settle` on exact integers: every amount is a numerator over `denominator` fen.

    `capacity` holds (enterprise, order id, period, signed amount: positive for a buyer),
    `charges` (enterprise, period, amount ≥ 0), `weights` each enterprise's share of the
    penalty pool (its contracted capacity in any one integer unit).
    """
    exact: dict[tuple[str, str, int, str], int] = {}
    rent = 0
    for enterprise, order_id, period, amount in capacity:
        key = (enterprise, "capacity", period, order_id)
        exact[key] = exact.get(key, 0) + amount
        rent += amount
    if rent:
        exact[(OPERATOR, "congestion-rent", -1, "")] = -rent

    pool = 0
    charged = set()
    for enterprise, period, amount in charges:
        if amount < 0:
            raise ValueError(f"{enterprise}: a deviation charge cannot be negative")
        if amount:
            key = (enterprise, "deviation", period, "")
            exact[key] = exact.get(key, 0) + amount
            pool += amount
            charged.add(enterprise)
    if pool:
        shares = {e: w for e, w in weights.items() if e not in charged and w > 0}
        whole = sum(shares.values())
        if whole == 0:
            key = (OPERATOR, "penalty-pool", -1, "")  # nobody to pay it back to
            exact[key] = exact.get(key, 0) - pool
        else:
            # Shares are pool × weight / whole: bring every amount over one denominator.
            exact = {key: amount * whole for key, amount in exact.items()}
            denominator *= whole
            for enterprise, weight in shares.items():
                key = (enterprise, "penalty-pool", -1, "")
                exact[key] = exact.get(key, 0) - pool * weight

    keys = sorted(exact)
    numerators = [exact[key] for key in keys]
    rounded = largest_remainder(numerators, denominator)
    return [Line(key[0], key[1], None if key[2] == -1 else key[2], key[3], fen)
            for key, fen, number in zip(keys, rounded, numerators, strict=True)
            if fen or number]


def totals(lines: Iterable[Line]) -> dict[str, int]:
    """Each account's net amount in fen (positive: it pays)."""
    out: dict[str, int] = {}
    for line in lines:
        out[line.account] = out.get(line.account, 0) + line.fen
    return dict(sorted(out.items()))
