"""Benchmark: a real Celery worker purges 1,000,000 expired refresh tokens on PostgreSQL.

    python -m bench.purge --database-url postgresql://postgres@127.0.0.1:5432/bench_purge \
        [--broker-url redis://127.0.0.1:6379/15] [--rows 1000000] [--runs 5] [--batch-size 5000]

Each run seeds the tokens with INSERT ... SELECT generate_series (families of four tokens, every
token past its idle expiry), starts a fresh `idp worker --concurrency 1`, sends it the `idp.purge`
task and samples the pool process that runs it. It reports, per run and as medians:
rows per second (refresh tokens deleted / the job run's recorded duration) and the worker pool
process's peak resident memory (VmHWM), next to its resident memory just before the task.
Results also go to bench/results/purge-<time>.json.

WARNING: the database's public schema is dropped and recreated. Use a database of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, text

RESULTS = Path(__file__).parent / "results"

SEED_FAMILIES = """
INSERT INTO refresh_families (client_id, user_id, scope, token_version, offline, created_at, expires_at)
SELECT :client_id, :user_id, 'openid offline_access', 1, true, now() - interval '60 days', now() + interval '30 days'
FROM generate_series(1, :families)
"""

SEED_TOKENS = """
INSERT INTO refresh_tokens (family_id, token_digest, created_at, expires_at, rotated_at)
SELECT f.id, md5(f.id::text || '-' || n::text) || md5(n::text || '-' || f.id::text),
       now() - interval '30 days', now() - interval '1 day' - (n * interval '1 minute') - (f.id % 1000) * interval '1 second',
       CASE WHEN n < :per_family THEN now() - interval '20 days' END
FROM refresh_families f, generate_series(1, :per_family) AS n
"""


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print per-run figures and medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.purge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="PostgreSQL database of its own (its schema is recreated)")
    parser.add_argument("--broker-url", default=None, help="Celery broker (default: the embedded one in a temporary folder)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="IDP_PURGE_BATCH_SIZE (default: the setting's default)")
    parser.add_argument("--per-family", type=int, default=4, help="refresh tokens per family")
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgresql://", "postgres://")):
        parser.error("the benchmark seeds with generate_series: give a postgresql:// URL")

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-purge-") as workdir:
        env = worker_env(args, Path(workdir))
        prepare_schema(env)
        for number in range(1, args.runs + 1):
            result = one_run(args, env, Path(workdir))
            runs.append(result)
            print(f"run {number}: {result['refresh_tokens']:,} tokens + {result['refresh_families']:,} families in "
                  f"{result['seconds']:.1f} s = {result['rows_per_second']:,.0f} tokens/s; worker RSS "
                  f"{result['rss_before_mib']:.0f} MiB before, peak {result['peak_rss_mib']:.0f} MiB", flush=True)
    summary = {
        "rows": args.rows, "runs": args.runs, "batch_size": args.batch_size or "default",
        "median_rows_per_second": statistics.median(r["rows_per_second"] for r in runs),
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
        "median_rss_before_mib": statistics.median(r["rss_before_mib"] for r in runs),
        "per_run": runs,
    }
    print(f"median: {summary['median_rows_per_second']:,.0f} tokens/s ({summary['median_seconds']:.1f} s for {args.rows:,}); "
          f"worker peak RSS {summary['median_peak_rss_mib']:.0f} MiB (before the task {summary['median_rss_before_mib']:.0f} MiB)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"purge-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"results: {out}")


def worker_env(args, workdir: Path) -> dict[str, str]:
    """Environment for the `idp` processes: the benchmark database, throwaway secrets, quiet logs."""
    from cryptography.fernet import Fernet

    env = {key: value for key, value in os.environ.items() if not key.startswith("IDP_")}
    env.update(
        IDP_DATABASE_URL=args.database_url,
        IDP_INSTANCE_DIR=str(workdir / "instance"),
        IDP_KEYS_DIR=str(workdir / "keys"),
        IDP_SECRET_KEY=os.urandom(32).hex(),
        IDP_KEY_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        IDP_CELERY_BROKER_URL=args.broker_url or f"sqla+sqlite:///{workdir}/broker.sqlite3",
        IDP_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if args.batch_size:
        env["IDP_PURGE_BATCH_SIZE"] = str(args.batch_size)
    return env


def engine(env: dict[str, str]):
    return create_engine(env["IDP_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1).replace("postgres://", "postgresql+psycopg://", 1))


def prepare_schema(env: dict[str, str]) -> None:
    """Drop and recreate the public schema, then migrate it (as `idp db upgrade` does)."""
    db = engine(env)
    with db.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    db.dispose()
    subprocess.run([sys.executable, "-m", "idp", "db", "upgrade"], env=env, check=True, capture_output=True)


def bench_app(env: dict[str, str]):
    """An IdP app on the benchmark database (for seeding through the services and sending the task)."""
    from idp import create_app

    names = ("DATABASE_URL", "INSTANCE_DIR", "KEYS_DIR", "SECRET_KEY", "CELERY_BROKER_URL")
    return create_app({**{name: env[f"IDP_{name}"] for name in names}, "KEY_ENCRYPTION_KEYS": [env["IDP_KEY_ENCRYPTION_KEYS"]]})


def seed(env: dict[str, str], rows: int, per_family: int) -> None:
    """`rows` expired refresh tokens in families of `per_family`, then fresh planner statistics."""
    from idp.clients.service import create_client
    from idp.db import db
    from idp.users.service import create_user

    app = bench_app(env)
    with app.app_context():
        for table in ("refresh_tokens", "refresh_families", "job_runs", "audit_events", "clients", "users"):
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
        user = create_user("bench@example.com", "a bench password")
        client, _ = create_client("Bench", redirect_uris=["https://rp.example.com/cb"])
        db.session.execute(text(SEED_FAMILIES), {"families": rows // per_family, "client_id": client.id, "user_id": user.id})
        db.session.execute(text(SEED_TOKENS), {"per_family": per_family})
        count = db.session.execute(text("SELECT count(*) FROM refresh_tokens")).scalar()
        assert count == rows // per_family * per_family, count
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    vacuum = engine(env)
    with vacuum.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE refresh_tokens"))
        connection.execute(text("VACUUM ANALYZE refresh_families"))
    vacuum.dispose()


def one_run(args, env: dict[str, str], workdir: Path) -> dict:
    """Seed, start a worker, purge through it, and measure."""
    seed(env, args.rows, args.per_family)
    log = open(workdir / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "idp", "worker", "--loglevel", "INFO", "--concurrency", "1"],
                              env={**env, "IDP_LOG_LEVEL": "INFO"}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait(lambda: "ready" in (workdir / "worker.log").read_text(), 60, "the worker to start")
        pool = wait(lambda: children(worker.pid), 30, "the worker's pool process")[0]
        rss_before = memory(pool)["VmRSS"]
        send_purge(env)
        db = engine(env)
        query = text("SELECT outcome, counts, extract(epoch FROM finished_at - started_at) FROM job_runs "
                     "WHERE job = 'purge' AND outcome <> 'running'")
        with db.connect() as connection:
            row = wait(lambda: connection.execute(query).first() or (connection.rollback() and None), 3600, "the purge to finish", interval=0.5)
        peak = memory(pool)["VmHWM"]
        db.dispose()
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
        log.close()
    outcome, counts, seconds = row
    if outcome != "succeeded":
        raise SystemExit(f"purge {outcome}: see {workdir / 'worker.log'}")
    seconds = float(seconds)
    return {
        "refresh_tokens": counts["refresh_tokens"], "refresh_families": counts["refresh_families"], "seconds": seconds,
        "rows_per_second": counts["refresh_tokens"] / seconds,
        "rss_before_mib": rss_before / 1024, "peak_rss_mib": peak / 1024,
    }


def send_purge(env: dict[str, str]) -> None:
    """Queue `idp.purge` the way beat does."""
    bench_app(env).extensions["celery"].send_task("idp.purge")


def children(pid: int) -> list[int]:
    """Child process ids (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            fields[name] = int(value.split()[0])
    return fields


def wait(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll until `predicate()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


if __name__ == "__main__":
    main()
