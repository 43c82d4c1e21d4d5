"""EXPLAIN ANALYZE of the hot queries: each scenario's request replayed once through the app itself
(Flask's test client on the benchmark database), every SQL statement it sent captured, then each
SELECT, UPDATE or DELETE explained with its own parameters inside a transaction that is rolled
back (so an UPDATE's EXPLAIN ANALYZE changes nothing). INSERTs are left out: they use no plan."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from bench.loadgen import WrkSpec

EXPLAINED = ("cc_rs256", "introspection", "userinfo", "refresh_one_user", "code_exchange", "password_signin")


def _captured(app, spec: WrkSpec, base_url: str) -> list[tuple[str, object]]:
    from sqlalchemy import event

    from idp.db import db

    token = spec.tokens(1)[0] if spec.tokens else ""
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if not executemany:
            statements.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    client = app.test_client()
    method, body, headers = spec.method, spec.body.replace("{token}", token), \
        {name: value.replace("{token}", token) for name, value in spec.headers.items()}
    if spec.script == "signin":  # the form's GET first (its cookie stays in the client); the POST is measured
        form = client.get(spec.path, base_url=base_url).get_data(as_text=True)
        email, password = spec.tokens(0)[0].split(" ", 1)
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
        method, body = "POST", urlencode({"csrf_token": csrf, "username": email, "password": password})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    event.listen(engine, "before_cursor_execute", capture)
    try:
        answer = client.open(spec.path, method=method, base_url=base_url, data=body or None, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    if answer.status_code != spec.expect:
        raise RuntimeError(f"{spec.method} {spec.path}: {answer.status_code} {answer.data[:200]!r}")
    return statements


def explain_hot_queries(idp_side) -> dict[str, list[dict]]:
    """{scenario: [{sql, plan}]} for the request of each scenario in EXPLAINED."""
    from idp.db import db

    app = idp_side.seed.app
    plans: dict[str, list[dict]] = {}
    for name in EXPLAINED:
        spec = idp_side.spec(name)
        seen, plans[name] = set(), []
        for statement, parameters in _captured(app, spec, idp_side.base_url):
            if statement in seen or not re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)", statement, re.I):
                continue
            seen.add(statement)
            with app.app_context():
                connection = db.engine.raw_connection()
                try:
                    cursor = connection.cursor()
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) " + statement, parameters)
                    plan = "\n".join(row[0] for row in cursor.fetchall())
                except Exception as error:  # noqa: BLE001 - a statement replayed out of its request may conflict
                    plan = f"(not explained: {type(error).__name__}: {str(error).splitlines()[0]})"
                finally:
                    connection.rollback()
                    connection.close()
            plans[name].append({"sql": " ".join(statement.split()), "plan": plan})
    return plans


def plans_text(plans: dict[str, list[dict]]) -> str:
    """The plans, one block per statement, for the console and docs/performance.md."""
    blocks = []
    for name, entries in plans.items():
        for entry in entries:
            blocks.append(f"-- {name}\n{entry['sql']}\n{entry['plan']}")
    return "\n\n".join(blocks)
