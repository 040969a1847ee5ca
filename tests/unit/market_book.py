"""A small order book on the demo park, shared by the clearing and settlement tests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from parkgrid.models import User
from parkgrid.services import calendar, clearing
from parkgrid.services import orders as order_service

PERIOD = 10  # the peak: 198.5 kVA of headroom left on the derated transformer


def user(session, username):
    return session.scalar(select(User).where(User.username == username))


def place(platform, username, side, qty, price, now):
    with platform.unit_of_work() as session:
        who = user(session, username)
        day = calendar.open_delivery_day(who.enterprise.park, now)
        order = order_service.create_order(session, who, order_service.OrderInput(
            side=side, delivery_day=day, periods={PERIOD: qty}, price=price), now)
        order_id, public_id = order.id, order.public_id
    assert order_service.record_order_on_chain(platform, order_id) == "recorded"
    return public_id


@pytest.fixture
def book(demo_platform):
    """A cheap seller behind one transformer, two bidders behind the derated one."""
    now = calendar.utcnow()
    ids = {
        "sell": place(demo_platform, "enterprise", "sell", "300", "0.0300", now),
        "buy_high": place(demo_platform, "enterprise2", "buy", "150", "0.0600", now),
        "buy_low": place(demo_platform, "enterprise3", "buy", "150", "0.0500", now),
    }
    with demo_platform.unit_of_work() as session:
        park = user(session, "enterprise").enterprise.park
        day = calendar.open_delivery_day(park, now)
        gate = calendar.gate_closure(park, day)
        park_id = park.id
    return demo_platform, park_id, day, gate, ids


def after_gate(platform, gate):
    """Move the chain's clock past the gate, as the wall clock will be when clearing runs."""
    platform.chain.set_next_block_timestamp(int(gate.timestamp()) + 1)
    return gate + timedelta(seconds=1)


def clear_and_publish(book) -> tuple[int, int]:
    """The book's day cleared at its gate and published by settlement staff:
    (clearing run id, staff user id)."""
    platform, park_id, day, gate, _ids = book
    run_id = clearing.run_clearing(platform, park_id, day, now=gate)
    with platform.unit_of_work() as session:
        staff_id = user(session, "settlement").id
    after_gate(platform, gate)
    clearing.publish(platform, run_id, staff_id)
    return run_id, staff_id
