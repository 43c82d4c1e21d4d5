"""CPU per request of `idp serve`: a measure that a shared, noisy machine does not skew like req/s does.

Starts the server as `python -m bench` does (PostgreSQL, `idp init`, `idp serve`), sets each
scenario up with bench's own set-up, and drives a fixed number of requests through bench's load
loop. The server's CPU (utime + stime of the gunicorn master and every worker, from
/proc/<pid>/stat) is read before and after; CPU-ms per request is the difference over the number
of requests answered. The load generator's own CPU is not counted.

    python tools/cpu_per_request.py --database-url postgresql://postgres@127.0.0.1:5432/scratch \\
        -s token_client_credentials -s jwks -n 2000 -c 8
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import SCENARIOS, run_load  # noqa: E402
from bench.scenarios import load_all  # noqa: E402
from bench.harness import Target  # noqa: E402
from bench.server import free_port, running_server  # noqa: E402

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def server_pids(port: int) -> list[int]:
    """Every process of the server listening on `port`: the session of the process started with it
    (gunicorn's workers are forks, granian's are spawned: either way they stay in that session)."""
    needles = (f"--port\0{port}\0".encode(), f"127.0.0.1:{port}\0".encode())  # `idp serve` or granian, gunicorn
    sessions = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                text = cmdline.read() + b"\0"
        except OSError:
            continue
        if any(needle in text for needle in needles) and (fields := _stat(entry)):
            sessions.add(fields[3])
    return [int(entry) for entry in filter(str.isdigit, os.listdir("/proc")) if (fields := _stat(entry)) and fields[3] in sessions]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        if fields := _stat(str(pid)):
            total += int(fields[11]) + int(fields[12])
    return total / TICKS_PER_SECOND


def measure(target, name: str, requests: int, concurrency: int, warmup: int) -> dict:
    """One scenario: set-up, `warmup` unmeasured requests, then `requests` measured ones."""
    request = SCENARIOS[name].setup(target)
    port = urlsplit(target.base_url).port
    run_load(target.base_url, request, concurrency, 600, warmup)
    pids = server_pids(port)
    before = cpu_seconds(pids)
    run = run_load(target.base_url, request, concurrency, 600, requests)
    spent = cpu_seconds(pids) - before
    answered = run.requests + run.errors
    return {
        "scenario": name, "concurrency": concurrency, "requests": answered, "errors": run.errors,
        "cpu_ms_per_request": round(spent * 1000 / max(answered, 1), 2), "rps": round(run.rps, 1),
        "p50_ms": round(run.percentile(50) * 1000, 1), "p99_ms": round(run.percentile(99) * 1000, 1),
        "first_error": run.first_error,
    }


@contextmanager
def gunicorn_server(target, worker_class: str, workers: int, threads: int, access_log: bool):
    """A second server on `target`'s database and secrets, under plain gunicorn with this worker class."""
    port = free_port()
    env = {**target.env, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="idp-metrics-")}
    if worker_class == "granian":
        command = [str(Path(sys.executable).parent / "granian"), "--interface", "wsgi", "--workers", str(workers),
                   "--blocking-threads", str(threads), "--host", "127.0.0.1", "--port", str(port),
                   *(["--access-log"] if access_log else []), "--factory", "idp:create_app"]
    else:
        command = [sys.executable, "-m", "gunicorn", "--worker-class", worker_class, "--workers", str(workers),
                   "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--logger-class", "idp.logs.GunicornLogger",
                   *(["--access-logfile", "-"] if access_log else []), "idp:create_app()"]
    log = open(tempfile.mktemp(prefix="idp-gunicorn-", suffix=".log"), "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(base_url + "/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield Target(base_url, target.env, issuer=target.issuer)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-s", "--scenario", action="append", dest="scenarios", required=True)
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", default="8")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--worker-class", help="run plain gunicorn with this worker class (or `granian`) instead of `idp serve`")
    parser.add_argument("--no-access-log", action="store_true", help="with --worker-class: no access log")
    args = parser.parse_args(argv)
    load_all()
    with running_server(args.database_url, args.workers, args.threads) as served:
        if args.worker_class:
            with gunicorn_server(served, args.worker_class, args.workers, args.threads, not args.no_access_log) as other:
                run_all(other, args)
        else:
            run_all(served, args)


def run_all(target, args) -> None:
    """Every scenario at every concurrency level, one line each."""
    for name in args.scenarios:
        for concurrency in map(int, args.concurrency.split(",")):
            result = measure(target, name, args.requests, concurrency, args.warmup)
            print(" ".join(f"{key}={value}" for key, value in result.items() if value is not None), flush=True)


if __name__ == "__main__":
    main()
