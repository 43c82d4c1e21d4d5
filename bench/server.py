"""Start the server under test: a fresh schema, `idp init`, then `idp serve` (gunicorn) on loopback."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.harness import BenchError, Target


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reset_schema(database_url: str) -> None:
    """Drop and recreate the `public` schema: the benchmark database is scratch, like the tests'."""
    from sqlalchemy import create_engine, text

    from idp.config import normalize_database_url

    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@contextmanager
def serving(args: list[str], *, name: str, ready_url: str, log: Path, env: dict[str, str], cwd: Path | None = None,
            timeout: float = 120) -> Iterator[subprocess.Popen]:
    """Start `args` in a process group of its own (output to `log`) and wait until `ready_url` answers
    200; SIGTERM the group after (SIGKILL after 30 s). `name` says which server in errors."""
    with open(log, "w") as output:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(name, ready_url, process, log, timeout)
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the process group a server leads, SIGKILL what is left after `grace` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_ready(name: str, url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
                last_error = f"HTTP {answer.status}"
        except OSError as error:
            last_error = repr(error)
        time.sleep(0.2)
    # What the server printed, the last answer and where its processes wait are all there is to go
    # on once the run has ended.
    raise BenchError(f"{name} did not answer {url} within {timeout:.0f}s (last attempt: {last_error}); "
                     f"its processes:\n{group_report(process.pid)}\nits output:\n{log.read_text()[-2000:]}")


def group_report(group: int) -> str:
    """One line per live process of process group `group`: pid, name, state, the kernel function it
    sleeps in and its CPU time, read from /proc."""
    lines = []
    for stat in sorted(Path("/proc").glob("[0-9]*/stat"), key=lambda path: int(path.parent.name)):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
            fields = tail.split()
            if int(fields[2]) != group:
                continue
            wchan = (stat.parent / "wchan").read_text() or "-"
        except (OSError, ValueError, IndexError):
            continue  # ended while being read
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime (proc(5): fields 14 and 15)
        lines.append(f"  pid {stat.parent.name} ({head.split('(', 1)[1]}) state {fields[0]}, waits in {wchan}, "
                     f"{cpu:.1f} s CPU")
    return "\n".join(lines) or "  none left"


@contextmanager
def all_running(*servers: AbstractContextManager) -> Iterator[list[Any]]:
    """Enter every server's context at once and exit them all at once: a start or a stop is seconds
    of waiting on a process (imports, migrations, key generation, a graceful shutdown), which the
    servers can spend side by side. What entered is exited even when another failed to start."""
    with ThreadPoolExecutor(len(servers)) as pool:
        entering = [pool.submit(server.__enter__) for server in servers]
        try:
            yield [future.result() for future in entering]
        finally:
            wait(entering)  # also after a failed start or a ^C: every server that did start is stopped
            started = [server for server, future in zip(servers, entering) if future.exception() is None]
            for stopping in [pool.submit(server.__exit__, None, None, None) for server in started]:
                stopping.result()


@contextmanager
def running_server(database_url: str, workers: int, threads: int) -> Iterator[Target]:
    """A migrated database with fresh keys and an `idp serve` on a free loopback port; stopped after."""
    if not database_url.startswith(("postgresql", "postgres")):
        raise BenchError(f"the benchmark runs on PostgreSQL, not {database_url.split(':', 1)[0]!r}")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    from idp.config import generate_key_encryption_key

    env = {key: value for key, value in os.environ.items() if not key.startswith("IDP_")}
    env.update(
        IDP_ISSUER=base_url,
        IDP_DATABASE_URL=database_url,
        IDP_INSTANCE_DIR=str(workdir / "instance"),
        IDP_KEYS_DIR=str(workdir / "keys"),
        # Fresh secrets per run, never written down: the schema is fresh too.
        IDP_SECRET_KEY=secrets.token_hex(32),
        IDP_KEY_ENCRYPTION_KEYS=generate_key_encryption_key(),
        IDP_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    target = Target(base_url, env)
    reset_schema(database_url)
    target.idp("init")
    args = [sys.executable, "-m", "idp", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--threads", str(threads)]
    try:
        with serving(args, name="idp serve", ready_url=base_url + "/healthz", log=workdir / "serve.log", env=env) as process:
            target.pid = process.pid
            yield target
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
