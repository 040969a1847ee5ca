"""`parkgrid serve --processes N`: N server processes answer on one port, and stop together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A server of a tiny app that answers with the id of the process that served the request.
PID_SERVER = """
import os, sys
from parkgrid.cli import _serve_processes

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]

_serve_processes(lambda: app, "127.0.0.1", int(sys.argv[1]), 2, threads=2,
                 connection_limit=100)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read().decode()


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.communicate()[0]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)


def children(pid: int, expected: int = 2) -> list[int]:
    """The server processes under `pid`, once all `expected` of them are started."""
    deadline = time.monotonic() + 30
    while True:
        found = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def stop_and_check_gone(process: subprocess.Popen, pids: list[int]) -> None:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"server process {pid} left running"


@pytest.fixture
def launched():
    started = []

    def launch(args, env=None):
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        started.append(process)
        return process

    yield launch
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_server_processes_answer_on_one_port_and_stop_together(launched):
    port = free_port()
    server = launched([sys.executable, "-c", PID_SERVER, str(port)])
    wait_until_listening(port, server)
    servers = children(server.pid)
    assert len(servers) == 2
    answered = set()
    deadline = time.monotonic() + 30
    while answered != set(servers) and time.monotonic() < deadline:
        status, body = get(f"http://127.0.0.1:{port}/")
        assert status == 200
        answered.add(int(body))
    assert answered == set(servers)  # each connection went to one of the two, both served
    stop_and_check_gone(server, servers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_serve_command_runs_the_app_in_several_processes(tmp_path, launched):
    port = free_port()
    env = {**os.environ, "PARKGRID_DATA_DIR": str(tmp_path),
           # No node there: the server starts anyway (chain records wait in the outbox).
           "PARKGRID_CHAIN_URL": f"http://127.0.0.1:{free_port()}",
           "PYTHONPATH": str(ROOT / "platform") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    server = launched([sys.executable, "-m", "parkgrid.cli", "serve", "--port", str(port),
                       "--processes", "2", "--threads", "2"], env=env)
    wait_until_listening(port, server)
    servers = children(server.pid)
    assert len(servers) == 2
    for _ in range(6):
        status, body = get(f"http://127.0.0.1:{port}/api/openapi.json")
        assert status == 200 and '"ParkGrid API"' in body
    stop_and_check_gone(server, servers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_server_process_that_ends_stops_the_others(launched):
    port = free_port()
    server = launched([sys.executable, "-c", PID_SERVER, str(port)])
    wait_until_listening(port, server)
    first, second = children(server.pid)
    os.kill(first, signal.SIGKILL)
    output, _ = server.communicate(timeout=30)
    assert server.returncode != 0 and f"server process {first} ended" in output
    assert not Path(f"/proc/{second}").exists()


def test_a_port_in_use_is_refused_not_shared(launched):
    port = free_port()
    first = launched([sys.executable, "-c", PID_SERVER, str(port)])
    wait_until_listening(port, first)
    servers = children(first.pid)
    second = launched([sys.executable, "-c", PID_SERVER, str(port)])
    output, _ = second.communicate(timeout=30)
    assert second.returncode != 0 and "Address already in use" in output
    stop_and_check_gone(first, servers)
