"""`python -m bench` (`make bench`): run the scenarios, print a table of medians, optionally write JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from bench.compare import NAMES as COMPARE_NAMES
from bench.harness import SCENARIOS, BenchError, Level, Target, run_load
from bench.scenarios import load_all
from bench.server import running_server

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("-s", "--scenario", action="append", dest="scenarios", metavar="NAME",
                        help="scenario to run (repeatable; default: all); see --list")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("-c", "--concurrency", help="comma-separated concurrency levels (default: 1,8,32; 8,32 with --compare or --scale)")
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per run (default: %(default)s)")
    parser.add_argument("-n", "--max-requests", type=int, default=200_000, help="requests per run at most (default: %(default)s)")
    parser.add_argument("-r", "--repeats", type=int, default=3, help="runs per level; medians are reported (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each level (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes of the server (default: %(default)s, as `idp serve`)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn process (default: %(default)s, as `idp serve`)")
    parser.add_argument("--database-url", default=os.environ.get("IDP_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
                        help="PostgreSQL URL of a scratch database; its public schema is recreated "
                             "(default: $IDP_BENCH_DATABASE_URL or %(default)s)")
    parser.add_argument("--base-url", help="benchmark an already running server instead of starting one "
                                           "(its IDP_* environment must be this process's)")
    parser.add_argument("--compare", action="store_true",
                        help="the IdP and node-oidc-provider (1 and 2 processes) side by side, driven by wrk; "
                             "scenarios: " + ", ".join(COMPARE_NAMES))
    parser.add_argument("--scale", action="store_true",
                        help="run the IdP's --compare scenarios on the empty database, seed 1,000,000 users, 100,000 "
                             "clients, 1,000,000 refresh families and 1,000,000 denylisted rows, run them again, "
                             "print each one's ratio")
    parser.add_argument("--json", nargs="?", const="", metavar="PATH",
                        help="also write the results as JSON (default path: bench/results/<time>.json)")
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or ("8,32" if args.compare or args.scale else "1,8,32")
    try:
        args.levels = [int(level) for level in args.concurrency.split(",")]
    except ValueError:
        parser.error(f"--concurrency must be integers separated by commas, not {args.concurrency!r}")
    if any(level < 1 for level in args.levels) or args.repeats < 1 or args.duration <= 0 or args.max_requests < 1:
        parser.error("concurrency, repeats, duration and max-requests must be positive")
    return args


def run_scenario(target: Target, name: str, args: argparse.Namespace, progress) -> list[Level]:
    """Set the scenario up once, then for each level: a warm-up, then `repeats` measured runs."""
    request = SCENARIOS[name].setup(target)
    levels = []
    for concurrency in args.levels:
        if args.warmup > 0:
            run_load(target.base_url, request, concurrency, args.warmup, args.max_requests)
        runs = []
        for repeat in range(args.repeats):
            run = run_load(target.base_url, request, concurrency, args.duration, args.max_requests)
            progress(f"  {name} c={concurrency} run {repeat + 1}/{args.repeats}: {run.rps:.0f} req/s, "
                     f"p50 {run.percentile(50) * 1000:.2f} ms, p99 {run.percentile(99) * 1000:.2f} ms"
                     + (f", {run.errors} errors ({run.first_error})" if run.errors else ""))
            runs.append(run)
        levels.append(Level(name, concurrency, runs))
    return levels


def table(levels: list[Level]) -> str:
    """The medians as a fixed-width table."""
    lines = [f"{'scenario':<28} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"]
    for level in levels:
        summary = level.summary()
        lines.append(f"{level.scenario:<28} {level.concurrency:>4} {summary['median_rps']:>9.1f} "
                     f"{summary['median_p50_ms']:>8.2f} {summary['median_p99_ms']:>8.2f} {summary['errors']:>6}")
    return "\n".join(lines)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare or args.scale:
        from bench.side_by_side import main as side_by_side

        return side_by_side(args)
    load_all()
    if args.list:
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:<28} {scenario.description}")
        return 0
    names = args.scenarios or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        print(f"error: unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    where = args.base_url or f"idp serve ({args.workers} workers x {args.threads} threads) on {args.database_url.split('@')[-1]}"
    header = (f"{where}; {args.repeats} runs x {args.duration:g} s per level (at most {args.max_requests} requests), "
              f"medians; load generator and server share {os.cpu_count()} CPUs")
    progress(header)
    server = nullcontext(Target(args.base_url)) if args.base_url else running_server(args.database_url, args.workers, args.threads)
    levels: list[Level] = []
    try:
        with server as target:
            for name in names:
                levels.extend(run_scenario(target, name, args, progress))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(header)
    print(table(levels))
    if args.json is not None:
        path = Path(args.json) if args.json else RESULTS_DIR / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "server": args.base_url or {"workers": args.workers, "threads": args.threads,
                                        "database": args.database_url.split("@")[-1]},
            "duration_s": args.duration, "max_requests": args.max_requests, "repeats": args.repeats,
            "levels": [level.summary() for level in levels],
        }, indent=2) + "\n")
        print(f"results written to {path}")
    return 1 if any(level.errors for level in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
