"""Helpers for service-mode integration tests: worker processes, a private Redis, anvil
mining control and a look at PostgreSQL's sessions.

Each test module builds its own platform (database, chain, broker) with these; nothing here
touches the machine's shared Redis, RabbitMQ or PostgreSQL server beyond the test's own
database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from parkgrid.chain import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = ""):
    """Call `predicate` until it returns something true; return that, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s{': ' + what if what else ''}")


def start_worker(env: dict, log: Path, concurrency: int = 1) -> subprocess.Popen:
    """A `parkgrid worker` process (in a session of its own, so it can be killed with its
    pool processes), returned once it says it is ready; the test fails with its log if it
    does not start within a minute."""
    process = subprocess.Popen([sys.executable, "-m", "parkgrid.cli", "worker",
                                "--concurrency", str(concurrency)], cwd=ROOT, env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the Celery worker did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return process


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg itself takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def service_env(settings) -> dict[str, str]:
    """The environment a `parkgrid` process needs to run with these (service mode) settings."""
    return {**os.environ, "PARKGRID_MODE": settings.mode,
            "PARKGRID_DATABASE_URL": settings.database_url,
            "PARKGRID_BROKER_URL": settings.broker_url,
            "PARKGRID_RESULT_BACKEND": settings.result_backend,
            "PARKGRID_CHAIN_URL": settings.chain_url,
            "PARKGRID_SECRET_KEY": settings.secret_key,
            "PARKGRID_DATA_DIR": str(settings.data_dir)}


# --------------------------------------------------------------------------- workers


class Workers:
    """Celery worker processes (`python -m parkgrid.cli worker`), each in a session of its own
    so it can be killed with its pool processes, as a crash would."""

    def __init__(self, env: dict, folder: Path):
        self.env, self.folder = env, folder
        self.running: list[subprocess.Popen] = []
        self.logs_by_pid: dict[int, Path] = {}

    def start(self, concurrency: int = 1) -> subprocess.Popen:
        log = self.folder / f"worker-{len(self.logs_by_pid)}.log"
        process = start_worker(self.env, log, concurrency)
        self.logs_by_pid[process.pid] = log
        self.running.append(process)
        return process

    def log(self, process: subprocess.Popen) -> str:
        return self.logs_by_pid[process.pid].read_text()

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}"
                         for path in sorted(self.folder.glob("worker-*.log")))

    @staticmethod
    def pool_processes(process: subprocess.Popen) -> list[int]:
        """The pids of a worker's pool (child) processes, which run the tasks."""
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def kill_pool_process(self, process: subprocess.Popen) -> int:
        """SIGKILL the one pool process of a concurrency-1 worker (the task it runs dies with
        it); the worker's main process starts a new one. Returns the killed pid."""
        (pid,) = self.pool_processes(process)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: pid not in self.pool_processes(process), timeout=20,
                 what="the killed pool process is gone")
        return pid

    def stop(self, process: subprocess.Popen) -> None:
        """A graceful stop (SIGTERM: the worker finishes, or gives back, what it holds)."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process)


# --------------------------------------------------------------------------- a private Redis


class PrivateRedis:
    """A redis-server of the test's own on a free port, with an append-only file: the realistic
    configuration of a broker whose queued messages must survive a restart."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "redis.log").open("a") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                 "--dir", str(self.folder)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def answers():
            try:
                return client.ping()
            except redis.exceptions.RedisError:
                if self.process.poll() is not None:
                    raise AssertionError((self.folder / "redis.log").read_text()) from None
                return False

        wait_for(answers, timeout=20, what="the private redis-server answers")
        return self

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: redis flushes its append-only file and exits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=3)


# --------------------------------------------------------------------------- anvil


def rpc(url: str, method: str, *params):
    """One JSON-RPC call to a node; its result (an error answer fails the test)."""
    request = urllib.request.Request(url, headers={"Content-Type": "application/json"},
                                     data=json.dumps({"jsonrpc": "2.0", "id": 1,
                                                      "method": method,
                                                      "params": list(params)}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert "error" not in answer, answer
    return answer["result"]


def set_mining(url: str, on: bool) -> None:
    """Switch anvil's automatic mining: off, sent transactions wait in its pool (a slow chain);
    back on, what waits is mined at once."""
    rpc(url, "evm_setAutomine", on)
    if on:
        rpc(url, "evm_mine")


def waiting_transactions(url: str) -> int:
    """How many transactions wait in the node's pool to be mined."""
    return int(rpc(url, "txpool_status")["pending"], 16)


def nonce(url: str, address: str, block: str = "latest") -> int:
    """How many transactions `address` has had mined (or sent, with block "pending")."""
    return int(rpc(url, "eth_getTransactionCount", address, block), 16)


# --------------------------------------------------------------------------- PostgreSQL


class Admin:
    """A separate PostgreSQL session on the test database: to lock tables as another session
    would, and to see and end the other sessions."""

    def __init__(self, database_url: str):
        self.url = libpq(database_url)
        self.database = self.url.rsplit("/", 1)[1]
        self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def close(self) -> None:
        self.conn.close()

    def sessions_waiting_for_a_lock(self, query_start: str) -> list[int]:
        """Backends of the test database blocked on a lock in a statement beginning so."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock' AND query ILIKE %s",
            (self.database, query_start + "%")).fetchall()
        return [pid for (pid,) in rows]

    def terminate_others(self, keep: list[int] | tuple = ()) -> int:
        """End every other session on the test database but `keep` (the database 'restarts'
        for its clients): pooled connections die, requests in flight lose theirs."""
        rows = self.conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid() AND NOT pid = ANY(%s)",
            (self.database, list(keep))).fetchall()
        return len(rows)

    def count(self, sql: str, *params) -> int:
        return int(self.conn.execute(sql, params).fetchone()[0])


class TableLock:
    """`LOCK TABLE … IN SHARE MODE` held by its own session: others still read the table but
    block on their first INSERT into it, in the middle of their transaction."""

    def __init__(self, database_url: str, table: str):
        self.conn = psycopg.connect(libpq(database_url), connect_timeout=5)
        self.pid = self.conn.info.backend_pid
        self.conn.execute(f"LOCK TABLE {table} IN SHARE MODE")

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()
