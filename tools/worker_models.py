"""WSGI servers and worker models side by side: CPU-ms per request, req/s and p99, in one run.

Starts `idp serve` as `python -m bench` does (PostgreSQL, `idp init`), then every other candidate on
the same database and secrets (each on its own loopback port, idle while another is measured), sets
each scenario up once through bench's own `IdpSide`, and drives all candidates with wrk
(bench/loadgen.py), taking turns per run so that drift in the machine's load falls on each alike.
CPU is utime + stime of the candidate's process tree (master and workers; PostgreSQL not counted).

    python tools/worker_models.py --database-url postgresql://postgres@127.0.0.1:5432/scratch \\
        -s jwks -s cc_rs256 -s introspection -c 8,32 -d 3 -r 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import IdpSide  # noqa: E402
from bench.loadgen import WrkSpec, run_wrk  # noqa: E402
from bench.server import free_port, running_server, stop_group  # noqa: E402

BIN = Path(sys.executable).parent


def candidates(workers: int, threads: int, baseline: str | None = None) -> dict[str, list[str] | None]:
    """name -> command (with {port}); None is the `idp serve` that running_server started.
    `baseline`: a source tree (say, `git archive main`) whose `idp serve` runs beside this one's."""
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--logger-class", "idp.logs.GunicornLogger",
                "--access-logfile", "-", "--workers", str(workers)]
    serve = [sys.executable, "-m", "idp", "serve", "--host", "127.0.0.1", "--port", "{port}", "--workers", str(workers),
             "--threads", str(threads)]
    return {
        "idp serve (gthread + head buffering)": None,
        # -P: without it the working directory (this tree) comes first on sys.path, and the
        # "baseline" would run this tree's code.
        **({f"idp serve of {baseline}": ["env", f"PYTHONPATH={baseline}", sys.executable, "-P", *serve[1:]]} if baseline else {}),
        "gunicorn gthread": [*gunicorn, "--worker-class", "gthread", "--threads", str(threads), "idp:create_app()"],
        "gunicorn sync": [*gunicorn, "--worker-class", "sync", "idp:create_app()"],
        "gunicorn sync, 2x workers": [*gunicorn[:-1], str(workers * 2), "--worker-class", "sync", "idp:create_app()"],
        "granian wsgi": [str(BIN / "granian"), "--interface", "wsgi", "--workers", str(workers), "--blocking-threads", str(threads),
                         "--host", "127.0.0.1", "--port", "{port}", "--access-log", "--no-ws", "--factory", "idp:create_app"],
    }


@contextmanager
def started(command: list[str], env: dict[str, str]):
    """A candidate server on a free port; its base URL and the pid leading its process group."""
    port = free_port()
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="idp-metrics-")}
    log = open(tempfile.mktemp(prefix="idp-candidate-", suffix=".log"), "w")
    process = subprocess.Popen([part.replace("{port}", str(port)) for part in command], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited: see {log.name}")
            try:
                with urllib.request.urlopen(base_url + "/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        yield base_url, process.pid
    finally:
        stop_group(process)
        log.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("-s", "--scenario", action="append", dest="scenarios")
    parser.add_argument("-c", "--concurrency", default="8,32")
    parser.add_argument("-d", "--duration", type=int, default=3)
    parser.add_argument("-r", "--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--only", action="append", help="candidate names to run (substring)")
    parser.add_argument("--baseline", help="also run `idp serve` from this source tree (e.g. `git archive main | tar -x -C DIR`)")
    args = parser.parse_args(argv)
    scenarios = args.scenarios or ["jwks", "cc_rs256", "introspection"]
    levels = [int(level) for level in args.concurrency.split(",")]
    with running_server(args.database_url, args.workers, args.threads) as served, ExitStack() as stack:
        side = IdpSide(served, args.database_url)
        servers = {}
        for name, command in candidates(args.workers, args.threads, args.baseline).items():
            if args.only and not any(part in name for part in args.only):
                continue
            servers[name] = (served.base_url, served.pid) if command is None else stack.enter_context(started(command, served.env))
        specs = {name: side.spec(name) for name in scenarios}
        print(f"load average at start: {os.getloadavg()}", flush=True)
        rows = []
        for scenario, spec in specs.items():
            assert isinstance(spec, WrkSpec), spec
            for level in levels:
                runs: dict[str, list] = {name: [] for name in servers}
                for name, (base_url, pid) in servers.items():  # warm-up
                    run_wrk(base_url, spec, level, 1, server_pids=lambda pid=pid: [pid])
                for _ in range(args.runs):
                    for name, (base_url, pid) in servers.items():
                        runs[name].append(run_wrk(base_url, spec, level, args.duration, server_pids=lambda pid=pid: [pid]))
                for name, done in runs.items():
                    row = {
                        "scenario": scenario, "c": level, "server": name,
                        "cpu_ms": statistics.median(r.server_cpu_s * 1000 / max(r.requests, 1) for r in done),
                        "rps": statistics.median(r.rps for r in done), "p99_ms": statistics.median(r.p99_ms for r in done),
                        "errors": sum(r.errors for r in done),
                    }
                    rows.append(row)
                    print(f"{scenario:14} c={level:<3} {name:38} cpu_ms/req={row['cpu_ms']:6.2f} rps={row['rps']:7.1f} "
                          f"p99_ms={row['p99_ms']:7.1f} errors={row['errors']}", flush=True)
        print(f"load average at end: {os.getloadavg()}", flush=True)
        side.close()


if __name__ == "__main__":
    main()
