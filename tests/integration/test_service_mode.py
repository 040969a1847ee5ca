"""The thin path in service mode: PostgreSQL, a real broker with a real Celery worker, anvil."""

from __future__ import annotations

import os
import time

import pytest
import redis
from eth_account import Account
from sqlalchemy import select

from parkgrid import migrate, tasks
from parkgrid.canonical import uuid_to_bytes32
from parkgrid.chain import ANVIL_DEFAULT_KEY, AnvilNode, enterprise_key
from parkgrid.config import SERVICE, Settings
from parkgrid.crypto import load_local_account
from parkgrid.demo import generate_demo_park, load_demo_park
from parkgrid.models import Order, User
from parkgrid.services import calendar
from parkgrid.services.chain_setup import setup_chain
from parkgrid.web import create_app
from parkgrid.wiring import Platform
from tests.integration.service_helpers import start_worker, wait_for

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/11"
BROKERS = {"redis": REDIS_URL, "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//"}
START_HINTS = {
    "redis": "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
             "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
    "rabbitmq": "rabbitmq-server -detached",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with AnvilNode(state_file=tmp_path_factory.mktemp("anvil") / "state.json") as running:
        yield running


@pytest.fixture(scope="module", params=sorted(BROKERS))
def service(request, pg_url, node, tmp_path_factory):
    """Settings in service mode, the demo park on PostgreSQL, and a worker process."""
    broker = BROKERS[request.param]
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).flushdb()
        if request.param == "rabbitmq":
            import kombu

            with kombu.Connection(broker, connect_timeout=3) as conn:
                conn.ensure_connection(max_retries=1)
                conn.default_channel.queue_purge("parkgrid")  # a stale run's messages
    except Exception as exc:  # noqa: BLE001 - any failure means the service is not usable
        if "NOT_FOUND" not in str(exc):
            pytest.fail(f"{request.param} is not reachable ({exc}); start it with: "
                        f"{START_HINTS[request.param]}", pytrace=False)
    settings = Settings(mode=SERVICE, data_dir=tmp_path_factory.mktemp("svc"),
                        database_url=pg_url, broker_url=broker, result_backend=REDIS_URL,
                        chain_url=node.url, secret_key="service-test-secret").with_defaults()
    migrate.downgrade(pg_url, "base")  # the module's databases start empty
    migrate.upgrade(pg_url)
    platform = Platform(settings)
    with platform.unit_of_work() as session:
        load_demo_park(session, platform.keybox, generate_demo_park())
    setup_chain(platform, funder=Account.from_key(ANVIL_DEFAULT_KEY))

    env = {**os.environ, "PARKGRID_MODE": SERVICE, "PARKGRID_DATABASE_URL": pg_url,
           "PARKGRID_BROKER_URL": broker, "PARKGRID_RESULT_BACKEND": REDIS_URL,
           "PARKGRID_CHAIN_URL": node.url, "PARKGRID_SECRET_KEY": settings.secret_key}
    log = settings.data_dir / "worker.log"
    worker = start_worker(env, log, concurrency=2)
    yield settings, platform, log
    worker.terminate()
    worker.wait(timeout=30)
    platform.engine.dispose()
    migrate.downgrade(pg_url, "base")  # leave the session's database empty for other tests


def test_the_gate_closes_and_a_worker_clears_the_day_which_staff_publish(service):
    """Runs first: it moves the park's gate to a few seconds from now (a fresh open day)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from parkgrid.models import ClearingRun, ClearingStatus, Park
    from parkgrid.services import clearing, orders

    settings, platform, log = service
    tasks.configure(settings, platform)
    local = datetime.now(ZoneInfo("Asia/Shanghai"))
    if (local + timedelta(seconds=60)).date() != local.date():
        time.sleep(70)  # the gate must fall on today's date
        local = datetime.now(ZoneInfo("Asia/Shanghai"))
    gate = (local + timedelta(seconds=20)).replace(microsecond=0)
    with platform.unit_of_work() as session:
        session.scalar(select(Park)).gate_closure_time = gate.time()
    placed = []
    with platform.unit_of_work() as session:
        now = calendar.utcnow()
        for username, side, price in (("enterprise", "sell", "0.03"),
                                      ("enterprise2", "buy", "0.06")):
            who = session.scalar(select(User).where(User.username == username))
            day = calendar.open_delivery_day(who.enterprise.park, now)
            placed.append(orders.create_order(session, who, orders.OrderInput(
                side=side, delivery_day=day, periods={10: "50"}, price=price), now).id)
    for order_id in placed:
        assert tasks.record_order.delay(order_id).get(timeout=60) == "recorded"

    time.sleep(max(0.0, (gate - datetime.now(gate.tzinfo)).total_seconds()) + 2)
    assert tasks.close_gates.delay().get(timeout=60) == 1  # the beat task, run once by hand

    def cleared():
        with platform.unit_of_work() as session:
            return session.scalar(select(ClearingRun.id).where(
                ClearingRun.delivery_day == day, ClearingRun.status == ClearingStatus.CLEARED))

    run_id = wait_for(cleared)
    assert "parkgrid.run_clearing" in log.read_text()  # a worker cleared it
    with platform.unit_of_work() as session:
        staff_id = session.scalar(select(User.id).where(User.username == "settlement"))
    clearing.publish(platform, run_id, staff_id)
    with platform.unit_of_work() as session:
        run = session.get(ClearingRun, run_id)
        on_chain = platform.market(session).day(int(day.strftime("%Y%m%d")))
        assert on_chain.published and "0x" + on_chain.result_root.hex() == run.result_root
        assert on_chain.trade_count == 2 and run.status == ClearingStatus.PUBLISHED


def test_an_order_goes_through_the_broker_and_a_worker_onto_the_chain(service):
    settings, platform, log = service
    app = create_app(settings)
    client = app.test_client()
    token = client.post("/api/v1/tokens", json={"username": "enterprise",
                                                "password": "enterprise-demo-1"}).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    day = client.get("/api/v1/orders/calendar", headers=headers).json["open_delivery_day"]
    response = client.post("/api/v1/orders", headers=headers, json={
        "delivery_day": day, "side": "sell", "price": "0.0400",
        "periods": [{"period": 10, "quantity_kva": "75"}]})
    assert response.status_code == 201, response.json
    order_id = response.json["id"]

    def recorded():
        body = client.get(f"/api/v1/orders/{order_id}", headers=headers).json
        return body if body["chain_status"] == "recorded" else None

    body = wait_for(recorded)
    assert body["chain_tx_hash"].startswith("0x") and body["chain_block_number"] > 0
    # The worker did it (the enterprise's chain writer), not the web app.
    assert "Task parkgrid.record_enterprise_orders[" in log.read_text()

    # A re-delivered task writes nothing a second time.
    block = platform.chain.block_number()
    with platform.unit_of_work() as session:
        row_id, enterprise_id = session.execute(select(Order.id, Order.enterprise_id).where(
            Order.public_id == order_id)).one()
    assert tasks.record_order.delay(row_id).get(timeout=60) == "recorded"
    assert tasks.record_enterprise_orders.delay(enterprise_id).get(timeout=60) == 0
    assert platform.chain.block_number() == block


def test_a_task_that_died_after_its_chain_write_only_completes_the_database(service):
    """The chain write was mined but the database commit was lost: no second transaction."""
    settings, platform, _log = service
    tasks.configure(settings, platform)
    with platform.unit_of_work() as session:
        from parkgrid.services import orders

        user = session.scalar(select(User).where(User.username == "enterprise2"))
        park = user.enterprise.park
        day = calendar.open_delivery_day(park, calendar.utcnow())
        order = orders.create_order(session, user, orders.OrderInput(
            side="sell", delivery_day=day, periods={3: "40"}, price="0.02"), calendar.utcnow())
        row_id, public_id = order.id, order.public_id
        enterprise = user.enterprise
        market = platform.market(session)
        orders.ensure_day_open(platform, session, market, park, day)
        account = load_local_account(platform.keybox, enterprise.chain_account)
        receipt = market.record_order(account, uuid_to_bytes32(public_id),
                                      enterprise_key(enterprise.code),
                                      int(day.strftime("%Y%m%d")), "sell",
                                      bytes.fromhex(order.content_hash[2:]))
    block = platform.chain.block_number()
    assert tasks.record_order.delay(row_id).get(timeout=60) == "recorded"
    assert platform.chain.block_number() == block
    with platform.unit_of_work() as session:
        stored = session.get(Order, row_id)
        assert stored.chain_tx_hash == receipt.tx_hash
        assert stored.chain_block_number == receipt.block_number


def test_a_worker_settles_a_day_on_postgresql_and_a_lost_commit_is_not_published_twice(
        service):
    """Readings imported into PostgreSQL, the run computed and anchored by a real worker;
    a run whose chain write was mined before its commit was lost is recognised, not redone."""
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from parkgrid.demo import sample_readings
    from parkgrid.models import Park, SettlementRun
    from parkgrid.services import metering
    from parkgrid.services import settlement as settlement_service

    settings, platform, _log = service
    tasks.configure(settings, platform)
    day = date(2026, 10, 6)
    with platform.unit_of_work() as session:
        park = session.scalar(select(Park))
        park_id, zone = park.id, ZoneInfo(park.timezone)
        data = sample_readings(session, park, day, faults=False)
    record = metering.import_readings(platform, park_id, [data])
    assert record.point_days > 0
    now = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
    run_id = settlement_service.request_run(platform, park_id, "initial", day=day, now=now)
    assert tasks.settle_run.delay(run_id).get(timeout=120) == "published"
    with platform.unit_of_work() as session:
        run = session.get(SettlementRun, run_id)
        assert run.run_number == 1 and sum(line.fen for line in run.lines) == 0
        assert platform.market(session).settlement_run_count(20261006) == 1

    # The next run is written on chain by hand, as a worker that died before its commit did.
    run_id = settlement_service.request_run(platform, park_id, "final", day=day, now=now)
    settlement_service.compute(platform, run_id)
    with platform.unit_of_work() as session:
        run = session.get(SettlementRun, run_id)
        market = platform.market(session)
        signer = settlement_service._signer(session, platform, run)
        market.publish_settlement(signer, 20261006, 2, "final",
                                  *(bytes.fromhex(h[2:]) for h in (
                                      run.metering_root, run.rule_hash, run.statements_root,
                                      run.result_hash)), run.line_count)
    block = platform.chain.block_number()
    assert tasks.settle_run.delay(run_id).get(timeout=120) == "published"
    assert platform.chain.block_number() == block
    with platform.unit_of_work() as session:
        assert session.get(SettlementRun, run_id).run_number == 2
