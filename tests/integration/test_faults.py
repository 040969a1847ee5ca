"""Faults in service mode: PostgreSQL, a Redis broker of the test's own, real Celery worker
processes (`python -m parkgrid.cli worker`) and anvil.

- a worker process killed in the middle of clearing, of settlement (computing, then waiting
  for its chain write) and of an order's or a batch's chain write: the task comes back to the
  worker's new process and finishes once, with no second chain write and nothing half written;
- the database's sessions ended in the middle of a request: a clean JSON error, nothing half
  written, and the next request (and the worker) carry on;
- two staff members publishing the same day at once: one publishes, the other is told;
- the broker restarted with tasks queued and no worker running: none is lost;
- the chain node stopped while orders arrive (they show pending, then go on chain), then
  restarted from an older state or from nothing: detected and refused.

"The middle" is reached without test hooks in the platform: a table locked by another
session stops a task at its first INSERT into it (inside its transaction), and anvil with
automatic mining switched off keeps a sent transaction waiting to be mined.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from eth_account import Account
from sqlalchemy import func, select

from parkgrid import migrate, tasks
from parkgrid.canonical import uuid_to_bytes32
from parkgrid.chain import ANVIL_DEFAULT_KEY, AnvilNode, ChainResetError
from parkgrid.config import SERVICE, Settings
from parkgrid.demo import generate_demo_park, load_demo_park, sample_readings
from parkgrid.models import (
    ChainAccount,
    ChainStatus,
    ClearingAllocation,
    ClearingRun,
    ClearingStatus,
    Order,
    Park,
    Role,
    SettlementRun,
    SettlementStatus,
    StatementLine,
    User,
)
from parkgrid.services import calendar, clearing, metering
from parkgrid.services import orders as order_service
from parkgrid.services import settlement as settlement_service
from parkgrid.services.chain_setup import check_chain, setup_chain
from parkgrid.web import create_app
from parkgrid.wiring import Platform
from tests.integration.service_helpers import (
    Admin,
    PrivateRedis,
    TableLock,
    Workers,
    nonce,
    service_env,
    set_mining,
    wait_for,
    waiting_transactions,
)

pytestmark = pytest.mark.integration
SECOND_STAFF = ("settlement2", "settlement-demo-2")
SETTLED_DAY = date(2026, 10, 6)


@pytest.fixture(scope="module")
def svc(pg_url, tmp_path_factory):
    """The demo park on PostgreSQL (with a second settlement staff member), anvil, a private
    Redis as broker and result store, and one worker process (concurrency 1)."""
    folder = tmp_path_factory.mktemp("faults")
    broker = PrivateRedis(folder / "redis").start()
    node = AnvilNode(state_file=folder / "anvil" / "state.json").start()
    settings = Settings(mode=SERVICE, data_dir=folder, database_url=pg_url,
                        broker_url=broker.url, result_backend=broker.url.replace("/0", "/1"),
                        chain_url=node.url, secret_key="faults-test-secret").with_defaults()
    migrate.downgrade(pg_url, "base")  # the session's database may hold another module's park
    migrate.upgrade(pg_url)
    platform = Platform(settings)
    with platform.unit_of_work() as session:
        load_demo_park(session, platform.keybox, generate_demo_park())
        staff = User(username=SECOND_STAFF[0], display_name="第二结算专员",
                     role=Role.SETTLEMENT)
        staff.set_password(SECOND_STAFF[1])
        session.add(staff)
    setup_chain(platform, funder=Account.from_key(ANVIL_DEFAULT_KEY))  # keys for both staff
    tasks.configure(settings, platform)
    state = SimpleNamespace(settings=settings, platform=platform, broker=broker, node=node,
                            admin=Admin(pg_url),
                            workers=Workers(service_env(settings), folder), folder=folder)
    state.worker = state.workers.start(concurrency=1)
    try:
        yield state
    finally:
        state.workers.stop_all()
        tasks.configure(replace(settings, broker_url="", result_backend=""), platform)
        state.node.stop()
        broker.stop()
        state.admin.close()
        platform.engine.dispose()
        migrate.downgrade(pg_url, "base")


def user_id(platform, username: str) -> int:
    with platform.unit_of_work() as session:
        return session.scalar(select(User.id).where(User.username == username))


def key_address(platform, username: str) -> str:
    """The chain address a user signs with (an enterprise's account, or a staff key)."""
    with platform.unit_of_work() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user.enterprise_id is not None:
            return user.enterprise.chain_account.address
        return session.scalar(select(ChainAccount.address).where(
            ChainAccount.user_id == user.id, ChainAccount.purpose == "staff"))


def place(platform, username: str, side: str, price: str, periods: dict,
          batch: bool = False) -> list[int]:
    """Orders stored (committed, pending on chain) as the web app stores them; their ids."""
    with platform.unit_of_work() as session:
        who = session.scalar(select(User).where(User.username == username))
        now = calendar.utcnow()
        day = calendar.open_delivery_day(who.enterprise.park, now)
        data = order_service.OrderInput(side=side, delivery_day=day, periods=periods,
                                        price=price)
        if batch:
            placed = order_service.create_orders(session, who, [data] * 3, now)
        else:
            placed = [order_service.create_order(session, who, data, now)]
        return [order.id for order in placed]


def chain_statuses(platform, order_ids) -> dict[int, str]:
    with platform.unit_of_work() as session:
        return dict(session.execute(select(Order.id, Order.chain_status)
                                    .where(Order.id.in_(order_ids))).all())


def all_recorded(platform, order_ids) -> bool:
    return set(chain_statuses(platform, order_ids).values()) == {ChainStatus.RECORDED}


def received(log: str, task: str) -> int:
    """How many times the worker's log shows `task` handed to it by the broker."""
    return len(re.findall(rf"Task {re.escape(task)}\[[0-9a-f-]+\] received", log))


@pytest.fixture(scope="module")
def closed_day(svc):
    """A delivery day whose gate has just closed, with a sell and a matching buy on chain."""
    platform = svc.platform
    local = datetime.now(ZoneInfo("Asia/Shanghai"))
    if (local + timedelta(seconds=60)).date() != local.date():
        time.sleep(70)  # the gate must fall on today's date
        local = datetime.now(ZoneInfo("Asia/Shanghai"))
    gate = (local + timedelta(seconds=12)).replace(microsecond=0)
    with platform.unit_of_work() as session:
        park = session.scalar(select(Park))
        park.gate_closure_time = gate.time()
        park_id = park.id
    placed = (place(platform, "enterprise", "sell", "0.03", {10: "50"})
              + place(platform, "enterprise2", "buy", "0.06", {10: "50"}))
    for order_id in placed:
        assert order_service.record_order_on_chain(platform, order_id) == "recorded"
    with platform.unit_of_work() as session:
        day = session.get(Order, placed[0]).delivery_day
    time.sleep(max(0.0, (gate - datetime.now(gate.tzinfo)).total_seconds()) + 1.5)
    return park_id, day


# =========================================================================== workers killed


def test_a_worker_killed_while_writing_a_clearing_result_leaves_nothing_and_clears_once(
        svc, closed_day):
    park_id, day = closed_day
    workers, worker = svc.workers, svc.worker
    lock = TableLock(svc.settings.database_url, "clearing_allocations")
    try:
        tasks.run_clearing.delay(park_id, day.isoformat())
        # The task has solved the day and stored its run row; it now waits, inside its
        # transaction, to store the run's allocations: the middle of writing its result.
        wait_for(lambda: svc.admin.sessions_waiting_for_a_lock(
            "INSERT INTO clearing_allocations"), timeout=60, what="the clearing task writes")
        killed = workers.kill_pool_process(worker)
    finally:
        lock.release()

    def cleared():
        with svc.platform.unit_of_work() as session:
            return session.scalar(select(ClearingRun.id).where(
                ClearingRun.delivery_day == day, ClearingRun.status == ClearingStatus.CLEARED))

    run_id = wait_for(cleared, timeout=60, what=workers.logs())
    log = workers.log(worker)
    assert f"pid:{killed} exited with 'signal 9 (SIGKILL)'" in log
    assert received(log, "parkgrid.run_clearing") == 2  # delivered again after the kill
    with svc.platform.unit_of_work() as session:
        runs = session.scalars(select(ClearingRun).where(ClearingRun.delivery_day == day)).all()
        assert [(r.id, r.run_number) for r in runs] == [(run_id, 1)]
        run = runs[0]
        allocated = session.scalars(select(Order.public_id).join(
            ClearingAllocation, ClearingAllocation.order_id == Order.id)
            .where(ClearingAllocation.run_id == run_id)).all()
        result = clearing.DayResult.from_canonical_bytes(run.result_file)
        # The one stored result is whole: its file, hash and allocations agree.
        assert result.result_hash == run.result_hash
        assert sorted(allocated) == sorted(result.accepted) and len(allocated) == 2


def test_two_staff_members_publishing_a_day_at_once_publish_it_once(svc, closed_day):
    """The second request waits for the first (still waiting for its chain write to be
    mined) and is told the day was published; one publication on chain."""
    park_id, day = closed_day
    platform, url = svc.platform, svc.node.url
    run_id = clearing.run_clearing(platform, park_id, day)  # the run the last test made
    app = create_app(svc.settings, platform)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    clients = {}
    for username, password in (("settlement", "settlement-demo-1"), SECOND_STAFF):
        clients[username] = app.test_client()
        assert clients[username].post("/login", data={
            "username": username, "password": password}).status_code == 302
    pages: dict[str, str] = {}

    def publish(username):
        pages[username] = clients[username].post(
            f"/clearing/runs/{run_id}/publish", follow_redirects=True).get_data(as_text=True)

    second_key = key_address(platform, SECOND_STAFF[0])
    set_mining(url, False)
    try:
        first = threading.Thread(target=publish, args=("settlement",))
        first.start()
        wait_for(lambda: waiting_transactions(url) > 0, what="the first publish sends")
        second = threading.Thread(target=publish, args=(SECOND_STAFF[0],))
        second.start()
        wait_for(lambda: svc.admin.sessions_waiting_for_a_lock("SELECT"),
                 what="the second publish waits for the first")
    finally:
        set_mining(url, True)
    first.join(60)
    second.join(60)
    flashes = {name: re.findall(r'<p class="flash">([^<]*)</p>', page)
               for name, page in pages.items()}
    assert flashes["settlement"] == ["已发布：成交记录和结果根已上链。"], flashes
    # The second is told who published it (in the page's language) and is not told it did.
    (told,) = flashes[SECOND_STAFF[0]]
    assert "交易结算专员" in told and "已发布：成交记录" not in told, flashes
    with platform.unit_of_work() as session:
        run = session.get(ClearingRun, run_id)
        assert run.status == ClearingStatus.PUBLISHED
        assert run.published_by_id == user_id(platform, "settlement")
        market = platform.market(session)
        day_number = calendar.day_number(day)
        on_chain = market.day(day_number)
        assert on_chain.published and on_chain.current_run == 1 and on_chain.trade_count == 2
        assert "0x" + on_chain.result_root.hex() == run.result_root
        assert len(market.trade_events(day_number, 1)) == 2  # the trades went on chain once
        assert market.clearing_run(day_number, 1).published_block == run.publish_block_number
    assert nonce(url, second_key, "pending") == 0  # the second staff key sent nothing


def test_two_staff_members_clearing_a_day_at_once_make_one_run(svc, closed_day):
    """After a void, two staff clear the day again at the same moment: the first holds the
    park and blocks on storing its run, the second waits on the park; one new run is made
    and both are shown it."""
    park_id, day = closed_day
    platform = svc.platform
    published = clearing.run_clearing(platform, park_id, day)  # published by the last test
    clearing.void(platform, published, user_id(platform, "settlement"), "cleared again")
    app = create_app(svc.settings, platform)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    clients, answers = {}, {}
    for username, password in (("settlement", "settlement-demo-1"), SECOND_STAFF):
        clients[username] = app.test_client()
        assert clients[username].post("/login", data={
            "username": username, "password": password}).status_code == 302

    def clear(username):
        answers[username] = clients[username].post("/clearing/clear", data={
            "park_id": park_id, "day": day.isoformat()})

    lock = TableLock(svc.settings.database_url, "clearing_runs")
    try:
        threads = [threading.Thread(target=clear, args=(name,)) for name in clients]
        threads[0].start()
        wait_for(lambda: svc.admin.sessions_waiting_for_a_lock("INSERT INTO clearing_runs"),
                 what="the first clearing stores its run")
        threads[1].start()
        wait_for(lambda: svc.admin.sessions_waiting_for_a_lock("SELECT"),
                 what="the second clearing waits for the park")
    finally:
        lock.release()
    for thread in threads:
        thread.join(120)
    with platform.unit_of_work() as session:
        runs = session.scalars(select(ClearingRun).where(ClearingRun.delivery_day == day)
                               .order_by(ClearingRun.run_number)).all()
        assert [(r.run_number, r.status) for r in runs] == [
            (1, ClearingStatus.VOIDED), (2, ClearingStatus.CLEARED)]
        new_run = runs[1].id
    locations = {name: answer.headers.get("Location") for name, answer in answers.items()}
    assert all(a.status_code == 302 for a in answers.values()), answers
    assert set(locations.values()) == {f"/clearing/runs/{new_run}"}, locations


def outcomes(log: str, task: str) -> int:
    """How many runs of `task` the worker's log shows ending (done, failed or to be retried)."""
    return len(re.findall(rf"Task {re.escape(task)}\[[0-9a-f-]+\] (?:succeeded|raised|retry)",
                          log))


def kill_during_chain_write(svc, queue_task, signer: str, task: str) -> None:
    """Queue a task with anvil not mining, kill the worker's pool process while the task waits
    for its transaction, let the task come back and run while that transaction still waits,
    then mine."""
    url, workers, worker = svc.node.url, svc.workers, svc.worker
    sent = nonce(url, signer, "pending")
    runs, ended = received(workers.log(worker), task), outcomes(workers.log(worker), task)
    set_mining(url, False)
    try:
        queue_task()
        wait_for(lambda: nonce(url, signer, "pending") > sent, timeout=60,
                 what=f"{task} sends its transaction\n{workers.logs()}")
        assert nonce(url, signer) == sent  # sent, not mined: the task waits for it
        killed = workers.kill_pool_process(worker)
        # The broker gives the task to the worker's new process, which runs it while the
        # transaction still waits (it must neither send it again nor give up on it).
        wait_for(lambda: received(workers.log(worker), task) >= runs + 2
                 and outcomes(workers.log(worker), task) > ended, timeout=60,
                 what=f"{task} comes back\n{workers.logs()}")
    finally:
        set_mining(url, True)
    log = workers.log(worker)
    assert f"pid:{killed} exited with 'signal 9 (SIGKILL)'" in log


def settled(platform, order_ids) -> dict[int, str] | None:
    """The orders' chain statuses once none is pending any more."""
    found = chain_statuses(platform, order_ids)
    return None if ChainStatus.PENDING in found.values() else found


def test_a_worker_killed_during_an_order_write_records_it_once(svc):
    platform, url = svc.platform, svc.node.url
    signer = key_address(platform, "enterprise3")
    (first,) = place(platform, "enterprise3", "sell", "0.02", {4: "30"})
    tasks.record_order.delay(first).get(timeout=60)  # opens the day on chain as well
    assert all_recorded(platform, [first])

    # A new order: without care, the task back after the kill finds no record yet, sends the
    # order again, is refused as a duplicate and marks an order the chain holds as failed.
    (second,) = place(platform, "enterprise3", "sell", "0.025", {5: "30"})
    before = nonce(url, signer)
    kill_during_chain_write(svc, lambda: tasks.record_order.delay(second), signer,
                            "parkgrid.record_order")
    assert wait_for(lambda: settled(platform, [second])) == {second: "recorded"}

    # An amendment: without care, it would be recorded twice (the chain's version 3).
    with platform.unit_of_work() as session:
        who = session.scalar(select(User).where(User.username == "enterprise3"))
        order = session.get(Order, first)
        order_service.amend_order(session, who, order.public_id, order_service.OrderInput(
            side="sell", delivery_day=order.delivery_day, periods={4: "35"}, price="0.02"),
            calendar.utcnow())
    kill_during_chain_write(svc, lambda: tasks.record_order.delay(first), signer,
                            "parkgrid.record_order")
    assert wait_for(lambda: settled(platform, [first])) == {first: "recorded"}

    assert nonce(url, signer) == before + 2  # one transaction for each of the two writes
    with platform.unit_of_work() as session:
        market = platform.market(session)
        for order_id, version in ((first, 2), (second, 1)):
            order = session.get(Order, order_id)
            record = market.order(uuid_to_bytes32(order.public_id))
            assert (order.version, order.chain_version, record.version) == (version,) * 3
            assert "0x" + record.content_hash.hex() == order.content_hash
            assert (order.chain_tx_hash, order.chain_block_number) == (
                record.tx_hash, record.block_number)
            assert [a.chain_status for a in order.actions] == ["recorded"] * version


def test_a_worker_killed_during_a_batch_write_records_the_batch_once(svc):
    platform, url = svc.platform, svc.node.url
    signer = key_address(platform, "enterprise2")
    ids = place(platform, "enterprise2", "buy", "0.05", {6: "10"}, batch=True)
    before = nonce(url, signer)
    kill_during_chain_write(svc, lambda: tasks.record_batch.delay(ids), signer,
                            "parkgrid.record_batch")
    assert wait_for(lambda: settled(platform, ids)) == dict.fromkeys(ids, "recorded")
    assert nonce(url, signer) == before + 1
    with platform.unit_of_work() as session:
        orders = session.scalars(select(Order).where(Order.id.in_(ids))).all()
        (batch_id,) = {a.chain_batch_id for o in orders for a in o.actions}
        record = platform.market(session).batch(bytes.fromhex(batch_id[2:]))
        assert {o.chain_tx_hash for o in orders} == {record.tx_hash}
        assert sorted(item[0] for item in record.items) == sorted(
            uuid_to_bytes32(o.public_id) for o in orders)


def test_a_worker_killed_while_computing_and_while_publishing_a_settlement_publishes_once(
        svc):
    platform, url, workers, worker = svc.platform, svc.node.url, svc.workers, svc.worker
    with platform.unit_of_work() as session:
        park = session.scalar(select(Park))
        park_id, zone = park.id, ZoneInfo(park.timezone)
        data = sample_readings(session, park, SETTLED_DAY, faults=False)
    assert metering.import_readings(platform, park_id, [data]).point_days > 0
    now = datetime.combine(SETTLED_DAY + timedelta(days=1), datetime.min.time(), zone)
    run_id = settlement_service.request_run(platform, park_id, "initial", day=SETTLED_DAY,
                                            now=now)
    period = calendar.day_number(SETTLED_DAY)
    signer = key_address(platform, "settlement")

    # Killed while it stores the computed run (its statement lines), inside its transaction.
    lock = TableLock(svc.settings.database_url, "statement_lines")
    try:
        tasks.settle_run.delay(run_id)
        wait_for(lambda: svc.admin.sessions_waiting_for_a_lock("INSERT INTO statement_lines"),
                 timeout=120, what=f"the settlement task stores its lines\n{workers.logs()}")
        with platform.unit_of_work() as session:
            assert session.get(SettlementRun, run_id).status == SettlementStatus.RUNNING
        killed = workers.kill_pool_process(worker)
        assert f"pid:{killed} exited" in wait_for(lambda: (log := workers.log(worker))
                                                 and f"pid:{killed} exited" in log and log)
        # Then killed again, in the new process, while its chain write waits to be mined.
        set_mining(url, False)
    finally:
        lock.release()
    try:
        sent = nonce(url, signer, "pending")
        wait_for(lambda: nonce(url, signer, "pending") > sent, timeout=120,
                 what=f"the settlement run is sent\n{workers.logs()}")
        with platform.unit_of_work() as session:
            assert session.get(SettlementRun, run_id).status == SettlementStatus.COMPUTED
        task = "parkgrid.settle_run"
        runs, ended = received(workers.log(worker), task), outcomes(workers.log(worker), task)
        workers.kill_pool_process(worker)
        # Back in the new process, it runs while its transaction still waits to be mined.
        wait_for(lambda: received(workers.log(worker), task) > runs
                 and outcomes(workers.log(worker), task) > ended, timeout=60,
                 what=f"settle_run comes back\n{workers.logs()}")
    finally:
        set_mining(url, True)

    def published():
        with platform.unit_of_work() as session:
            return session.get(SettlementRun, run_id).status == SettlementStatus.PUBLISHED

    wait_for(published, timeout=90, what=workers.logs())
    assert received(workers.log(worker), "parkgrid.settle_run") >= 3
    with platform.unit_of_work() as session:
        run = session.get(SettlementRun, run_id)
        market = platform.market(session)
        assert market.settlement_run_count(period) == 1
        record = market.settlement_run(period, 1)
        assert run.run_number == 1 and record.block_number == run.publish_block_number
        assert "0x" + record.statements_root.hex() == run.statements_root
        lines = session.scalar(select(func.count()).select_from(StatementLine)
                               .where(StatementLine.run_id == run_id))
        assert lines == run.line_count == record.line_count  # one computation's lines, whole


# =========================================================================== database


def test_database_sessions_ended_mid_request_fail_it_cleanly_and_the_next_one_works(svc):
    platform, admin = svc.platform, svc.admin
    client = create_app(svc.settings, platform).test_client()
    token = client.post("/api/v1/tokens", json={"username": "enterprise",
                                                "password": "enterprise-demo-1"}).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    day = client.get("/api/v1/orders/calendar", headers=headers).json["open_delivery_day"]
    body = {"delivery_day": day, "side": "sell", "price": "0.0300",
            "periods": [{"period": 12, "quantity_kva": "15"}]}
    orders_before = admin.count("SELECT count(*) FROM orders")
    answers = []
    lock = TableLock(svc.settings.database_url, "order_actions")
    try:
        request = threading.Thread(target=lambda: answers.append(
            client.post("/api/v1/orders", headers=headers, json=body)))
        request.start()
        # The order row is written, its first action waits: the request is mid-transaction.
        wait_for(lambda: admin.sessions_waiting_for_a_lock("INSERT INTO order_actions"))
        assert admin.terminate_others(keep=[lock.pid]) >= 2  # the request's and the worker's
        request.join(30)
    finally:
        lock.release()
    (response,) = answers
    assert response.status_code >= 500 and response.is_json, response.get_data(as_text=True)
    assert response.json["message"] and "Traceback" not in response.get_data(as_text=True)
    assert admin.count("SELECT count(*) FROM orders") == orders_before  # nothing half written
    assert admin.count("SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM "
                       "order_actions a WHERE a.order_id = o.id)") == 0

    # The pools find their connections dead and open new ones: the next request succeeds, and
    # the worker (whose sessions were ended too) records the order on chain.
    response = client.post("/api/v1/orders", headers=headers, json=body)
    assert response.status_code == 201, response.json
    order_id = response.json["id"]
    wait_for(lambda: client.get(f"/api/v1/orders/{order_id}", headers=headers)
             .json["chain_status"] == "recorded", what=svc.workers.logs())
    assert admin.count("SELECT count(*) FROM orders") == orders_before + 1


# =========================================================================== broker


def test_tasks_queued_while_the_broker_restarts_are_all_done_once(svc):
    platform, url, workers = svc.platform, svc.node.url, svc.workers
    workers.stop(svc.worker)  # nobody takes the tasks: they wait in the broker
    signer = key_address(platform, "enterprise")
    before = nonce(url, signer)
    ids = [order_id for period in (14, 15, 16, 17)
           for order_id in place(platform, "enterprise", "sell", "0.03", {period: "5"})]
    for order_id in ids:
        tasks.record_order.delay(order_id)
    broker = svc.broker.client()
    assert broker.llen("parkgrid") == len(ids)
    svc.broker.stop()
    svc.broker.start()  # same port and folder: it reads its append-only file back
    assert broker.llen("parkgrid") == len(ids)
    assert set(chain_statuses(platform, ids).values()) == {ChainStatus.PENDING}

    svc.worker = workers.start(concurrency=1)
    wait_for(lambda: all_recorded(platform, ids), timeout=90, what=workers.logs())
    assert broker.llen("parkgrid") == 0
    with platform.unit_of_work() as session:
        market = platform.market(session)
        placed = session.scalars(select(Order).where(Order.id.in_(ids))).all()
        # Each order went on chain once (alone, or in a batch with the others waiting with
        # it), and the enterprise's key sent nothing else.
        assert nonce(url, signer) == before + len({o.chain_tx_hash for o in placed})
        for order in placed:
            chain_id = uuid_to_bytes32(order.public_id)
            if order.chain_path == "single":
                record = market.order(chain_id)
                assert record.version == 1 and record.tx_hash == order.chain_tx_hash
            else:
                (batch_id,) = {a.chain_batch_id for a in order.actions}
                batch = market.batch(bytes.fromhex(batch_id[2:]))
                assert [item[0] for item in batch.items].count(chain_id) == 1


# =========================================================================== chain node


def test_orders_taken_while_the_node_is_down_show_pending_and_an_older_node_is_refused(svc):
    platform, settings, workers = svc.platform, svc.settings, svc.workers
    app = create_app(settings, platform)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    client = app.test_client()
    token = client.post("/api/v1/tokens", json={"username": "enterprise2",
                                                "password": "enterprise-demo-2"}).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/login", data={"username": "enterprise2",
                                       "password": "enterprise-demo-2"}).status_code == 302
    day = client.get("/api/v1/orders/calendar", headers=headers).json["open_delivery_day"]

    def submit(period):
        response = client.post("/api/v1/orders", headers=headers, json={
            "delivery_day": day, "side": "buy", "price": "0.05",
            "periods": [{"period": period, "quantity_kva": "8"}]})
        assert response.status_code == 201, response.json
        return response.json["id"]

    node, port = svc.node, svc.node.port
    node.stop()  # its state file now holds the chain as it was before these orders
    older = svc.folder / "older-state.json"
    shutil.copy(node.state_file, older)
    waiting = [submit(18), submit(19)]
    time.sleep(1.5)  # the worker has tried them (and failed: the node is down)
    for order_id in waiting:
        body = client.get(f"/api/v1/orders/{order_id}", headers=headers).json
        assert (body["chain_status"], body["chain_tx_hash"]) == ("pending", None)
    page = client.get("/market/orders").get_data(as_text=True)
    for order_id in waiting:
        assert f'/market/orders/{order_id}" class="status status-pending"' in page
    assert "ChainUnavailableError" in workers.log(svc.worker)

    svc.node = node = AnvilNode(port=port, state_file=node.state_file).start()
    wait_for(lambda: all(client.get(f"/api/v1/orders/{i}", headers=headers)
                         .json["chain_status"] == "recorded" for i in waiting),
             timeout=90, what=workers.logs())
    page = client.get("/market/orders").get_data(as_text=True)
    assert f'/market/orders/{waiting[0]}" class="status status-recorded"' in page

    # The node comes back from the older state: the contract is there, the two orders are not.
    node.stop()
    svc.node = node = AnvilNode(port=port, state_file=older,
                                log_file=svc.folder / "older-anvil.log").start()
    with pytest.raises(ChainResetError, match="older state"):
        check_chain(Platform(settings))  # a process starting now: what `worker` checks
    # Orders still arrive and wait in the outbox; the worker, which saw the chain further on,
    # refuses to write them.
    late = submit(20)
    wait_for(lambda: "older state" in workers.log(svc.worker), what=workers.logs())
    body = client.get(f"/api/v1/orders/{late}", headers=headers).json
    assert (body["chain_status"], body["chain_version"]) == ("pending", 0)

    # A node started afresh on the same port (no state at all) is refused as well.
    node.stop()
    svc.node = node = AnvilNode(port=port, log_file=svc.folder / "fresh-anvil.log").start()
    with pytest.raises(ChainResetError, match="no code at that address"):
        check_chain(Platform(settings))
    with platform.unit_of_work() as session:
        assert session.scalar(select(Order.chain_status).where(Order.public_id == late)) \
            == ChainStatus.PENDING
