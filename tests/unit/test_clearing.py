"""Clearing a day on the demo park: congestion behind the derated transformer, publication on
chain (trades and Merkle root, write-once), void with a reason and re-clearing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

import matching
from parkgrid.canonical import merkle_root, uuid_to_bytes32
from parkgrid.models import ClearingRun, Order, Park
from parkgrid.services import calendar, clearing, clearing_view
from parkgrid.services.errors import Conflict, Forbidden

from .market_book import PERIOD, after_gate, clear_and_publish, user


def allocations(platform, run_id):
    with platform.unit_of_work() as session:
        run = session.get(ClearingRun, run_id)
        return {(a.order.public_id): (a.quantity_kva, a.price) for a in run.allocations}


def test_clearing_is_refused_before_the_gate(book):
    platform, park_id, day, gate, _ids = book
    with pytest.raises(Conflict, match="still open"):
        clearing.run_clearing(platform, park_id, day, now=gate - timedelta(seconds=1))


def test_the_derated_transformer_binds_and_prices_split_into_zones(book):
    platform, park_id, day, gate, ids = book
    run_id = clearing.run_clearing(platform, park_id, day, now=gate)
    assert clearing.run_clearing(platform, park_id, day, now=gate) == run_id  # idempotent
    got = allocations(platform, run_id)
    # Only the headroom behind the derated transformer can be bought; the high bid first.
    assert got[ids["buy_high"]] == (Decimal("150.0"), Decimal("0.0500"))
    assert got[ids["buy_low"]] == (Decimal("48.5"), Decimal("0.0500"))
    assert got[ids["sell"]] == (Decimal("198.5"), Decimal("0.0300"))

    with platform.unit_of_work() as session:
        run = session.get(ClearingRun, run_id)
        park = run.park
        instance, _orders = clearing.build_instance(session, park, day)
        result = clearing.DayResult.from_canonical_bytes(run.result_file)
        ((key, group),) = result.groups  # the demo park trades park-wide
        assert key == "park" and matching.check(instance, group) == []
        summary = clearing_view.run_summary(run)
        # Congestion rent: (0.05 − 0.03) yuan/kVA·h × 198.5 kVA for one hour.
        assert Decimal(summary["congestion_rent_yuan"]) == Decimal("3.97")
        loads = {row["code"]: row for row in clearing_view.transformer_loads(session, run)}
        assert sum(row["binding"][PERIOD] for row in loads.values()) == 1
        curves = clearing_view.curves(session, run)
        assert [c["period"] for c in curves] == [PERIOD]


def test_publish_records_trades_and_root_once_and_enterprises_then_see_results(book):
    platform, park_id, day, gate, ids = book
    run_id = clearing.run_clearing(platform, park_id, day, now=gate)
    with platform.unit_of_work() as session:
        buyer = user(session, "enterprise2")
        assert clearing_view.enterprise_results(session, buyer) == []  # not yet published
        staff, auditor = user(session, "settlement"), user(session, "auditor")
        staff_id, auditor_id = staff.id, auditor.id
    with pytest.raises(Forbidden):
        clearing.publish(platform, run_id, auditor_id)

    after_gate(platform, gate)
    clearing.publish(platform, run_id, staff_id)
    block = platform.chain.block_number()
    clearing.publish(platform, run_id, staff_id)  # a second publish writes nothing
    assert platform.chain.block_number() == block

    with platform.unit_of_work() as session:
        run = session.get(ClearingRun, run_id)
        market = platform.market(session)
        day_number = int(day.strftime("%Y%m%d"))
        on_chain = market.day(day_number)
        assert on_chain.published and on_chain.current_run == 1
        assert "0x" + on_chain.result_root.hex() == run.result_root
        events = market.trade_events(day_number, 1)
        orders = {o.public_id: o for o in session.scalars(select(Order))}
        lines = clearing.trade_lines(run.park.period_minutes,
                                     clearing.DayResult.from_canonical_bytes(run.result_file),
                                     {key: order.side for key, order in orders.items()})
        assert [(e.order_id, e.quantity, e.amount_fen) for e in events] == [
            (uuid_to_bytes32(line.order_public_id), line.quantity_tenths_kvah, line.amount_fen)
            for line in lines]
        leaves = clearing.result_leaves(run.result_file, lines, run.input_file)
        assert merkle_root(leaves).hex() == run.result_root[2:]
        # 150 kVA·h at 0.05 yuan = 750 fen paid by the high bidder.
        assert {line.order_public_id: line.amount_fen for line in lines}[ids["buy_high"]] == 750
        # Every enterprise of the park sees the published day's summary.
        (published,) = clearing_view.published_days(session, user(session, "enterprise3"))
        assert published["periods"] == [(PERIOD, Decimal("198.5"), Decimal("0.0300"),
                                         Decimal("0.0500"))]
        results = clearing_view.enterprise_results(session, user(session, "enterprise2"))
        assert [(r["order"].public_id, r["periods"]) for r in results] == [
            (ids["buy_high"], [(PERIOD, Decimal("150.0"), Decimal("0.0500"))])]


def test_void_needs_a_reason_is_recorded_on_chain_and_the_day_clears_again(book):
    platform, park_id, day, gate, _ids = book
    run_id, staff_id = clear_and_publish(book)
    with pytest.raises(Conflict, match="reason"):
        clearing.void(platform, run_id, staff_id, "  ")
    clearing.void(platform, run_id, staff_id, "meter T3 mis-read in the forecast")
    second = clearing.run_clearing(platform, park_id, day, now=gate)
    assert second != run_id
    clearing.publish(platform, second, staff_id)
    with platform.unit_of_work() as session:
        market = platform.market(session)
        day_number = int(day.strftime("%Y%m%d"))
        assert market.clearing_run(day_number, 1).voided
        assert market.day(day_number).current_run == 2 and market.day(day_number).published
        runs = session.scalars(select(ClearingRun).order_by(ClearingRun.run_number)).all()
        assert [(r.run_number, r.status) for r in runs] == [(1, "voided"), (2, "published")]
        assert runs[0].result_hash == runs[1].result_hash  # same book, same bytes


def test_an_empty_day_clears_to_zero_volume_with_a_reason(demo_platform):
    now = calendar.utcnow()
    with demo_platform.unit_of_work() as session:
        park = user(session, "enterprise").enterprise.park
        day = calendar.open_delivery_day(park, now)
        gate, park_id = calendar.gate_closure(park, day), park.id
    run_id = clearing.run_clearing(demo_platform, park_id, day, now=gate)
    with demo_platform.unit_of_work() as session:
        summary = clearing_view.run_summary(session.get(ClearingRun, run_id))
    assert summary["accepted_orders"] == 0 and summary["reason"]


def test_staff_pages_review_publish_and_void_and_others_are_refused(book, app, client):
    platform, park_id, day, gate, ids = book
    run_id = clearing.run_clearing(platform, park_id, day, now=gate)
    after_gate(platform, gate)
    app.config["WTF_CSRF_ENABLED"] = False
    client.post("/login", data={"username": "enterprise", "password": "enterprise-demo-1"})
    assert client.get(f"/clearing/runs/{run_id}").status_code == 403
    assert client.post(f"/clearing/runs/{run_id}/publish").status_code == 403
    assert "暂无已发布的成交结果" in client.get("/market/results").get_data(as_text=True)
    client.post("/logout")

    client.post("/login", data={"username": "settlement", "password": "settlement-demo-1"})
    page = client.get(f"/clearing/runs/{run_id}").get_data(as_text=True)
    assert "阻塞" in page and page.count("<svg") >= 2 and 'id="congestion-rent">3.97<' in page
    page = client.post(f"/clearing/runs/{run_id}/publish",
                       follow_redirects=True).get_data(as_text=True)
    assert "已发布：成交记录和结果根已上链" in page and 'id="publish-tx"' in page
    page = client.post(f"/clearing/runs/{run_id}/void", data={"reason": ""},
                       follow_redirects=True).get_data(as_text=True)
    assert "请填写理由" in page
    client.post("/logout")

    client.post("/login", data={"username": "enterprise2", "password": "enterprise-demo-2"})
    page = client.get("/market/results").get_data(as_text=True)
    assert f'data-order="{ids["buy_high"]}"' in page and ids["buy_low"] not in page
    assert 'id="published-days"' in page and "198.5" in page


def test_a_transformer_trade_scope_keeps_trades_behind_each_transformer(book):
    platform, park_id, day, gate, ids = book
    with platform.unit_of_work() as session:
        session.get(Park, park_id).trade_scope = "transformer"
    run_id = clearing.run_clearing(platform, park_id, day, now=gate)
    with platform.unit_of_work() as session:
        run = session.get(ClearingRun, run_id)
        result = clearing.DayResult.from_canonical_bytes(run.result_file)
        # The seller and the bidders sit behind different transformers: nothing can trade.
        assert len(result.groups) == 2 and run.allocations == []
        assert clearing_view.run_summary(run)["reason"]
