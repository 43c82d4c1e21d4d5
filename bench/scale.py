"""`--scale`: seed the benchmark database to the sizes of issue 12, fast, in the app's own schema.

The schema is the one `idp init` migrated; the rows go in with INSERT ... SELECT generate_series,
one statement per table, then VACUUM ANALYZE so the planner sees the sizes. Every password hash
is one argon2id hash computed here at the app's parameters (nobody signs in as a seeded user).
"""

from __future__ import annotations

import time
from typing import Callable

USERS, CLIENTS, FAMILIES, DENYLISTED = 1_000_000, 100_000, 1_000_000, 1_000_000

STATEMENTS = [
    ("users", """
        INSERT INTO users (subject, email, name, password_hash, is_admin, token_version, created_at, updated_at)
        SELECT md5('scale-user-' || g), 'scale-' || g || '@example.com', 'Scale User ' || g, :password_hash,
               false, 1, now(), now()
        FROM generate_series(1, :users) AS g"""),
    ("clients", """
        INSERT INTO clients (client_id, name, secret_digest, is_public, redirect_uris, post_logout_redirect_uris,
                             grant_types, scope, token_endpoint_auth_method, require_pkce, skip_consent,
                             id_token_signed_response_alg, created_at, updated_at)
        SELECT 'scale-' || md5('scale-client-' || g), 'Scale client ' || g,
               encode(sha256(('scale-secret-' || g)::bytea), 'hex'), false, '["https://rp.example/cb"]', '[]',
               '["authorization_code", "refresh_token", "client_credentials"]', 'openid profile email offline_access',
               'client_secret_basic', true, false, 'RS256', now(), now()
        FROM generate_series(1, :clients) AS g"""),
    # A quarter expired, a tenth revoked: what a purge has not reached yet.
    ("refresh_families", """
        INSERT INTO refresh_families (client_id, user_id, sid, scope, token_version, auth_time, offline, created_at,
                                      expires_at, revoked_at, revoked_reason, acr, amr)
        SELECT :client_base + 1 + g % :clients, :user_base + 1 + g % :users, NULL,
               'openid profile email offline_access', 1, now() - interval '1 day', true, now() - interval '1 day',
               now() + CASE WHEN g % 4 = 0 THEN interval '-1 day' ELSE interval '30 days' END,
               CASE WHEN g % 10 = 0 THEN now() END, CASE WHEN g % 10 = 0 THEN 'logout' END, NULL, '["pwd"]'
        FROM generate_series(1, :families) AS g"""),
    ("refresh_tokens", """
        INSERT INTO refresh_tokens (family_id, token_digest, created_at, expires_at)
        SELECT id, encode(sha256(('scale-refresh-' || id)::bytea), 'hex'), created_at, expires_at
        FROM refresh_families WHERE id > :family_base"""),
    # Half still denylisted, half expired (the purge's work).
    ("revoked_access_tokens", """
        INSERT INTO revoked_access_tokens (jti, expires_at, revoked_at)
        SELECT md5('scale-jti-' || g), now() + CASE WHEN g % 2 = 0 THEN interval '-1 hour' ELSE interval '1 hour' END,
               now() - interval '1 hour'
        FROM generate_series(1, :denylisted) AS g"""),
]


def seed_scale(database_url: str, progress: Callable[[str], None]) -> dict:
    """Insert the scale rows into the migrated database; the seconds each table took and the row counts."""
    from sqlalchemy import create_engine, text

    from idp.config import normalize_database_url
    from idp.security import hash_password

    engine = create_engine(normalize_database_url(database_url))
    seconds: dict[str, float] = {}
    try:
        with engine.begin() as connection:
            base = {table: connection.scalar(text(f"SELECT coalesce(max(id), 0) FROM {table}"))
                    for table in ("users", "clients", "refresh_families")}
            params = {"password_hash": hash_password("scale-password-not-used"), "users": USERS, "clients": CLIENTS,
                      "families": FAMILIES, "denylisted": DENYLISTED, "user_base": base["users"],
                      "client_base": base["clients"], "family_base": base["refresh_families"]}
            for table, statement in STATEMENTS:
                began = time.perf_counter()
                connection.execute(text(statement), params)
                seconds[table] = round(time.perf_counter() - began, 1)
                progress(f"  seeded {table} in {seconds[table]:.1f} s")
        began = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
            counts = {table: connection.scalar(text(f"SELECT count(*) FROM {table}")) for table, _ in STATEMENTS}
        seconds["vacuum_analyze"] = round(time.perf_counter() - began, 1)
    finally:
        engine.dispose()
    total = round(sum(seconds.values()), 1)
    summary = ", ".join(f"{table} {count:,}" for table, count in counts.items()) + f" rows; seeded in {total} s"
    progress(f"  {summary}")
    return {"rows": counts, "seconds": seconds, "summary": summary}
