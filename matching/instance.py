"""Typed, validated input of one day-ahead clearing: orders, the park network and the rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from matching.errors import InvalidInstanceError

SIDES = ("sell", "buy")
ASSET_KINDS = ("transformer", "feeder")
PRICING_RULES = ("zonal", "pay_as_bid")
TIE_RULES = ("pro_rata", "time_priority")

# Prices are quoted to 4 decimals (1 tick = 0.0001 yuan per kVA per hour) and volumes to
# 0.1 kVA (1 unit); the solver works on these integers so that results are exact.
PRICE_DECIMALS = 4
QUANTITY_DECIMALS = 1


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        return 1 << 30  # NaN or infinity: never acceptable
    return max(0, -exponent)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidInstanceError(message)


@dataclass(frozen=True)
class Order:
    """A sell listing or buy bid for capacity in one or more periods of the day."""

    order_id: str
    side: str
    enterprise: str
    price: Decimal
    quantities: tuple[tuple[int, Decimal], ...]
    all_or_none: bool = False
    min_fraction: Decimal | None = None
    priority: int = 0

    def __post_init__(self) -> None:
        _require(isinstance(self.order_id, str) and bool(self.order_id),
                 f"order id must be a non-empty string, got {self.order_id!r}")
        oid = self.order_id
        _require(self.side in SIDES, f"order {oid}: side must be 'sell' or 'buy'")
        _require(isinstance(self.enterprise, str) and bool(self.enterprise),
                 f"order {oid}: enterprise must be a node code")
        _require(isinstance(self.price, Decimal) and self.price.is_finite() and self.price > 0,
                 f"order {oid}: price must be a positive Decimal")
        _require(_decimals(self.price) <= PRICE_DECIMALS,
                 f"order {oid}: price {self.price} has more than {PRICE_DECIMALS} decimals")
        _require(len(self.quantities) > 0, f"order {oid}: no quantities")
        seen: set[int] = set()
        for period, kva in self.quantities:
            _require(isinstance(period, int) and not isinstance(period, bool) and period >= 0,
                     f"order {oid}: period {period!r} is not a non-negative integer")
            _require(period not in seen, f"order {oid}: period {period} given twice")
            seen.add(period)
            _require(isinstance(kva, Decimal) and kva.is_finite() and kva > 0,
                     f"order {oid}: quantity in period {period} must be a positive Decimal")
            _require(_decimals(kva) <= QUANTITY_DECIMALS,
                     f"order {oid}: quantity {kva} is finer than 0.1 kVA")
        if self.min_fraction is not None:
            f = self.min_fraction
            _require(isinstance(f, Decimal) and f.is_finite() and 0 < f <= 1,
                     f"order {oid}: min_fraction must be a Decimal in (0, 1]")
            _require(not self.all_or_none,
                     f"order {oid}: all_or_none and min_fraction exclude each other")
        _require(isinstance(self.priority, int), f"order {oid}: priority must be an integer")

    @property
    def is_block(self) -> bool:
        """Whether the order is accepted at one fraction across all its periods."""
        return self.all_or_none or self.min_fraction is not None


@dataclass(frozen=True)
class Asset:
    """A main transformer or a feeder with its loading limit and base load per period."""

    code: str
    kind: str
    limit_kva: Decimal
    base_load: tuple[Decimal, ...]
    parent: str | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.code, str) and bool(self.code), "asset code must be non-empty")
        _require(self.kind in ASSET_KINDS,
                 f"asset {self.code}: kind must be 'transformer' or 'feeder'")
        _require(isinstance(self.limit_kva, Decimal) and self.limit_kva.is_finite()
                 and self.limit_kva >= 0, f"asset {self.code}: limit must be a Decimal ≥ 0")
        for load in self.base_load:
            _require(isinstance(load, Decimal) and load.is_finite(),
                     f"asset {self.code}: base loads must be finite Decimals")


@dataclass(frozen=True)
class Network:
    """The park's radial topology: transformers, their feeders, and each enterprise's feeder."""

    assets: tuple[Asset, ...]
    enterprise_feeder: Mapping[str, str]

    def __post_init__(self) -> None:
        codes = [a.code for a in self.assets]
        _require(len(set(codes)) == len(codes), "asset codes must be unique")
        kinds = {a.code: a.kind for a in self.assets}
        for asset in self.assets:
            if asset.kind == "feeder":
                _require(kinds.get(asset.parent or "") == "transformer",
                         f"feeder {asset.code}: parent must be a transformer of the network")
            else:
                # A transformer's parent is its substation, which has no limit of its own here.
                _require(asset.parent not in kinds,
                         f"transformer {asset.code}: parent must not be another asset")
        for enterprise, feeder in self.enterprise_feeder.items():
            _require(kinds.get(feeder) == "feeder",
                     f"enterprise {enterprise}: {feeder!r} is not a feeder of the network")


@dataclass(frozen=True)
class ClearingInstance:
    """Everything one clearing run needs: the day's periods, the order book, the network."""

    periods: int
    orders: tuple[Order, ...]
    network: Network
    pricing: str = "zonal"
    tie_rule: str = "pro_rata"

    def __post_init__(self) -> None:
        _require(isinstance(self.periods, int) and self.periods >= 1, "periods must be ≥ 1")
        _require(self.pricing in PRICING_RULES, "pricing must be 'zonal' or 'pay_as_bid'")
        _require(self.tie_rule in TIE_RULES, "tie_rule must be 'pro_rata' or 'time_priority'")
        for asset in self.network.assets:
            _require(len(asset.base_load) == self.periods,
                     f"asset {asset.code}: {len(asset.base_load)} base loads for "
                     f"{self.periods} periods")
        ids: set[str] = set()
        feeders = self.network.enterprise_feeder
        for order in self.orders:
            _require(isinstance(order, Order), "orders must be Order objects")
            _require(order.order_id not in ids, f"order id {order.order_id} is not unique")
            ids.add(order.order_id)
            _require(order.enterprise in feeders,
                     f"order {order.order_id}: enterprise {order.enterprise} is not connected")
            for period, _ in order.quantities:
                _require(period < self.periods,
                         f"order {order.order_id}: period {period} outside 0..{self.periods - 1}")
