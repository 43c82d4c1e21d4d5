"""bench/wrk/signin.lua against a real `idp serve`: what it counts as sign-ins are sign-ins."""

import os

from sqlalchemy import func, select

from bench.loadgen import WRK, WrkSpec, run_wrk
from idp.audit.models import AuditEvent
from idp.auth.service import SIGNED_IN
from idp.db import db
from tests.conftest import SQLITE_ONLY, require_service

# The script is the same whatever the database; the benchmark's own test runs it on PostgreSQL.
pytestmark = SQLITE_ONLY
PASSWORD = "correct horse battery"


def signed_in_events(app) -> int:
    with app.app_context():
        db.session.remove()
        return db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == SIGNED_IN))


def test_the_sign_in_script_counts_each_sign_in_the_server_recorded_and_nothing_else(app, shared_server, make_user):
    """A right password: every counted sign-in is one the server audited; a wrong one: none counted, each a failure."""
    require_service("wrk", os.access(WRK, os.X_OK), hint="apt-get install wrk")
    base = shared_server()
    emails = [make_user(password=PASSWORD).email for _ in range(2)]

    right = run_wrk(base, WrkSpec("signin", "/login"), concurrency=2, duration=1, tokens=[f"{email} {PASSWORD}" for email in emails])
    assert right.errors == 0 and right.completed > 0, right.first_error
    wrong = run_wrk(base, WrkSpec("signin", "/login"), concurrency=1, duration=1, tokens=[f"{emails[0]} not-the-password"])
    assert wrong.completed == 0 and wrong.errors > 0, wrong
    # Counted after both runs, so that a sign-in still in flight when the first run stopped (at most
    # one per connection, finished but never read back) is in.
    assert right.completed <= signed_in_events(app) <= right.completed + 2
