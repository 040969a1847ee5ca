"""Order intake reads only what an order's checks need, with the same outcome as before."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from sqlalchemy import delete, select

from parkgrid.models import DemandProfile, Enterprise, OrderSide, User
from parkgrid.services import calendar, grid
from parkgrid.services import orders as service


def whole_park_limits(session, enterprise, day, side):
    """The limits as computed from the whole park's demand and asset loads (the reference
    the narrower reads of `grid.order_limits` must equal)."""
    park = enterprise.park
    demand = grid.expected_demand(session, park, day)
    ordered = grid._already_ordered(session, enterprise, day, side, None)
    limits = {}
    if side == OrderSide.SELL:
        for i, own in enumerate(demand[enterprise.id]):
            listed = ordered.get(i, grid.ZERO)
            if own is None:
                limits[i] = (grid.ZERO, None)
                continue
            spare = max(grid.ZERO, enterprise.contracted_kva - own - listed)
            limits[i] = (spare, {"spare": spare, "contracted": enterprise.contracted_kva,
                                 "demand": own, "listed": listed})
        return limits
    feeders, transformers = grid.asset_loads(park, demand)
    feeder = enterprise.feeder
    transformer = feeder.transformer
    path = [(feeder.code, feeder.thermal_limit_kva, feeders[feeder.id]),
            (transformer.code, transformer.allowed_kva, transformers[transformer.id])]
    for i in range(calendar.periods_per_day(park)):
        bid = ordered.get(i, grid.ZERO)
        code, limit, loads = min(path, key=lambda a: a[1] - a[2][i])
        headroom = max(grid.ZERO, limit - loads[i] - bid).quantize(grid.TENTH, ROUND_FLOOR)
        limits[i] = (headroom, {"asset": code, "available": headroom, "limit": limit,
                                "load": loads[i], "bid": bid})
    return limits


def _same(narrow: dict, reference: dict) -> None:
    assert narrow.keys() == reference.keys()
    for i, limit in narrow.items():
        available, params = reference[i]
        # Equal and written the same (the figures appear in refusal messages).
        assert str(limit.available) == str(available), i
        if params is not None:
            assert {k: str(v) for k, v in limit.params.items()} == {
                k: str(v) for k, v in params.items()}, i


def test_narrow_limits_equal_the_whole_park_ones_for_every_enterprise_and_side(demo_platform):
    with demo_platform.unit_of_work() as session:
        seller = session.scalar(select(User).where(User.username == "enterprise"))
        now = calendar.utcnow()
        day = calendar.open_delivery_day(seller.enterprise.park, now)
        enterprises = session.scalars(select(Enterprise).order_by(Enterprise.code)).all()
        assert len(enterprises) > 20
        # Every branch: one enterprise with no profile at all (counts at its contracted kVA,
        # sells nothing), declared values for the day over the standing profile, and
        # existing orders of both sides.
        session.execute(delete(DemandProfile).where(
            DemandProfile.enterprise_id == enterprises[1].id))
        for enterprise in enterprises[2:6]:
            session.add(DemandProfile(enterprise_id=enterprise.id, delivery_day=day,
                                      period_index=8, demand_kva=Decimal("1.5"),
                                      source="declared"))
        session.flush()
        service.create_order(session, seller, service.OrderInput(
            side="sell", delivery_day=day, periods={8: "1.5", 9: "2"}, price="0.05"), now)
        service.create_order(session, seller, service.OrderInput(
            side="buy", delivery_day=day, periods={10: "0.3"}, price="0.05"), now)
        checked = 0
        for enterprise in enterprises:
            for side in OrderSide.ALL:
                _same(grid.order_limits(session, enterprise, day, side),
                      whole_park_limits(session, enterprise, day, side))
                checked += 1
        assert checked == 2 * len(enterprises)


def test_supply_path_loads_equal_the_park_asset_loads(demo_platform):
    with demo_platform.unit_of_work() as session:
        enterprise = session.scalars(select(Enterprise).order_by(Enterprise.code)).first()
        park = enterprise.park
        day = calendar.open_delivery_day(park, calendar.utcnow())
        feeders, transformers = grid.asset_loads(park, grid.expected_demand(session, park, day))
        for each in park.enterprises:
            feeder_loads, transformer_loads = grid.supply_path_loads(session, each, day)
            assert feeder_loads == feeders[each.feeder_id]
            assert transformer_loads == transformers[each.feeder.transformer_id]
