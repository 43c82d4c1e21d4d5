"""wrk (Debian's /usr/bin/wrk) as the load generator of `--compare`, and CPU accounting from /proc.

One request shape per run, described by a `WrkSpec`; the Lua scripts in bench/wrk/ send it, spend
pre-minted tokens (authorization codes), keep refresh chains closed-loop, or sign in with a form.
The server's CPU is read from /proc/<pid>/stat of its process tree (and of the PostgreSQL backends
serving its database); the generator's own CPU from the rusage of the finished wrk process.
BENCH_DEBUG=1 in the environment prints wrk's own report (and the scripts' stderr) of every run.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.harness import BenchError

WRK = shutil.which("wrk") or "/usr/bin/wrk"
SCRIPTS = Path(__file__).resolve().parent / "wrk"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OUT_OF_TOKENS = "out of tokens"


@dataclass
class WrkSpec:
    """One scenario's request on one server. `script` is fixed, pool, chain or signin (bench/wrk/*.lua);
    `tokens(n)` mints n tokens ("{token}" in body or headers) before each run of pool and chain."""

    script: str
    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    expect: int = 200
    tokens: Callable[[int], list[str]] | None = None
    note: str = ""


@dataclass
class WrkRun:
    """One timed wrk run and the CPU each party used during it."""

    concurrency: int
    requests: int
    errors: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    database_cpu_s: float
    generator_cpu_s: float
    first_error: str = ""
    completed: int | None = None  # chain and signin: successful rotations / sign-ins

    @property
    def rps(self) -> float:
        """Successful operations per second (a sign-in is two requests and counts once)."""
        done = self.requests - self.errors if self.completed is None else self.completed
        return done / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_per_1000(self) -> float:
        """CPU seconds of the server (and its database backends) per 1000 operations."""
        done = self.rps * self.elapsed
        return (self.server_cpu_s + self.database_cpu_s) * 1000 / done if done else float("nan")

    def summary(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "requests": self.requests, "errors": self.errors,
                "elapsed_s": round(self.elapsed, 3), "rps": round(self.rps, 1), "p50_ms": round(self.p50_ms, 3),
                "p99_ms": round(self.p99_ms, 3), "server_cpu_s": round(self.server_cpu_s, 3),
                "database_cpu_s": round(self.database_cpu_s, 3), "generator_cpu_s": round(self.generator_cpu_s, 3),
                "cpu_s_per_1000": round(self.cpu_per_1000, 3), "first_error": self.first_error or None}


def medians(runs: list[WrkRun]) -> dict[str, Any]:
    """The medians of a level's runs, with every run kept."""
    def median(metric: Callable[[WrkRun], float]) -> float:
        return statistics.median(metric(run) for run in runs)

    return {"rps": round(median(lambda r: r.rps), 1), "p50_ms": round(median(lambda r: r.p50_ms), 2),
            "p99_ms": round(median(lambda r: r.p99_ms), 2), "cpu_s_per_1000": round(median(lambda r: r.cpu_per_1000), 3),
            "generator_cpu_share": round(median(lambda r: r.generator_cpu_s / r.elapsed if r.elapsed else 0), 3),
            "errors": sum(run.errors for run in runs), "runs": [run.summary() for run in runs]}


# --- CPU of process trees -----------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds: user + system) of a live process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree_cpu(roots: list[int]) -> dict[int, float]:
    """CPU seconds so far of every process in the trees under `roots` (the roots included)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            stats[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {}, [pid for pid in roots if pid in stats]
    while todo:
        pid = todo.pop()
        found[pid] = stats[pid][1]
        todo.extend(children.get(pid, []))
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two samples (a process that appeared in between counts whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def wait_idle(pids: Callable[[], list[int]], quiet: float = 0.2, window: float = 0.25, limit: float = 30.0) -> float:
    """Wait until the trees under `pids` use less than `quiet` of a core over `window` seconds (work
    a run left queued, such as sign-ins still hashing, must not fall into the next run); seconds waited."""
    began = time.monotonic()
    before = process_tree_cpu(pids())
    while time.monotonic() - began < limit:
        time.sleep(window)
        after = process_tree_cpu(pids())
        if cpu_used(before, after) < quiet * window:
            break
        before = after
    return time.monotonic() - began


# --- wrk ----------------------------------------------------------------------------------------


def run_wrk(base_url: str, spec: WrkSpec, concurrency: int, duration: int, tokens: list[str] | None = None,
            server_pids: Callable[[], list[int]] = list, database_pids: Callable[[], list[int]] = list) -> WrkRun:
    """One wrk run of `duration` whole seconds at `concurrency` connections (2 threads, as the cores)."""
    if not os.access(WRK, os.X_OK):
        raise BenchError(f"wrk is not installed at {WRK} (apt-get install wrk)")
    threads = min(2, concurrency)
    with tempfile.TemporaryDirectory(prefix="idp-wrk-") as scratch:
        script, out, token_file = Path(scratch, "run.lua"), Path(scratch, "out.json"), Path(scratch, "tokens")
        script.write_text((SCRIPTS / "common.lua").read_text() + "\n" + (SCRIPTS / f"{spec.script}.lua").read_text())
        token_file.write_text("".join(f"{token}\n" for token in tokens or []))
        env = {**os.environ, "BENCH_METHOD": spec.method, "BENCH_PATH": spec.path, "BENCH_BODY": spec.body,
               "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in spec.headers.items()),
               "BENCH_EXPECT": str(spec.expect), "BENCH_TOKENS": str(token_file) if tokens else "",
               "BENCH_THREADS": str(threads), "BENCH_OUT": str(out)}
        server_before, database_before = process_tree_cpu(server_pids()), process_tree_cpu(database_pids())
        process = subprocess.Popen([WRK, "-t", str(threads), "-c", str(concurrency), "-d", f"{duration}s",
                                    "--timeout", "10s", "-s", str(script), base_url],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        with process.stdout:
            output = process.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        server_after, database_after = process_tree_cpu(server_pids()), process_tree_cpu(database_pids())
        if os.environ.get("BENCH_DEBUG"):
            print(output, file=sys.stderr)
        if process.returncode != 0 or not out.exists():
            raise BenchError(f"wrk failed ({process.returncode}): {output[-1000:]}")
        figures = json.loads(out.read_text())
    socket_errors = sum(figures[name] for name in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return WrkRun(
        concurrency=concurrency,
        requests=figures["requests"],
        # wrk counts >= 400 as status errors; the scripts count those and any other unexpected answer.
        errors=socket_errors + max(figures["status_errors"], figures["script_failures"]),
        elapsed=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        server_cpu_s=cpu_used(server_before, server_after),
        database_cpu_s=cpu_used(database_before, database_after),
        generator_cpu_s=usage.ru_utime + usage.ru_stime,
        first_error=figures["first_failure"],
        completed=figures["completed"] if spec.script in ("chain", "signin") else None,
    )
