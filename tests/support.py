"""Helpers for tests that run real `idp` processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_idp(args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real `idp` command and capture its output."""
    return subprocess.run([sys.executable, "-m", "idp", *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout)


def stop_process_group(popen: subprocess.Popen) -> None:
    """SIGTERM a process started with start_new_session, and its group; SIGKILL after 20 s."""
    if popen.poll() is None:
        os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()


class Process:
    """A background `idp` process whose output goes to a log file, stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, module: str = "idp"):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.popen = subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def terminate(self) -> None:
        """SIGTERM the group without waiting (stop several servers at once, then stop() each)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self) -> None:
        stop_process_group(self.popen)
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the whole process group at once (fault tests)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def wait_until(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.1, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def json_lines(output: str) -> list:
    """Parse each non-empty line of CLI output as JSON."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]
