"""Automatic dispatch in service mode: PostgreSQL, RabbitMQ and real Celery worker processes.

Two urgent rounds running at once in two worker processes never book one electrician twice; a
decline is re-dispatched by the worker; a worker killed while it plans a day loses nothing:
the broker hands the task to the next worker, which plans and offers each job once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import func, select

from parkgrid import migrate, tasks
from parkgrid.chain import ANVIL_DEFAULT_KEY, AnvilNode
from parkgrid.config import SERVICE, Settings
from parkgrid.models import DispatchPlan, Job, JobEvent
from parkgrid.services import jobs as job_service
from parkgrid.services.chain_setup import setup_chain
from parkgrid.wiring import Platform
from tests.integration.service_helpers import start_worker, wait_for
from tests.unit.alliance_world import SITE, add_provider, build_world

pytestmark = pytest.mark.integration
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
RESULTS = "redis://127.0.0.1:6379/12"
PLAN_SECONDS = 6


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with AnvilNode(state_file=tmp_path_factory.mktemp("anvil") / "state.json") as running:
        yield running


class Workers:
    def __init__(self, settings: Settings, env: dict, folder: Path):
        self.settings, self.env, self.folder = settings, env, folder
        self.running: list[subprocess.Popen] = []

    def start(self, concurrency: int = 2) -> subprocess.Popen:
        process = start_worker(self.env, self.folder / f"worker-{len(self.running)}.log",
                               concurrency)
        self.running.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """Kill the worker and its pool processes at once, as a crash would."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                         for p in sorted(self.folder.glob("worker-*.log")))

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def service(pg_url, node, tmp_path_factory):
    import kombu

    try:
        with kombu.Connection(BROKER, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
            try:
                conn.default_channel.queue_purge("parkgrid")  # a stale run's messages
            except Exception as exc:  # noqa: BLE001 - the queue may not exist yet
                if "NOT_FOUND" not in str(exc):
                    raise
    except Exception as exc:  # noqa: BLE001 - any failure means the broker is not usable
        pytest.fail(f"RabbitMQ is not reachable ({exc}); start it with: rabbitmq-server "
                    "-detached", pytrace=False)
    folder = tmp_path_factory.mktemp("dispatch")
    settings = Settings(mode=SERVICE, data_dir=folder, database_url=pg_url, broker_url=BROKER,
                        result_backend=RESULTS, chain_url=node.url,
                        secret_key="dispatch-test-secret",
                        plan_seconds=PLAN_SECONDS).with_defaults()
    migrate.downgrade(pg_url, "base")
    migrate.upgrade(pg_url)
    platform = Platform(settings)
    world = build_world(platform)
    setup_chain(platform, funder=Account.from_key(ANVIL_DEFAULT_KEY))  # workers check it
    env = {**os.environ, "PARKGRID_MODE": SERVICE, "PARKGRID_DATABASE_URL": pg_url,
           "PARKGRID_BROKER_URL": BROKER, "PARKGRID_RESULT_BACKEND": RESULTS,
           "PARKGRID_CHAIN_URL": node.url, "PARKGRID_SECRET_KEY": settings.secret_key,
           "PARKGRID_PLAN_SECONDS": str(PLAN_SECONDS), "PARKGRID_DATA_DIR": str(folder)}
    workers = Workers(settings, env, folder)
    tasks.configure(settings, platform)
    yield world, platform, workers
    workers.stop_all()
    tasks.configure(replace(settings, broker_url="", result_backend=""), platform)
    platform.engine.dispose()
    migrate.downgrade(pg_url, "base")


def statuses(platform, codes) -> dict[str, tuple[str, int | None]]:
    with platform.unit_of_work() as session:
        return {j.code: (j.status, j.electrician_id)
                for j in session.scalars(select(Job).where(Job.code.in_(codes)))}


def request(world, *, urgent=True, k=0, window=None) -> str:
    start, end = window or (None, None)
    return job_service.request_repair(
        world.platform, job_service.RepairRequest(
            lat=SITE[0] + Decimal("0.004") * (k % 5), lon=SITE[1] + Decimal("0.004") * (k // 5),
            title="故障", urgent=urgent, window_start=start, window_end=end,
            service_minutes=40),
        actor_id=world.uid("ent1"))


def test_concurrent_rounds_in_two_workers_never_book_anyone_twice(service):
    world, platform, workers = service
    add_provider(world, "SVC", valid=12)
    workers.start(concurrency=2)
    codes = [request(world, k=k) for k in range(8)]
    for _ in range(6):  # rounds racing each other in two processes
        tasks.dispatch_urgent.delay()
    offered = wait_for(lambda: (s := statuses(platform, codes))
                       and all(v[0] == "offered" for v in s.values()) and s, timeout=90)
    people = [e for _, e in offered.values()]
    assert len(set(people)) == len(codes)
    with platform.unit_of_work() as session:
        offers = session.scalar(select(func.count()).select_from(JobEvent).join(Job).where(
            Job.code.in_(codes), JobEvent.kind == "offer"))
    assert offers == len(codes)  # each job offered once, whatever raced

    # A decline goes back to the worker, which offers the job to someone else.
    declined, first = codes[0], offered[codes[0]][1]
    job_service.decline(platform, declined, actor_id=world.uid("SVC-user"))
    tasks.dispatch_urgent.delay()
    status, again = wait_for(lambda: (v := statuses(platform, [declined])[declined])[0]
                             == "offered" and v, timeout=90)
    assert again not in (None, first)


def test_a_worker_killed_while_planning_loses_nothing(service):
    world, platform, workers = service
    for process in list(workers.running):
        workers.kill(process)
    add_provider(world, "PLN", valid=10)
    now = datetime.now(UTC)
    window = (now + timedelta(hours=1), now + timedelta(hours=8))
    codes = [request(world, urgent=False, k=k, window=window) for k in range(10)]
    victim = workers.start(concurrency=1)
    tasks.plan_planned_work.delay()  # queues one plan task per waiting scope and day
    time.sleep(PLAN_SECONDS / 2 + 2)  # the plan task is solving now
    workers.kill(victim)
    victim_log = (workers.folder / f"worker-{len(workers.running) - 1}.log").read_text()
    assert "parkgrid.plan_day" in victim_log and "placed" not in victim_log  # killed mid-plan
    assert {s for s, _ in statuses(platform, codes).values()} == {"new"}
    workers.start(concurrency=1)  # the broker hands the unacknowledged task to this one
    try:
        wait_for(lambda: {s for s, _ in statuses(platform, codes).values()} == {"offered"},
                 timeout=120)
    except AssertionError:
        raise AssertionError(f"{statuses(platform, codes)}\n{workers.logs()}") from None
    with platform.unit_of_work() as session:
        plans = session.scalar(select(func.count()).select_from(DispatchPlan))
        offers = session.scalar(select(func.count()).select_from(JobEvent).join(Job).where(
            Job.code.in_(codes), JobEvent.kind == "offer"))
    assert plans >= 1 and offers == len(codes)
