"""One settlement run's money: capacity payments, deviation charges, the penalty pool and the
congestion rent, as statement lines in integer fen that sum to exactly zero.

Sign convention: a positive amount is paid by the account, a negative one is received.
Buyers pay the clearing price for what they bought, sellers receive it for what they sold,
and the park operator receives the difference (the congestion rent). Deviation charges form
a penalty pool that is paid back to the enterprises that were not charged, in proportion to
their contracted capacity (a residual reallocation, as in the UK balancing and settlement
code). All amounts are computed exactly and rounded together by the largest-remainder method,
so the run's money sums to zero to the fen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from settlement.money import round_preserving_sum, to_fen_exact

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


def settle(trades: Sequence[Trade], charges: Sequence[Charge],
           contracted_kva: Mapping[str, Decimal], hours: Decimal) -> list[Line]:
    """The run's statement lines, sorted, summing to zero fen."""
    exact: dict[tuple, Decimal] = {}

    def add(account: str, kind: str, period: int | None, reference: str, yuan: Decimal):
        key = (account, kind, -1 if period is None else period, reference)
        exact[key] = exact.get(key, Decimal(0)) + to_fen_exact(yuan)

    rent = Decimal(0)
    for trade in trades:
        if trade.side not in ("buy", "sell"):
            raise ValueError(f"trade {trade.order_id}: side must be 'buy' or 'sell'")
        value = trade.kva * trade.price * hours
        sign = 1 if trade.side == "buy" else -1
        add(trade.enterprise, "capacity", trade.period, trade.order_id, sign * value)
        rent += sign * value
    if rent:
        add(OPERATOR, "congestion-rent", None, "", -rent)

    pool = Decimal(0)
    charged = set()
    for charge in charges:
        if charge.yuan < 0:
            raise ValueError(f"{charge.enterprise}: a deviation charge cannot be negative")
        if charge.yuan:
            add(charge.enterprise, "deviation", charge.period, "", charge.yuan)
            pool += charge.yuan
            charged.add(charge.enterprise)
    if pool:
        shares = {e: kva for e, kva in contracted_kva.items() if e not in charged and kva > 0}
        whole = sum(shares.values(), Decimal(0))
        if whole == 0:
            add(OPERATOR, "penalty-pool", None, "", -pool)  # nobody to pay it back to
        for enterprise, kva in sorted(shares.items()):
            add(enterprise, "penalty-pool", None, "", -pool * kva / whole)

    keys = {"|".join(map(str, key)): key for key in exact}
    rounded = round_preserving_sum({name: exact[key] for name, key in keys.items()})
    lines = [Line(key[0], key[1], None if key[2] == -1 else key[2], key[3], rounded[name])
             for name, key in keys.items() if rounded[name] or exact[key]]
    return sorted(lines, key=lambda line: (line.account, line.kind,
                                           -1 if line.period is None else line.period,
                                           line.reference))


def totals(lines: Sequence[Line]) -> dict[str, int]:
    """Each account's net amount in fen (positive: it pays)."""
    out: dict[str, int] = {}
    for line in lines:
        out[line.account] = out.get(line.account, 0) + line.fen
    return dict(sorted(out.items()))
