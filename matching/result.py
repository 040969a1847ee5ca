"""The outcome of one clearing run and its canonical, hashable byte form.

Units: quantities in kVA (multiples of 0.1), prices in yuan per kVA per hour (4 decimals).
`welfare` and `congestion_rent` are in **yuan for one hour of each period, summed over the
periods** (Σ price × kVA); multiply by the period length in hours (1 for hourly periods, 0.25
for quarter-hours) to get yuan.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

FORMAT_VERSION = 1

QUANTITY_EXP = Decimal("0.1")
PRICE_EXP = Decimal("0.0001")
MONEY_EXP = Decimal("0.00001")


def _fmt(value: Decimal, exp: Decimal) -> str:
    return format(value.quantize(exp), "f")


@dataclass(frozen=True)
class ClearingResult:
    """Accepted quantities and prices of one clearing.

    * ``accepted[order_id][period]``: accepted kVA (only orders and periods with some volume);
    * ``order_prices[order_id][period]``: the price each accepted order settles at in that
      period (its node price under zonal pricing, its own price under pay-as-bid);
    * ``system_prices[period]``: the price at the substation (balance) in periods that have
      orders; ``node_prices[asset_code][period]``: the price at every transformer and feeder.
      An enterprise's node price is its feeder's. A transformer or feeder whose limit is met
      may be priced above its parent: the difference is that limit's congestion price. Node
      prices are computed under both pricing rules; under pay-as-bid they are for display;
    * ``paradoxically_rejected``: block orders rejected although in the money at the final
      prices (zonal pricing only);
    * ``excluded_blocks``: block orders that the welfare optimum accepted but that were out of
      the money at its prices, and so were excluded before the final solve (zonal only);
    * ``congestion_rent``: what buyers pay minus what sellers receive at node prices.
    """

    status: str  # "optimal" | "feasible" (time limit, best found) | "empty" (no volume)
    reason: str | None
    pricing: str
    welfare: Decimal
    congestion_rent: Decimal
    hit_time_limit: bool
    accepted: Mapping[str, Mapping[int, Decimal]]
    order_prices: Mapping[str, Mapping[int, Decimal]]
    system_prices: Mapping[int, Decimal]
    node_prices: Mapping[str, Mapping[int, Decimal]]
    paradoxically_rejected: tuple[str, ...] = ()
    excluded_blocks: tuple[str, ...] = ()
    # Run statistics (timings, gap): not part of the canonical bytes or of equality.
    stats: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def volume(self) -> Decimal:
        """Total accepted kVA of bids over all periods (= that of listings)."""
        return sum((q for periods in self.accepted.values() for q in periods.values()),
                   Decimal(0)) / 2

    def zones(self, period: int, feeders: tuple[str, ...] | None = None
              ) -> dict[Decimal, tuple[str, ...]]:
        """Price zones of a period: each distinct node price and the assets that have it (or
        only the given feeders)."""
        out: dict[Decimal, list[str]] = {}
        for code in sorted(self.node_prices):
            if feeders is not None and code not in feeders:
                continue
            price = self.node_prices[code].get(period)
            if price is not None:
                out.setdefault(price, []).append(code)
        return {price: tuple(codes) for price, codes in sorted(out.items())}

    def as_document(self) -> dict:
        def periods(values: Mapping[int, Decimal], exp: Decimal) -> dict:
            return {str(t): _fmt(v, exp) for t, v in values.items()}

        return {
            "format": FORMAT_VERSION,
            "status": self.status,
            "reason": self.reason,
            "pricing": self.pricing,
            "welfare": _fmt(self.welfare, MONEY_EXP),
            "congestion_rent": _fmt(self.congestion_rent, MONEY_EXP),
            "hit_time_limit": self.hit_time_limit,
            "accepted": {o: periods(v, QUANTITY_EXP) for o, v in self.accepted.items()},
            "order_prices": {o: periods(v, PRICE_EXP) for o, v in self.order_prices.items()},
            "system_prices": periods(self.system_prices, PRICE_EXP),
            "node_prices": {a: periods(v, PRICE_EXP) for a, v in self.node_prices.items()},
            "paradoxically_rejected": sorted(self.paradoxically_rejected),
            "excluded_blocks": sorted(self.excluded_blocks),
        }

    def canonical_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, ASCII, every number a string."""
        return json.dumps(self.as_document(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True).encode("ascii")

    @property
    def result_hash(self) -> str:
        return "0x" + hashlib.sha256(self.canonical_bytes()).hexdigest()

    @classmethod
    def from_canonical_bytes(cls, data: bytes) -> ClearingResult:
        doc = json.loads(data)
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown clearing result format {doc.get('format')!r}")

        def periods(values: Mapping[str, str]) -> dict[int, Decimal]:
            return {int(t): Decimal(v) for t, v in sorted(values.items(), key=lambda i:
                                                          int(i[0]))}

        return cls(
            status=doc["status"], reason=doc["reason"], pricing=doc["pricing"],
            welfare=Decimal(doc["welfare"]), congestion_rent=Decimal(doc["congestion_rent"]),
            hit_time_limit=bool(doc["hit_time_limit"]),
            accepted={o: periods(v) for o, v in sorted(doc["accepted"].items())},
            order_prices={o: periods(v) for o, v in sorted(doc["order_prices"].items())},
            system_prices=periods(doc["system_prices"]),
            node_prices={a: periods(v) for a, v in sorted(doc["node_prices"].items())},
            paradoxically_rejected=tuple(doc["paradoxically_rejected"]),
            excluded_blocks=tuple(doc["excluded_blocks"]))
