"""`python -m bench --compare` / `--scale`: start the servers, run the scenarios, print one table, save JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from bench.compare import NAMES, IdpSide, NodeSide, Runner, compare_table, scale_table
from bench.harness import BenchError
from bench.loadgen import WRK
from bench.node_server import node_version, running_node
from bench.server import all_running, running_server

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def write_json(report: dict, where: str) -> None:
    """The whole report, every run included, to `where` (default bench/results/compare-<time>.json)."""
    path = Path(where) if where else RESULTS_DIR / f"compare-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results written to {path}")


def main(args: argparse.Namespace) -> int:
    """Run --compare and/or --scale as parsed by bench.__main__; 0 when no run saw an error."""
    from bench.__main__ import git_commit

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    names = args.scenarios or NAMES
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        print(f"error: unknown scenario {', '.join(unknown)}; known with --compare: {', '.join(NAMES)}", file=sys.stderr)
        return 2
    if args.base_url:
        print("error: --compare and --scale start their own servers; --base-url does not apply", file=sys.stderr)
        return 2
    duration, warmup = max(1, round(args.duration)), max(0, round(args.warmup))
    runner = Runner(args.levels, duration, args.repeats, warmup, progress)
    header = (f"idp serve ({args.workers} workers x {args.threads} threads) on PostgreSQL "
              f"{args.database_url.split('@')[-1]}; node-oidc-provider ({node_version()}, in-memory adapter); "
              f"wrk -t2 ({WRK}); {args.repeats} runs x {duration} s per level after {warmup} s warm-up, medians; "
              f"{os.cpu_count()} CPUs shared by servers, PostgreSQL and wrk")
    progress(header)
    loads = [load_average()]
    report: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
                    "python": platform.python_version(), "node": node_version(), "cpus": os.cpu_count(),
                    "duration_s": duration, "warmup_s": warmup, "repeats": args.repeats, "levels": args.levels,
                    "server": {"workers": args.workers, "threads": args.threads, "database": args.database_url.split("@")[-1]}}
    sides_names = ["idp"]
    try:
        with ExitStack() as stack:
            servers = [running_server(args.database_url, args.workers, args.threads)]
            if args.compare:
                servers += [running_node(1), running_node(2)]
                sides_names = ["idp", "node1", "node2"]
            target, *nodes = stack.enter_context(all_running(*servers))
            idp = IdpSide(target, args.database_url)
            stack.callback(idp.close)
            sides = [idp] + [NodeSide(node, f"node{node.workers}") for node in nodes]
            results = {}
            for name in names:
                results[name] = runner.scenario(sides, name)
                loads.append(load_average())
            report["results"] = results
            tables = [header, f"load average (1/5/15 min) before and after each scenario: {' | '.join(loads)}",
                      compare_table(results, args.levels, sides_names)]
            if args.scale:
                from bench.scale import seed_scale

                report["scale"] = seed_scale(args.database_url, progress)
                scaled = {name: runner.scenario([idp], name) for name in names}
                report["results_at_scale"] = scaled
                tables += [f"at scale: {report['scale']['summary']}", scale_table(results, scaled, args.levels)]
                from bench.explain import explain_hot_queries, plans_text

                report["plans_at_scale"] = explain_hot_queries(idp)
                tables.append("EXPLAIN ANALYZE of each hot query at scale:\n" + plans_text(report["plans_at_scale"]))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report["load_average"] = loads
    print("\n".join(tables))
    if args.json is not None:
        write_json(report, args.json)
    errors = sum(level["errors"] for per_side in [*report["results"].values(), *report.get("results_at_scale", {}).values()]
                 for levels in per_side.values() for key, level in levels.items() if isinstance(key, int))
    return 1 if errors else 0
