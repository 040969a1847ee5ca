"""Order rules on the demo park: spare capacity, supply-path headroom, gate closure, versions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from parkgrid.models import DemandProfile, Enterprise, Order, User
from parkgrid.services import calendar, grid
from parkgrid.services import orders as service
from parkgrid.services.errors import Conflict, Forbidden, NotFound, ValidationFailed


def user(session, username):
    return session.scalar(select(User).where(User.username == username))


def order_input(day, side="sell", qty="10", periods=(8,), price="0.05", **extra):
    return service.OrderInput(side=side, delivery_day=day,
                              periods={p: qty for p in periods}, price=price, **extra)


@pytest.fixture
def market(demo_platform):
    """A session, the enterprise user, its open delivery day and a moment before its gate."""
    with demo_platform.unit_of_work() as session:
        seller = user(session, "enterprise")
        park = seller.enterprise.park
        now = calendar.utcnow()
        day = calendar.open_delivery_day(park, now)
        yield session, seller, day, now


def test_a_seller_lists_at_most_its_spare_capacity(market):
    session, seller, day, now = market
    enterprise = seller.enterprise
    demand = session.scalar(select(DemandProfile.demand_kva).where(
        DemandProfile.enterprise_id == enterprise.id, DemandProfile.period_index == 8))
    spare = enterprise.contracted_kva - demand
    service.create_order(session, seller, order_input(day, qty=spare - 10), now)
    with pytest.raises(ValidationFailed) as refused:
        service.create_order(session, seller, order_input(day, qty="10.1"), now)
    text = refused.value.problems[0].text()
    assert "spare capacity of 10.0 kVA" in text and f"already listed {spare - 10}" in text
    service.create_order(session, seller, order_input(day, qty="10"), now)  # exactly the rest


def test_declared_demand_overrides_the_metered_profile(market):
    session, seller, day, now = market
    enterprise = seller.enterprise
    session.add(DemandProfile(enterprise_id=enterprise.id, delivery_day=day, period_index=8,
                              demand_kva=enterprise.contracted_kva, source="declared"))
    session.flush()
    with pytest.raises(ValidationFailed, match="spare capacity of 0 kVA"):
        service.create_order(session, seller, order_input(day, qty="1"), now)


def test_a_buyer_asks_at_most_what_its_supply_path_can_take(market):
    session, seller, day, now = market
    limits = grid.order_limits(session, seller.enterprise, day, "buy")
    headroom = limits[10].available
    assert headroom > 0
    with pytest.raises(ValidationFailed) as refused:
        service.create_order(session, seller, order_input(
            day, side="buy", qty=headroom + Decimal("0.1"), periods=(10,)), now)
    text = refused.value.problems[0].text()
    assert limits[10].params["asset"] in text and "headroom" in text
    service.create_order(session, seller, order_input(day, side="buy", qty=headroom,
                                                      periods=(10,)), now)


def test_gate_closure_boundary_in_the_platform(market):
    session, seller, day, _now = market
    gate = calendar.gate_closure(seller.enterprise.park, day)
    service.create_order(session, seller, order_input(day), gate - timedelta(seconds=1))
    for moment in (gate, gate + timedelta(seconds=1)):
        with pytest.raises(ValidationFailed, match="Gate closure"):
            service.create_order(session, seller, order_input(day), moment)


def test_min_fraction_and_side_are_checked(market):
    session, seller, day, now = market
    for bad in ("0", "1.5", "x"):
        with pytest.raises(ValidationFailed, match="minimum accepted fraction"):
            service.create_order(session, seller, order_input(day, min_fraction=bad), now)
    with pytest.raises(ValidationFailed, match="either 'sell' or 'buy'"):
        service.create_order(session, seller, order_input(day, side="swap"), now)


def test_amend_and_cancel_by_the_owner_until_gate_closure(demo_platform):
    with demo_platform.unit_of_work() as session:
        seller = user(session, "enterprise")
        now = calendar.utcnow()
        day = calendar.open_delivery_day(seller.enterprise.park, now)
        order = service.create_order(session, seller, order_input(day), now)
        with pytest.raises(Conflict, match="not on the chain yet"):
            service.amend_order(session, seller, order.public_id, order_input(day, qty="5"), now)
        order_id, public_id = order.id, order.public_id
    assert service.record_order_on_chain(demo_platform, order_id) == "recorded"

    with demo_platform.unit_of_work() as session:
        seller, other = user(session, "enterprise"), user(session, "enterprise2")
        with pytest.raises(NotFound):
            service.amend_order(session, other, public_id, order_input(day, qty="5"), now)
        order = service.amend_order(session, seller, public_id,
                                    order_input(day, qty="5", periods=(8, 9)), now)
        assert order.version == 2 and [p.period_index for p in order.periods] == [8, 9]
    block = demo_platform.chain.block_number()
    assert service.record_order_on_chain(demo_platform, order_id) == "recorded"
    assert service.record_order_on_chain(demo_platform, order_id) == "recorded"  # no-op
    assert demo_platform.chain.block_number() == block + 1

    with demo_platform.unit_of_work() as session:
        seller = user(session, "enterprise")
        gate = calendar.gate_closure(seller.enterprise.park, day)
        with pytest.raises(Conflict, match="Gate closure"):
            service.cancel_order(session, seller, public_id, gate)
        service.cancel_order(session, seller, public_id, now)
    service.record_order_on_chain(demo_platform, order_id)
    with demo_platform.unit_of_work() as session:
        order = session.get(Order, order_id)
        assert (order.status, order.version, order.chain_version) == ("cancelled", 3, 3)
        assert [a.action for a in order.actions] == ["new", "amend", "cancel"]
        assert all(a.chain_tx_hash for a in order.actions)
        with pytest.raises(Conflict, match="cancelled"):
            service.cancel_order(session, user(session, "enterprise"), public_id, now)
        record = demo_platform.market(session).order(bytes.fromhex("00" * 16) + bytes.fromhex(
            public_id.replace("-", "")))
        assert record.cancelled and record.version == 2  # the version it cancelled


def test_only_enterprises_place_orders(market):
    session, _seller, day, now = market
    staff = user(session, "settlement")
    with pytest.raises(Forbidden):
        service.create_order(session, staff, order_input(day), now)
    assert session.scalar(select(Enterprise).where(Enterprise.code == "E001")) is not None


def test_orders_waiting_together_go_in_one_batch_but_never_one_sent_alone(demo_platform):
    """Orders of one enterprise and day waiting for their first write are written in one
    batch; an order whose single write was ever sent keeps to its own path, so the chain can
    never hold it twice (its write may have been mined with the commit lost)."""
    with demo_platform.unit_of_work() as session:
        seller = user(session, "enterprise")
        now = calendar.utcnow()
        day = calendar.open_delivery_day(seller.enterprise.park, now)
        first = service.create_order(session, seller, order_input(day, qty="1"), now)
    # Sent on its own: marked before sending, and recorded.
    assert service.record_order_on_chain(demo_platform, first.id) == "recorded"
    with demo_platform.unit_of_work() as session:
        assert session.get(Order, first.id).single_sent_at is not None
        seller = user(session, "enterprise")
        ids = [service.create_order(session, seller, order_input(day, qty="1", periods=(p,)),
                                    now).id for p in (9, 10, 11)]
        # The first of these looks like a single write sent by a task that died before its
        # commit: it must stay out of any batch.
        session.get(Order, ids[0]).single_sent_at = now
    with demo_platform.unit_of_work() as session:
        batches, singles = service.outbox_groups(session)
        assert batches == [ids[1:]] and singles == [ids[0]]
        assert service._waiting_together(session, session.get(Order, ids[0])) == []
        # Two waiting are fewer than COALESCE_FROM: each goes on its own.
        assert service._waiting_together(session, session.get(Order, ids[1])) == []
        seller = user(session, "enterprise")
        ids.append(service.create_order(session, seller, order_input(day, qty="1",
                                                                     periods=(12,)), now).id)
    with demo_platform.unit_of_work() as session:
        assert service._waiting_together(session, session.get(Order, ids[2])) == ids[1:]
    block = demo_platform.chain.block_number()
    assert service.record_order_on_chain(demo_platform, ids[1]) == "recorded"
    assert demo_platform.chain.block_number() == block + 1  # one batch for the three
    with demo_platform.unit_of_work() as session:
        paths = [session.get(Order, i).chain_path for i in ids]
        assert paths == ["single", "batch", "batch", "batch"]
    assert service.record_order_on_chain(demo_platform, ids[0]) == "recorded"


def test_one_chain_writer_per_enterprise_takes_every_action_waiting(demo_platform):
    """The first order action committed since the enterprise's writer last started queues
    it; later ones ride along; once it has started, the next action queues it again."""
    with demo_platform.unit_of_work() as session:
        seller = user(session, "enterprise")
        other = user(session, "enterprise2")
        now = calendar.utcnow()
        day = calendar.open_delivery_day(seller.enterprise.park, now)
        queued = []
        for owner, period in ((seller, 3), (seller, 4), (other, 3), (seller, 5)):
            order = service.create_order(session, owner, order_input(day, qty="1",
                                                                     periods=(period,)), now)
            queued.append(service.request_chain_write(session, order))
            session.commit()
        assert queued == [True, False, True, False]
        seller_id = seller.enterprise_id
    assert service.record_enterprise_orders(demo_platform, seller_id) == 3
    with demo_platform.unit_of_work() as session:
        orders = session.scalars(select(Order).where(Order.enterprise_id == seller_id)).all()
        assert {o.chain_status for o in orders} == {"recorded"}
        assert len({o.chain_tx_hash for o in orders}) == 1  # the three in one batch
        assert service.pending_by_enterprise(session) == {other.enterprise_id: 1}
        # The writer started, so the next action of the seller queues it again.
        seller = user(session, "enterprise")
        order = service.create_order(session, seller, order_input(day, qty="1", periods=(6,)),
                                     now)
        assert service.request_chain_write(session, order) is True
    assert service.record_enterprise_orders(demo_platform, seller_id) == 1  # sent on its own
    assert service.record_enterprise_orders(demo_platform, seller_id) == 0
