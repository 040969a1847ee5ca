"""A local anvil chain node run as a child process (for the run command and for tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import ChainUnavailableError

__all__ = ["ANVIL_EXECUTABLE", "AnvilNode", "free_port"]

# platform/parkgrid/chain/anvil.py -> the repository root is three folders up.
ANVIL_EXECUTABLE = Path(__file__).resolve().parents[3] / "node_modules" / ".bin" / "anvil"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class AnvilNode:
    """One anvil process: started on `start()`, stopped (state dumped) on `stop()`.

    With `state_file`, anvil loads it on start when it exists and writes it on exit (and
    every `state_interval` seconds), so the chain survives restarts.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        state_file: Path | None = None,
        state_interval: int | None = None,
        chain_id: int = 31337,
        block_time: float | None = None,
        log_file: Path | None = None,
        startup_timeout: float = 30.0,
        executable: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.state_file = Path(state_file) if state_file is not None else None
        self.state_interval = state_interval
        self.chain_id = chain_id
        self.block_time = block_time
        self.startup_timeout = startup_timeout
        self.executable = Path(executable) if executable is not None else ANVIL_EXECUTABLE
        if log_file is None:
            log_dir = (self.state_file.parent if self.state_file is not None
                       else Path(tempfile.gettempdir()))
            log_file = log_dir / f"anvil-{self.port}.log"
        self.log_file = Path(log_file)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The node's JSON-RPC URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The command line that starts the node."""
        args = [str(self.executable), "--host", self.host, "--port", str(self.port),
                "--chain-id", str(self.chain_id)]
        if self.state_file is not None:
            args += ["--state", str(self.state_file)]
            if self.state_interval is not None:
                args += ["--state-interval", str(self.state_interval)]
        if self.block_time is not None:
            args += ["--block-time", f"{self.block_time:g}"]
        return args

    def start(self) -> AnvilNode:
        """Start anvil and wait until it answers JSON-RPC; return self."""
        if self.running:
            return self
        if not self.executable.exists():
            raise FileNotFoundError(
                f"anvil is not installed at {self.executable}; run 'make setup' in the "
                "repository root (package.json pins @foundry-rs/anvil)")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            # A session of its own: the npm launcher (node) runs the native anvil as a child,
            # and stop() needs to see both, as one process group, exit.
            self._process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            self._wait_until_ready()
            self._keep_clock_ahead_of_head()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop anvil gracefully (it writes its state file) and wait until it has exited."""
        process = self._process
        if process is None:
            return
        pgid = process.pid
        if process.poll() is None:
            # SIGINT to the launcher only: it forwards the signal to anvil once. Signalling
            # the whole group would hit anvil twice, and a second interrupt can cut its dump.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        # The launcher exits as soon as it has forwarded the signal; the state file is only
        # complete once anvil itself is gone, so wait for the whole group.
        while _group_alive(pgid) and time.monotonic() < deadline:
            process.poll()  # reap the launcher so it does not linger as a zombie
            time.sleep(0.05)
        if _group_alive(pgid):
            # Stuck: kill it; the state file then keeps whatever was dumped last.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        self._process = None

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                              "params": []}).encode()
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise ChainUnavailableError(
                    f"anvil exited with code {self._process.returncode} while starting on "
                    f"{self.url}; last log lines ({self.log_file}):\n{self._log_tail()}")
            try:
                req = urllib.request.Request(self.url, data=request,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=1.0) as response:
                    if "result" in json.loads(response.read()):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            time.sleep(0.1)
        raise ChainUnavailableError(
            f"anvil did not answer on {self.url} within {self.startup_timeout:g} s; "
            f"last log lines ({self.log_file}):\n{self._log_tail()}")

    def _keep_clock_ahead_of_head(self) -> None:
        # anvil (1.7.1) stamps the first block after loading --state with the wall-clock time
        # even when the saved chain is ahead of it (a test or an operator moved time forward),
        # so block time would go back and a closed gate would reopen. When the head is not
        # behind the wall clock's second, pin the next block to one second after it; anvil
        # carries that offset on to the blocks after.
        head = self._rpc("eth_getBlockByNumber", ["latest", False])
        head_time = int(head["timestamp"], 16)
        if head_time >= int(time.time()):
            self._rpc("evm_setNextBlockTimestamp", [head_time + 1])

    def _rpc(self, method: str, params: list[object]) -> Any:
        request = urllib.request.Request(
            self.url, headers={"Content-Type": "application/json"},
            data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                             "params": params}).encode())
        try:
            with urllib.request.urlopen(request, timeout=self.startup_timeout) as response:
                answer = json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
            raise ChainUnavailableError(f"anvil on {self.url} did not answer {method}: {exc}") \
                from exc
        if "error" in answer:
            raise ChainUnavailableError(
                f"anvil on {self.url} refused {method}: {answer['error']}")
        return answer["result"]

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group `pgid`."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: zombies count as alive, but they are reaped quickly
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
