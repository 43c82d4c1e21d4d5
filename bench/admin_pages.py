"""Admin UI at scale: seed PostgreSQL, then time every admin list page over real HTTP.

    python -m bench.admin_pages --database-url postgresql://postgres@127.0.0.1:5432/test_admin --reset

`--reset` drops and recreates the database's `public` schema, migrates it and seeds (by default)
100,000 users, 1,000,000 sessions and 1,000,000 audit events with INSERT ... SELECT
generate_series, plus clients, refresh families, authorization codes and consents. Without
`--reset` the existing data is reused. Then a real `idp serve` is started on that database, an
admin signs in through the login form, and each page is fetched `--runs` times after a warm-up;
the table shows the median and 95th percentile of the wall time of each request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password"
BUDGET_MS = 200.0

# The seeded set: one user in 5,000 is an admin and one in 100 disabled; 200,000 refresh families bind every fifth session to one of 19 busy clients
# (about 10,500 each); the 20th client is quiet (100 sessions). 1% of sessions also hold a code.
SEED_SQL = [
    ("users", """
        INSERT INTO users (subject, email, name, password_hash, is_admin, token_version, created_at, updated_at, disabled_at)
        SELECT md5('sub' || i), 'user' || lpad(i::text, 6, '0') || '@example.com', 'User ' || i, :hash, i % 5000 = 0, 1,
               :now - i * interval '1 minute', :now - i * interval '1 minute',
               CASE WHEN i % 100 = 0 THEN :now - i * interval '1 second' END
        FROM generate_series(1, :users) AS i"""),
    ("sessions", """
        INSERT INTO sessions (id_digest, sid, kind, user_id, token_version, data, created_at, last_seen_at, auth_time, expires_at, ip, user_agent)
        SELECT md5('id' || i) || md5('di' || i), left(md5('sid' || i) || md5('dis' || i), 43), 'sso',
               (SELECT min(id) FROM users) + (i % :users), 1, '{}',
               :now - i * interval '100 milliseconds', :now - (i % 3600) * interval '1 second',
               :now - i * interval '100 milliseconds', :now + interval '6 days',
               '10.' || (i % 250) || '.' || (i % 200) || '.' || (i % 100), 'Mozilla/5.0 (X11; Linux x86_64) bench/' || (i % 50)
        FROM generate_series(1, :sessions) AS i"""),
    ("refresh_families", """
        INSERT INTO refresh_families (client_id, user_id, sid, scope, token_version, auth_time, offline, created_at, expires_at)
        SELECT c.id, s.user_id, s.sid, 'openid email', 1, s.created_at, false, s.created_at, :now + interval '30 days'
        FROM sessions s
        JOIN LATERAL (SELECT id FROM clients ORDER BY id
                      OFFSET (CASE WHEN s.id % 10000 = 0 THEN 19 ELSE (s.id / 5) % 19 END) LIMIT 1) c ON true
        WHERE s.id % 5 = 0"""),
    ("authorization_codes", """
        INSERT INTO authorization_codes (code_digest, client_id, user_id, sid, redirect_uri, scope, token_version, amr, created_at, expires_at)
        SELECT md5('code' || s.id) || md5('edoc' || s.id), (SELECT min(id) FROM clients), s.user_id, s.sid,
               'https://rp.example.com/cb', 'openid', 1, '[]', :now, :now + interval '10 minutes'
        FROM sessions s WHERE s.id % 100 = 1"""),
    ("consents", """
        INSERT INTO consents (user_id, client_id, scope, granted_at)
        SELECT DISTINCT ON (user_id, client_id) user_id, client_id, scope, created_at FROM refresh_families"""),
    ("audit_events", """
        INSERT INTO audit_events (occurred_at, action, actor, target, ip, details)
        SELECT :now - i * interval '1 second',
               (ARRAY['session.started', 'session.ended', 'user.updated', 'refresh_family.revoked', 'client.updated',
                      'user.token_version_bumped', 'user.password_set', 'session.started', 'session.ended', 'user.created'])[1 + i % 10],
               CASE WHEN i % 3 = 0 THEN 'system' ELSE 'user:' || (i % :users) END,
               'user:' || ((i * 7) % :users), '10.0.' || (i % 250) || '.' || (i % 100), '{"bench": true}'
        FROM generate_series(1, :audit) AS i"""),
    ("rare audit events", """
        INSERT INTO audit_events (occurred_at, action, actor, target, ip, details)
        SELECT :now - i * interval '1 hour', 'refresh_token.reuse_detected', 'system', 'refresh_family:' || i, NULL, '{}'
        FROM generate_series(1, 50) AS i"""),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(database_url: str, secrets: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IDP_")}
    env.update(IDP_DATABASE_URL=database_url, IDP_SECRET_KEY=secrets["secret_key"], IDP_KEY_ENCRYPTION_KEYS=secrets["kek"],
               IDP_LOG_LEVEL="WARNING", IDP_INSTANCE_DIR=str(RESULTS_DIR / "instance"), IDP_KEYS_DIR=str(RESULTS_DIR / "keys"),
               IDP_CELERY_BROKER_URL=f"sqla+sqlite:///{RESULTS_DIR / 'broker.sqlite3'}")
    return env


def load_secrets() -> dict[str, str]:
    """Secrets for the bench database, kept beside the results so a later run can reuse the seeded data."""
    from cryptography.fernet import Fernet

    path = RESULTS_DIR / "admin-bench-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    secrets = {"secret_key": os.urandom(32).hex(), "kek": Fernet.generate_key().decode()}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(secrets))
    return secrets


def seed(database_url: str, secrets: dict[str, str], *, users: int, sessions: int, audit: int) -> dict[str, float]:
    """Recreate the schema and fill it; returns seconds per step."""
    from sqlalchemy import create_engine, text

    from idp import create_app
    from idp.clients.service import create_client
    from idp.db import db
    from idp.keyring.service import ensure_keys
    from idp.migrate import upgrade
    from idp.security import hash_password
    from idp.users.service import create_user

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": secrets["secret_key"], "KEY_ENCRYPTION_KEYS": [secrets["kek"]],
                      "INSTANCE_DIR": str(RESULTS_DIR / "instance"), "LOG_LEVEL": "WARNING"})
    upgrade(app)
    timings = {}
    with app.app_context():
        ensure_keys(actor="bench")
        create_user(ADMIN_EMAIL, ADMIN_PASSWORD, is_admin=True, actor="bench")
        for n in range(20):
            create_client(f"Bench client {n:02d}", redirect_uris=[f"https://rp{n}.example.com/cb"], actor="bench")
        params = {"hash": hash_password("seeded-user-password"), "users": users, "sessions": sessions, "audit": audit,
                  "now": datetime.now(timezone.utc).replace(tzinfo=None)}
        for name, sql in SEED_SQL:
            started = time.perf_counter()
            db.session.execute(text(sql), params)
            db.session.commit()
            timings[name] = time.perf_counter() - started
            print(f"  seeded {name} in {timings[name]:.1f}s", flush=True)
        started = time.perf_counter()
        db.session.execute(text("ANALYZE"))
        db.session.commit()
        timings["analyze"] = time.perf_counter() - started
        db.session.remove()
        db.engine.dispose()
    return timings


class Server:
    """A real `idp serve` on the bench database."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**env, "IDP_ISSUER": self.base}
        self.log = open(RESULTS_DIR / "admin-bench-serve.log", "w")
        self.process = subprocess.Popen([sys.executable, "-m", "idp", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                         "--workers", "1", "--threads", "2"], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"idp serve exited: see {self.log.name}")
            try:
                if requests.get(self.base + "/healthz", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise SystemExit("idp serve did not start within 60 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        self.log.close()


def sign_in(base: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(base + "/admin/login")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    response = browser.post(base + "/admin/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token},
                            allow_redirects=False)
    if response.status_code != 303:
        raise SystemExit(f"bench admin could not sign in: {response.status_code}")
    return browser


def pages(database_url: str) -> list[tuple[str, str]]:
    """(label, path) of every page to time, with ids and cursors taken from the seeded data."""
    from sqlalchemy import create_engine, text

    from admin_ui.keyset import encode_cursor

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        one = lambda sql: connection.execute(text(sql)).one()  # noqa: E731
        mid_user_id, mid_email = one("SELECT id, email FROM users WHERE email LIKE 'user05%' ORDER BY email LIMIT 1")
        busy_user = one("SELECT u.email FROM users u JOIN sessions s ON s.user_id = u.id GROUP BY u.email ORDER BY count(*) DESC LIMIT 1")[0]
        big_client, small_client = (row[0] for row in connection.execute(text(
            "SELECT c.client_id FROM clients c LEFT JOIN refresh_families f ON f.client_id = c.id GROUP BY c.client_id ORDER BY count(f.id) DESC")).all()[0::19])
        client_id = one("SELECT client_id FROM clients ORDER BY id LIMIT 1")[0]
        mid_session = one("SELECT created_at, id FROM sessions ORDER BY created_at DESC, id DESC OFFSET 500000 LIMIT 1")
        mid_event = one("SELECT occurred_at, id FROM audit_events ORDER BY occurred_at DESC, id DESC OFFSET 500000 LIMIT 1")
        first_event_time = one("SELECT max(occurred_at) FROM audit_events")[0]
    engine.dispose()
    utc = lambda value: value.replace(tzinfo=timezone.utc)  # noqa: E731
    session_cursor = encode_cursor((utc(mid_session[0]), mid_session[1]))
    event_cursor = encode_cursor((utc(mid_event[0]), mid_event[1]))
    since = (first_event_time.replace(microsecond=0) - (first_event_time - first_event_time.replace(hour=0, minute=0, second=0))).strftime("%Y-%m-%dT%H:%M")
    return [
        ("dashboard", "/admin/"),
        ("users: first page", "/admin/users"),
        ("users: page in the middle", f"/admin/users?after={encode_cursor((mid_email,))}"),
        ("users: search, broad prefix", "/admin/users?q=user0"),
        ("users: search, narrow prefix", "/admin/users?q=user09999"),
        ("users: search, no match", "/admin/users?q=zzz"),
        ("users: admins only", "/admin/users?status=admins"),
        ("users: disabled only", "/admin/users?status=disabled"),
        ("user detail", f"/admin/users/{mid_user_id}"),
        ("clients", "/admin/clients"),
        ("client detail", f"/admin/clients/{client_id}"),
        ("sessions: first page", "/admin/sessions"),
        ("sessions: page 10,000", f"/admin/sessions?after={session_cursor}"),
        ("sessions: by user", f"/admin/sessions?user={busy_user}"),
        ("sessions: by busy client", f"/admin/sessions?client={big_client}"),
        ("sessions: by quiet client", f"/admin/sessions?client={small_client}"),
        ("sessions: admin kind", "/admin/sessions?kind=admin"),
        ("audit: first page", "/admin/audit"),
        ("audit: page 10,000", f"/admin/audit?after={event_cursor}"),
        ("audit: by actor", "/admin/audit?actor=user:4242"),
        ("audit: by action (rare)", "/admin/audit?action=refresh_token.reuse_detected"),
        ("audit: by target", "/admin/audit?target=user:4242"),
        ("audit: actor + action", "/admin/audit?actor=system&action=user.created"),
        ("audit: time range", f"/admin/audit?since={since}"),
        ("keys", "/admin/keys"),
        ("jobs", "/admin/jobs"),
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.admin_pages", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("IDP_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test_admin"))
    parser.add_argument("--reset", action="store_true", help="drop the schema, migrate and seed (destroys the database's data)")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="timed requests per page (after one warm-up)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgresql"):
        parser.error("the scale benchmark runs on PostgreSQL")

    secrets = load_secrets()
    if args.reset:
        print(f"seeding {args.users:,} users, {args.sessions:,} sessions, {args.audit:,} audit events ...", flush=True)
        seed(args.database_url, secrets, users=args.users, sessions=args.sessions, audit=args.audit)
    targets = pages(args.database_url)
    server = Server(bench_env(args.database_url, secrets))
    results = []
    try:
        browser = sign_in(server.base)
        for label, path in targets:
            timings = []
            for run in range(args.runs + 1):
                started = time.perf_counter()
                response = browser.get(server.base + path, allow_redirects=False)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{label}: {path} answered {response.status_code}")
                if run:  # the first request warms caches
                    timings.append(elapsed)
            results.append({"page": label, "path": path, "median_ms": statistics.median(timings), "p95_ms": percentile(timings, 0.95),
                            "max_ms": max(timings), "runs": len(timings)})
    finally:
        server.stop()

    width = max(len(row["page"]) for row in results)
    print(f"\n{'page':<{width}}  median ms  p95 ms  max ms")
    for row in results:
        flag = "" if row["p95_ms"] < BUDGET_MS else f"  over {BUDGET_MS:.0f} ms"
        print(f"{row['page']:<{width}}  {row['median_ms']:9.1f}  {row['p95_ms']:6.1f}  {row['max_ms']:6.1f}{flag}")
    if args.json:
        args.json.write_text(json.dumps({"database_url": args.database_url.split("@")[-1], "results": results}, indent=2))
    return 0 if all(row["p95_ms"] < BUDGET_MS for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
