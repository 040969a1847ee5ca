"""End-to-end fixtures: the real `parkgrid run` process and a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningPlatform:
    """`parkgrid run` in a subprocess, on its own data folder and ports."""

    def __init__(self, data_dir: Path, chain: str):
        self.port = free_port()
        self.chain_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARKGRID_")}
        env.update(PARKGRID_DATA_DIR=str(data_dir),
                   PARKGRID_CHAIN_URL=("eth-tester" if chain == "eth-tester"
                                       else f"http://127.0.0.1:{self.chain_port}"))
        self.log = data_dir / "run.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "parkgrid.cli", "run", "--port", str(self.port),
             "--chain-port", str(self.chain_port)],
            cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"parkgrid run exited:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.base_url + "/login", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"parkgrid run did not come up:\n{self.log.read_text()}")

    def output(self) -> str:
        return self.log.read_text()

    def api(self, method: str, path: str, body=None, token: str | None = None):
        request = urllib.request.Request(
            self.base_url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def token(self, username: str, password: str) -> str:
        status, body = self.api("POST", "/api/v1/tokens",
                                {"username": username, "password": password})
        assert status == 201, body
        return body["token"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # Ctrl+C: the run command stops its chain node too
            try:
                # Generous: the node writes its state file on the way out, and a loaded
                # machine is slow; killing the command early would orphan a node that is
                # still writing.
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module", params=["anvil", "eth-tester"])
def running(request, tmp_path_factory):
    platform = RunningPlatform(tmp_path_factory.mktemp(f"run-{request.param}"), request.param)
    platform.chain = request.param
    yield platform
    platform.stop()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's package with "
                    "'apt-get install chromium' (make test does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()
