"""Userinfo and introspection only read: on PostgreSQL they send their SELECTs and nothing else (no
pre-ping, no BEGIN, no ROLLBACK), and a view marked `reads_only` that tries to write is stopped.

What goes over the wire is read from libpq's own protocol trace of the app's connections.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import event, func, select

from idp.db import db, reads_only
from idp.models import AuditEvent
from tests.conftest import POSTGRESQL_ONLY
from tests.oidc.resource_support import access_token, basic, bearer, rp, user  # noqa: F401 (fixtures)

# A frontend message in libpq's trace (tab-separated): timestamp, "F", length, the message, its fields;
# a Query's field is its SQL, a Parse's the statement's name and then its SQL.
SENT = re.compile(r'^[^\t]*\tF\t\d+\t(Query|Parse)\t ("" )?"(.*)$')


@contextmanager
def wire(app, tmp_path: Path) -> Iterator[list[str]]:
    """The statements the app sends inside the block, as libpq traced them (simple and extended protocol)."""
    trace_path = tmp_path / "libpq.trace"
    sent: list[str] = []
    with open(trace_path, "w") as trace, app.app_context():

        def traced(dbapi_connection, connection_record) -> None:
            dbapi_connection.pgconn.trace(trace.fileno())

        db.engine.dispose()  # new connections are traced from their first message
        event.listen(db.engine, "connect", traced)
        try:
            # Connected, and marked, before the block (autocommit: no BEGIN or ROLLBACK of its own).
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("SELECT 'start of the block'")
            yield sent
        finally:
            event.remove(db.engine, "connect", traced)
            db.engine.dispose()  # no traced connection outlives the trace file
        statements = [found[3] for found in map(SENT.match, trace_path.read_text().splitlines()) if found]
        sent += statements[[i for i, statement in enumerate(statements) if "start of the block" in statement][0] + 1:]


@POSTGRESQL_ONLY
def test_userinfo_and_introspection_send_their_selects_and_nothing_else(app, client, user, rp, tmp_path):
    token = access_token(app, user, rp[0], scope="openid profile")
    client.get("/userinfo", headers=bearer(token))  # the client is read into its cache
    with wire(app, tmp_path) as sent:
        info = client.get("/userinfo", headers=bearer(token))
        introspected = client.post("/introspect", data={"token": token}, headers=basic(rp[0].client_id, rp[1]))
    assert info.status_code == 200 and info.get_json()["name"] == "Ada Lovelace"
    assert introspected.status_code == 200 and introspected.get_json()["active"] is True
    assert len(sent) >= 2, sent
    # No pre-ping (`;`), no BEGIN and no ROLLBACK: every message sent is a SELECT.
    assert [statement for statement in sent if not statement.startswith("SELECT ")] == [], sent


def test_a_view_marked_reads_only_cannot_write(app, caplog):
    @reads_only
    def writes():
        db.session.add(AuditEvent(action="test.write", actor="test", target="test"))
        db.session.flush()
        return "written"

    app.add_url_rule("/test-reads-only-writes", view_func=writes)
    answer = app.test_client().get("/test-reads-only-writes")
    assert answer.status_code == 500 and "WriteInReadOnlyView" in caplog.text  # a programming error, logged
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test.write")) == 0
