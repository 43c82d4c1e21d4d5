"""`idp jobs` and `idp purge`: the last run of each background job, and the purge run by hand."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

import click

from idp import create_app
from idp.db import unit_of_work
from idp.jobs.service import JOBS, describe_run, last_runs, run_job


@contextmanager
def _app_context() -> Iterator[None]:
    """The command's app context and its one transaction (the command's edge, idp/db.py)."""
    with create_app().app_context(), unit_of_work():
        yield


@click.command()
@click.option("--json", "as_json", is_flag=True)
def jobs(as_json: bool) -> None:
    """The last run of each background job: when, how long, outcome and counts."""

    with _app_context():
        runs = {run.job: describe_run(run) for run in last_runs()}
    for name in JOBS:
        runs.setdefault(name, {"job": name, "outcome": "never run"})
    rows = [runs[name] for name in sorted(runs)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        line = f"{row['job']:<12} {row['outcome']:<10}"
        if row.get("started_at"):
            duration = f"{row['duration_seconds']:.1f}s" if row["duration_seconds"] is not None else "-"
            line += f" {row['started_at']}  {duration:>8}  {json.dumps(row['counts'], sort_keys=True)}"
        if row.get("error"):
            line += f"  {row['error']}"
        click.echo(line)


@click.command()
@click.option("--json", "as_json", is_flag=True)
def purge(as_json: bool) -> None:
    """Delete expired codes, tokens, sessions, denylist entries, mailed links, old audit events and job runs now."""

    with _app_context():
        run = run_job("purge")
        if run.outcome == "skipped":
            raise click.ClickException("skipped: another runner is purging right now")
        counts = run.counts
    if as_json:
        click.echo(json.dumps(counts, sort_keys=True))
        return
    for name, count in counts.items():
        click.echo(f"{name:<24} {count:>10}")
