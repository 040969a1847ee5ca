"""Benchmark of order submission through the HTTP API in service mode.

Run from the repository root: `python bench/web.py [--quick] [--seed N] [--profile DIR]`.
Progress goes to stderr; the last stdout line is one JSON object (see docs BENCHMARKS.md).

What it does, all on its own resources (removed at the end):
* a PostgreSQL database of its own, migrated; the demo park loaded, with one API login per
  enterprise (the demo park has about 60 enterprises; the demo logins cover only three);
  the park's gate closure moved to two hours from now, so the run never crosses it;
* its own anvil node, the chain set up (contract deployed, enterprises registered and funded
  from anvil's well-known development key);
* Celery workers (`parkgrid worker`) on a Redis database of its own (flushed before and
  after), and the web server as a separate process (`parkgrid serve`, waitress);
* closed-loop clients (asyncio + aiohttp, keep-alive, one connection each), each logged in
  as its enterprise with a bearer token (POST /api/v1/tokens), submitting valid orders
  (POST /api/v1/orders) for the open delivery day, at 50 and then 200 concurrent clients:
  after a warm-up, for a fixed duration per level (20 s after 3 s; `--quick`: 4 s after 1 s,
  and the clients trade for 20 of the park's enterprises instead of all of them, so logins
  and the outbox take less time). Client k trades for enterprise k mod n. Sides, prices,
  periods and quantities come from the seed; quantities stay inside each enterprise's limits
  read from GET /api/v1/orders/limits, so a refusal is an error of the platform, not of the
  client. A request counts in a level's figures when its answer arrives inside the measured
  window.

Figures besides the contract's: `server_cpu_ms_per_order_<n>` and `worker_cpu_ms_per_order_<n>`
(CPU seconds the server (all its processes) and the Celery workers used during the level, per
accepted order; `server_rss_mb` is the largest server process's peak):
unlike rates and latencies they hardly depend on what else the shared machine runs.

Checks (`ok`): no request failed or was refused at any level, the database holds exactly
the accepted orders, and after the workers drain the outbox every accepted order is on
chain and matches it (the platform's own audit comparison, `services.audit.compare_order`).
`target_met` is reported separately: >= 200 orders/s sustained at p99 <= 500 ms at both
levels. With `--profile DIR` a third, shorter run is made against a server whose every
request is profiled (cProfile, werkzeug's ProfilerMiddleware); the summed profile is
written to DIR and its top entries to stderr.

The client shares the machine's cores with the server, the workers, PostgreSQL and anvil;
the load average at the start and the end is reported with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The script's own folder would shadow the `settlement` package with bench/settlement.py.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

PG_SERVER_URL = os.environ.get("PARKGRID_BENCH_PG_SERVER",
                               "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_SERVER_URL = os.environ.get("PARKGRID_BENCH_REDIS", "redis://127.0.0.1:6379")
BENCH_PASSWORD = "bench-web-password"
LOGIN_PREFIX = "bench-"
TARGET_RATE = 200.0
TARGET_P99_MS = 500.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_rss_mb(pid: int) -> float:
    """The peak resident set of another process (VmHWM), in MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------------------- environment

@dataclass
class Environment:
    """The bench's own database, chain node, broker database and processes."""

    args: argparse.Namespace
    tmp: Path
    db_name: str = ""
    database_url: str = ""
    broker_url: str = ""
    node: object = None
    settings: object = None
    platform: object = None
    processes: list = field(default_factory=list)
    server: subprocess.Popen | None = None
    base_url: str = ""

    # -- set-up ------------------------------------------------------------------------------

    def create_database(self) -> None:
        import psycopg

        self.db_name = f"parkgrid_bench_web_{uuid.uuid4().hex[:10]}"
        admin = PG_SERVER_URL.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(f"{admin}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.database_url = f"{PG_SERVER_URL}/{self.db_name}"

    def drop_database(self) -> None:
        import psycopg

        if not self.db_name:
            return
        admin = PG_SERVER_URL.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(f"{admin}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self.db_name = ""

    def flush_broker(self) -> None:
        import redis

        redis.Redis.from_url(self.broker_url, socket_timeout=5).flushdb()

    def env(self) -> dict[str, str]:
        return {**os.environ, "PARKGRID_MODE": "service",
                "PARKGRID_DATABASE_URL": self.database_url,
                "PARKGRID_BROKER_URL": self.broker_url,
                "PARKGRID_CHAIN_URL": self.node.url,
                "PARKGRID_SECRET_KEY": self.settings.secret_key,
                "PARKGRID_DATA_DIR": str(self.tmp / "data"),
                "PARKGRID_AUTO_DISPATCH": "0",
                "PYTHONPATH": str(ROOT / "platform") + os.pathsep
                + os.environ.get("PYTHONPATH", "")}

    def setup(self) -> dict:
        from eth_account import Account

        from parkgrid import migrate
        from parkgrid.chain import ANVIL_DEFAULT_KEY, AnvilNode
        from parkgrid.config import SERVICE, Settings
        from parkgrid.services.chain_setup import setup_chain
        from parkgrid.wiring import Platform

        t0 = time.perf_counter()
        self.broker_url = f"{REDIS_SERVER_URL}/{self.args.redis_db}"
        self.flush_broker()
        self.create_database()
        log(f"database {self.db_name}; broker {self.broker_url}")
        self.node = AnvilNode(log_file=self.tmp / "anvil.log").start()
        log(f"anvil at {self.node.url}")
        self.settings = Settings(mode=SERVICE, data_dir=self.tmp / "data",
                                 database_url=self.database_url, broker_url=self.broker_url,
                                 chain_url=self.node.url,
                                 secret_key="bench-web-secret").with_defaults()
        migrate.upgrade(self.database_url)
        self.platform = Platform(self.settings)
        enterprises = self.load_park()
        counts = setup_chain(self.platform, funder=Account.from_key(ANVIL_DEFAULT_KEY))
        log(f"chain set up: {counts}")
        return {"enterprises": enterprises, "setup_s": time.perf_counter() - t0}

    def load_park(self) -> int:
        from datetime import datetime, timedelta
        from zoneinfo import ZoneInfo

        from sqlalchemy import select
        from werkzeug.security import generate_password_hash

        from parkgrid.demo import generate_demo_park, load_demo_park
        from parkgrid.models import Enterprise, Park, Role, User

        password_hash = generate_password_hash(BENCH_PASSWORD, method="scrypt")
        with self.platform.unit_of_work() as session:
            load_demo_park(session, self.platform.keybox, generate_demo_park())
            park = session.scalar(select(Park))
            # Gate closure two hours from now (its next occurrence is always two hours away,
            # whatever the time of day), so no run crosses it.
            local = datetime.now(ZoneInfo(park.timezone)) + timedelta(hours=2)
            park.gate_closure_time = local.time().replace(microsecond=0)
            enterprises = session.scalars(select(Enterprise).order_by(Enterprise.code)).all()
            for enterprise in enterprises:
                # One login per enterprise; the hash is computed once (scrypt is slow on
                # purpose), the check at login is the platform's own.
                session.add(User(username=f"{LOGIN_PREFIX}{enterprise.code.lower()}",
                                 display_name=f"bench {enterprise.code}", role=Role.ENTERPRISE,
                                 enterprise=enterprise, locale="en",
                                 password_hash=password_hash))
            log(f"demo park loaded: {len(enterprises)} enterprises, gate closure moved to "
                f"{park.gate_closure_time} {park.timezone}")
            return len(enterprises)

    def start_workers(self) -> None:
        log_path = self.tmp / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "parkgrid.cli", "worker", "--concurrency",
             str(self.args.worker_concurrency), "--loglevel", "warning"],
            cwd=ROOT, env=self.env(), stdout=log_path.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.processes.append(worker)
        self.worker = worker
        from parkgrid import tasks

        # Logging stays at warning (a line per task costs CPU under load), so readiness is
        # asked through the broker.
        tasks.configure(self.settings, self.platform)
        deadline = time.monotonic() + 60
        while not tasks.celery_app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start:\n{log_path.read_text()}")
        log(f"celery worker ready (concurrency {self.args.worker_concurrency})")

    def start_server(self, profile_dir: Path | None = None) -> subprocess.Popen:
        port = free_port()
        if profile_dir is None:
            command = [sys.executable, "-m", "parkgrid.cli", "serve", "--port", str(port),
                       *self.args.serve_option]
            name = "server"
        else:
            command = [sys.executable, str(Path(__file__).resolve()), "--profiled-server",
                       str(profile_dir), "--port", str(port)]
            name = "profiled-server"
        log_path = self.tmp / f"{name}.log"
        server = subprocess.Popen(command, cwd=ROOT, env=self.env(), stdout=log_path.open("w"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(server)
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start:\n{log_path.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=1):
                break
            time.sleep(0.2)
        log(f"{name} listening on {base_url}: {' '.join(command[2:])}")
        self.server, self.base_url = server, base_url
        return server

    # -- tear-down ---------------------------------------------------------------------------

    def stop(self, process: subprocess.Popen, timeout: float = 20.0) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process in self.processes:
            self.processes.remove(process)

    def close(self) -> None:
        for process in list(self.processes):
            self.stop(process)
        if self.platform is not None and "engine" in self.platform.__dict__:
            self.platform.engine.dispose()
        if self.node is not None:
            with contextlib.suppress(Exception):
                self.node.stop()
        with contextlib.suppress(Exception):
            if self.broker_url:
                self.flush_broker()
        self.drop_database()


# ----------------------------------------------------------------------------- clients

@dataclass
class Enterprise:
    code: str
    token: str = ""
    # (side, period) -> kVA still allowed, in tenths (the client's own running budget).
    budget: dict = field(default_factory=dict)


@dataclass
class Level:
    clients: int
    latencies: list = field(default_factory=list)  # ms, measured window only
    accepted: int = 0  # in the measured window
    errors: int = 0  # in the measured window
    error_samples: list = field(default_factory=list)
    window_s: float = 0.0
    warmup_accepted: int = 0
    warmup_errors: int = 0
    server_cpu_ms: float = 0.0  # server CPU per accepted order (warm-up included)
    worker_cpu_ms: float = 0.0  # Celery workers' CPU per accepted order, meanwhile


class Orders:
    """Valid orders from the seed: side, price, periods and quantities within the limits."""

    def __init__(self, seed: int, periods: int):
        self.rng = random.Random(seed)
        self.periods = periods

    def make(self, enterprise: Enterprise, day: str) -> dict | None:
        rng = self.rng
        for _attempt in range(8):
            side = rng.choice(("sell", "buy"))
            width = rng.choice((1, 1, 2, 3, 4))
            first = rng.randrange(0, self.periods - width + 1)
            chosen = {}
            for period in range(first, first + width):
                tenths = rng.randint(1, 10)  # 0.1 to 1.0 kVA
                left = enterprise.budget.get((side, period), 0)
                if left < tenths:
                    break
                chosen[period] = tenths
            else:
                for period, tenths in chosen.items():
                    enterprise.budget[(side, period)] -= tenths
                low, high = (200, 600) if side == "sell" else (300, 800)
                price = rng.randint(low, high)  # 0.0200 to 0.0800 yuan/kVA·h
                return {"delivery_day": day, "side": side, "price": f"0.{price:04d}",
                        "periods": [{"period": p, "quantity_kva": f"{t / 10:.1f}"}
                                    for p, t in chosen.items()]}
        return None


async def prepare_clients(base_url: str, codes: list[str]) -> tuple[list[Enterprise], str, int]:
    """Log every enterprise in, read the open day and each enterprise's limits."""
    import aiohttp

    enterprises = [Enterprise(code) for code in codes]
    async with aiohttp.ClientSession(base_url) as http:
        async def login(e: Enterprise) -> None:
            async with http.post("/api/v1/tokens", json={
                    "username": f"{LOGIN_PREFIX}{e.code.lower()}",
                    "password": BENCH_PASSWORD, "label": "bench"}) as response:
                body = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"login of {e.code} refused: {response.status} {body}")
                e.token = body["token"]

        for start in range(0, len(enterprises), 8):
            await asyncio.gather(*(login(e) for e in enterprises[start:start + 8]))
        headers = {"Authorization": f"Bearer {enterprises[0].token}"}
        async with http.get("/api/v1/orders/calendar", headers=headers) as response:
            calendar = await response.json()

        async def limits(e: Enterprise, side: str) -> None:
            async with http.get("/api/v1/orders/limits", params={"side": side}, headers={
                    "Authorization": f"Bearer {e.token}"}) as response:
                body = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"limits of {e.code} refused: {response.status} {body}")
            for item in body["periods"]:
                # Half of what is allowed: room for rounding, and never a limit refusal.
                e.budget[(side, item["period"])] = int(float(item["available_kva"]) * 10) // 2

        jobs = [(e, side) for e in enterprises for side in ("sell", "buy")]
        for start in range(0, len(jobs), 8):
            await asyncio.gather(*(limits(e, s) for e, s in jobs[start:start + 8]))
    return enterprises, calendar["open_delivery_day"], int(calendar["periods"])


async def run_level(base_url: str, enterprises: list[Enterprise], day: str, orders: Orders,
                    level: Level, warmup_s: float, duration_s: float,
                    accepted_ids: list[str]) -> None:
    """`level.clients` closed-loop clients, each on its own keep-alive connection."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    start = time.perf_counter()
    measure_from = start + warmup_s
    stop_at = measure_from + duration_s

    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout,
                                     json_serialize=json.dumps) as http:
        async def client(number: int) -> None:
            enterprise = enterprises[number % len(enterprises)]
            headers = {"Authorization": f"Bearer {enterprise.token}",
                       "Content-Type": "application/json"}
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                body = orders.make(enterprise, day)
                if body is None:
                    raise RuntimeError(f"enterprise {enterprise.code} ran out of capacity "
                                       "budget: lower the duration or the quantities")
                data = json.dumps(body).encode()
                sent = time.perf_counter()
                status, text = 0, ""
                try:
                    async with http.post("/api/v1/orders", data=data,
                                         headers=headers) as response:
                        status = response.status
                        raw = await response.read()
                    if status == 201:
                        accepted_ids.append(json.loads(raw)["id"])
                    else:
                        text = raw[:300].decode(errors="replace")
                except (TimeoutError, aiohttp.ClientError) as exc:
                    text = repr(exc)
                finished = time.perf_counter()
                # A request counts in the level's window when its answer arrives in it.
                in_window = measure_from <= finished <= stop_at
                if in_window:
                    level.latencies.append((finished - sent) * 1000.0)
                    if status == 201:
                        level.accepted += 1
                    else:
                        level.errors += 1
                elif status == 201:
                    level.warmup_accepted += 1
                else:
                    level.warmup_errors += 1
                if status != 201 and len(level.error_samples) < 5:
                    level.error_samples.append(f"{status} {text}")

        await asyncio.gather(*(client(i) for i in range(level.clients)))
    level.window_s = stop_at - measure_from


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


# ----------------------------------------------------------------------------- checks

def wait_for_drain(platform, timeout_s: float) -> tuple[int, float]:
    """Wait until no order is pending on chain; (still pending, seconds waited)."""
    from sqlalchemy import func, select

    from parkgrid.models import ChainStatus, Order

    t0 = time.perf_counter()
    last_report = 0.0
    while True:
        with platform.unit_of_work() as session:
            pending = session.scalar(select(func.count()).select_from(Order).where(
                Order.chain_status == ChainStatus.PENDING))
        waited = time.perf_counter() - t0
        if pending == 0 or waited > timeout_s:
            return pending, waited
        if waited - last_report >= 5:
            log(f"  draining: {pending} order(s) still pending after {waited:.0f} s")
            last_report = waited
        time.sleep(0.5)


class BatchCache:
    """The market contract's reads, each batch read once (a recorded batch never changes)."""

    def __init__(self, market):
        self.market = market
        self.batches: dict[bytes, object] = {}

    def order(self, order_id: bytes):
        return self.market.order(order_id)

    def batch(self, batch_id: bytes):
        if batch_id not in self.batches:
            self.batches[batch_id] = self.market.batch(batch_id)
        return self.batches[batch_id]


def check_on_chain(platform, accepted_ids: list[str]) -> dict:
    """Every accepted order in the database once, recorded, and matching the chain."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from parkgrid.models import ChainStatus, Order
    from parkgrid.services.audit import compare_order

    t0 = time.perf_counter()
    wanted = set(accepted_ids)
    on_chain, mismatched, samples = 0, 0, []
    statuses: dict[str, int] = {}
    with platform.unit_of_work() as session:
        market = platform.market(session)
        stored = session.scalars(select(Order).options(
            selectinload(Order.actions), selectinload(Order.periods),
            selectinload(Order.enterprise))).all()
        found = {o.public_id for o in stored}
        mine = [o for o in stored if o.public_id in wanted]
        for order in mine:
            order.enterprise.code  # noqa: B018 - loaded here, read by the threads below
        # The chain reads dominate: a few threads overlap their round trips to the node, and
        # each batch is read from the chain once, not once per order in it.
        reader = BatchCache(market)
        with ThreadPoolExecutor(max_workers=4) as pool:
            comparisons = list(pool.map(lambda o: compare_order(reader, o), mine))
        for order, comparison in zip(mine, comparisons, strict=True):
            statuses[order.chain_status] = statuses.get(order.chain_status, 0) + 1
            if (order.chain_status == ChainStatus.RECORDED and comparison.chain is not None
                    and not comparison.mismatches):
                on_chain += 1
            else:
                mismatched += 1
                if len(samples) < 5:
                    samples.append(f"{order.public_id}: {order.chain_status} "
                                   f"{order.chain_error or ''} {comparison.mismatches}")
    paths: dict[str, int] = {}
    for order in stored:
        paths[order.chain_path] = paths.get(order.chain_path, 0) + 1
    return {"on_chain": on_chain, "missing_on_chain": len(wanted) - on_chain,
            "not_stored": len(wanted - found), "stored_not_accepted": len(found - wanted),
            "duplicates": len(accepted_ids) - len(wanted), "statuses": statuses,
            "paths": paths, "samples": samples, "check_s": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- profile

def profiled_server(profile_dir: str, port: int) -> int:
    """Child mode: the app behind waitress, every request profiled into profile_dir."""
    from waitress import serve
    from werkzeug.middleware.profiler import ProfilerMiddleware

    from parkgrid.config import from_env
    from parkgrid.web import create_app

    app = create_app(from_env())
    app.wsgi_app = ProfilerMiddleware(app.wsgi_app, stream=None, profile_dir=profile_dir,
                                      filename_format="{method}.{path}.{elapsed:.0f}ms."
                                                      "{time:.6f}.prof")
    serve(app, host="127.0.0.1", port=port, threads=8, connection_limit=1000,
          ident="parkgrid")
    return 0


def summarise_profile(profile_dir: Path, top: int) -> list[str]:
    import io
    import pstats

    files = sorted(str(p) for p in profile_dir.glob("POST.api.v1.orders.*.prof"))
    if not files:
        return ["no order requests were profiled"]
    stats = pstats.Stats(files[0], stream=io.StringIO())
    for path in files[1:]:
        stats.add(path)
    combined = profile_dir / "orders-combined.prof"
    stats.dump_stats(combined)
    lines = [f"{len(files)} POST /api/v1/orders requests profiled; combined: {combined}"]
    for sort in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(str(combined), stream=out).sort_stats(sort).print_stats(top)
        lines.append(f"--- by {sort}, per request divide by {len(files)}")
        lines.extend(out.getvalue().splitlines())
    return lines


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short levels, all checks")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--levels", default="50,200", help="concurrent clients per level")
    parser.add_argument("--duration", type=float, help="measured seconds per level (20; quick 4)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per level (3; quick 1)")
    parser.add_argument("--drain-timeout", type=float,
                        help="seconds to wait for the outbox to drain (300; quick 25)")
    parser.add_argument("--enterprises", type=int,
                        help="enterprises the clients trade for (all 61; quick 20)")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--serve-option", action="append", default=[],
                        help="extra option for 'parkgrid serve' (repeatable), e.g. "
                             "--serve-option=--threads=8")
    parser.add_argument("--redis-db", type=int, default=14, help="Redis database number used")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="also profile the server's order requests into DIR")
    parser.add_argument("--profile-clients", type=int, default=20)
    parser.add_argument("--profiled-server", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profiled_server:
        return profiled_server(args.profiled_server, args.port)
    args.duration = args.duration or (4.0 if args.quick else 20.0)
    args.enterprises = args.enterprises or (20 if args.quick else 10_000)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    args.drain_timeout = args.drain_timeout or (25.0 if args.quick else 300.0)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]

    load_start = loadavg()
    t_start = time.perf_counter()
    log(f"load average at start: {load_start} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp_name:
        env = Environment(args, Path(tmp_name))
        try:
            return run(env, args, levels, load_start, t_start)
        finally:
            env.close()


def run(env: Environment, args, levels: list[int], load_start, t_start) -> int:
    from sqlalchemy import select

    from parkgrid.models import Enterprise as EnterpriseRow

    setup = env.setup()
    env.start_workers()
    server = env.start_server()
    with env.platform.unit_of_work() as session:
        codes = list(session.scalars(select(EnterpriseRow.code).order_by(EnterpriseRow.code)
                                     .limit(args.enterprises)))
    enterprises, day, periods = asyncio.run(prepare_clients(env.base_url, codes))
    log(f"{len(enterprises)} enterprises logged in; orders for {day} ({periods} periods); "
        f"set-up {setup['setup_s']:.1f} s")
    orders = Orders(args.seed, periods)
    accepted_ids: list[str] = []
    results: dict[int, Level] = {}
    for clients in levels:
        level = Level(clients)
        log(f"level {clients} clients: {args.warmup:g} s warm-up, {args.duration:g} s measured")
        workers = [env.worker.pid, *children_of(env.worker.pid)]
        # With `--serve-option=--processes=N` the server is a parent and N server processes.
        servers = [server.pid, *children_of(server.pid)]
        cpu_before = sum(map(cpu_s, servers)), sum(map(cpu_s, workers))
        asyncio.run(run_level(env.base_url, enterprises, day, orders, level, args.warmup,
                              args.duration, accepted_ids))
        placed = level.accepted + level.warmup_accepted
        level.server_cpu_ms = (sum(map(cpu_s, servers)) - cpu_before[0]) * 1000 / max(1, placed)
        level.worker_cpu_ms = (sum(map(cpu_s, workers)) - cpu_before[1]) * 1000 / max(1, placed)
        results[clients] = level
        rate = level.accepted / level.window_s
        log(f"  {rate:.1f} orders/s, p50 {percentile(level.latencies, 0.5):.1f} ms, "
            f"p99 {percentile(level.latencies, 0.99):.1f} ms, {level.errors} errors "
            f"(+{level.warmup_errors} in warm-up); server CPU {level.server_cpu_ms:.1f} ms "
            f"and worker CPU {level.worker_cpu_ms:.1f} ms per order; load {loadavg()}")
        for sample in level.error_samples:
            log(f"    error: {sample}")
    server_rss = max(peak_rss_mb(pid) for pid in [server.pid, *children_of(server.pid)])
    worker_rss = max([peak_rss_mb(pid) for pid in
                      [env.worker.pid, *children_of(env.worker.pid)]] or [0.0])
    env.stop(server)

    log(f"{len(accepted_ids)} orders accepted; waiting for the workers to put them on chain")
    pending, drain_s = wait_for_drain(env.platform, args.drain_timeout)
    log(f"  outbox drained in {drain_s:.1f} s ({pending} still pending)")
    check = check_on_chain(env.platform, accepted_ids)
    log(f"  {check['on_chain']} of {len(accepted_ids)} accepted orders on chain and matching "
        f"({check['check_s']:.1f} s to check); paths {check['paths']}; "
        f"statuses {check['statuses']}")
    for sample in check["samples"]:
        log(f"    not on chain: {sample}")

    profile_lines: list[str] = []
    if args.profile:
        profile_dir = Path(args.profile).resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
        for old in profile_dir.glob("*.prof"):
            old.unlink()
        profiled = env.start_server(profile_dir)
        level = Level(args.profile_clients)
        log(f"profiling: {args.profile_clients} clients for {args.duration:g} s")
        asyncio.run(run_level(env.base_url, enterprises, day, orders, level, 0.5,
                              args.duration, []))
        env.stop(profiled)
        profile_lines = summarise_profile(profile_dir, 40)
        for line in profile_lines:
            log(line)

    figures: dict = {"bench": "web"}
    errors_total = 0
    target_met = True
    for clients, level in results.items():
        rate = level.accepted / level.window_s if level.window_s else 0.0
        p50, p99 = percentile(level.latencies, 0.5), percentile(level.latencies, 0.99)
        errors = level.errors + level.warmup_errors
        errors_total += errors
        target_met = target_met and rate >= TARGET_RATE and p99 <= TARGET_P99_MS
        figures.update({f"orders_per_s_{clients}": round(rate, 1),
                        f"p50_ms_{clients}": round(p50, 1), f"p99_ms_{clients}": round(p99, 1),
                        f"errors_{clients}": errors,
                        f"server_cpu_ms_per_order_{clients}": round(level.server_cpu_ms, 2),
                        f"worker_cpu_ms_per_order_{clients}": round(level.worker_cpu_ms, 2)})
    ok = (errors_total == 0 and check["missing_on_chain"] == 0 and check["not_stored"] == 0
          and check["stored_not_accepted"] == 0 and check["duplicates"] == 0
          and len(accepted_ids) > 0)
    figures = {"bench": "web", "ok": ok, "target_met": target_met, **{
        k: v for k, v in figures.items() if k != "bench"},
        "accepted": len(accepted_ids), "on_chain": check["on_chain"],
        "missing_on_chain": check["missing_on_chain"], "not_stored": check["not_stored"],
        "drain_s": round(drain_s, 1), "check_s": round(check["check_s"], 1),
        "chain_paths": check["paths"], "enterprises": len(enterprises),
        "park_enterprises": setup["enterprises"],
        "duration_s": args.duration, "warmup_s": args.warmup,
        "worker_concurrency": args.worker_concurrency,
        "serve_options": args.serve_option, "rss_mb": round(rss_mb(), 1),
        "server_rss_mb": round(server_rss, 1), "worker_rss_mb": round(worker_rss, 1),
        "setup_s": round(setup["setup_s"], 1), "loadavg_start": load_start,
        "loadavg_end": loadavg(), "total_s": round(time.perf_counter() - t_start, 1),
        "seed": args.seed}
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
