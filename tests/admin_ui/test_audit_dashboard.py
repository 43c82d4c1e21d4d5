"""Audit log filters and pages; the dashboard's bounded counts, keyring status, job runs and security events."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from idp.audit.service import record
from idp.db import db
from idp.models import AuditEvent, JobRun, KeyState, SigningKey
from tests.admin_ui.conftest import make_grant, make_session

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def seed_events(app, rows: list[tuple]) -> None:
    with app.app_context():
        for when, action, actor, target in rows:
            record(action, actor=actor, target=target, note="seeded").occurred_at = when
        db.session.commit()


def actions_on(response) -> list[str]:
    return re.findall(r"<code>([a-z0-9_.]+)</code></a></td>", response.get_data(as_text=True))


def test_audit_log_filters_exactly_and_by_time_range(app, signed_in):
    seed_events(app, [
        (T0, "user.disabled", "user:1", "user:2"),
        (T0 + timedelta(hours=1), "client.created", "cli", "client:abc"),
        (T0 + timedelta(hours=2), "user.disabled", "cli", "user:3"),
        (T0 + timedelta(hours=3), "user.enabled", "user:1", "user:2"),
    ])
    get = lambda query: actions_on(signed_in.get("/admin/audit?" + query))  # noqa: E731
    assert get("action=user.disabled") == ["user.disabled", "user.disabled"]
    assert get("actor=cli") == ["user.disabled", "client.created"]
    assert get("target=user:2") == ["user.enabled", "user.disabled"]
    assert get("actor=user:1&action=user.enabled") == ["user.enabled"]
    assert get("since=2026-11-01T12:30&until=2026-11-01T14:30") == ["user.disabled", "client.created"]
    assert get("action=user.dis") == []  # exact, not a prefix
    page = signed_in.get("/admin/audit?target=user:2")
    assert "note</span> seeded" in page.get_data(as_text=True)


def test_audit_log_bad_filters_are_400_with_the_form(signed_in):
    for query in ["since=yesterday", "since=2026-11-01T12:00&until=2026-11-01T11:00", "actor=" + "a" * 200, "after=bogus"]:
        response = signed_in.get("/admin/audit?" + query)
        assert response.status_code == 400, query
    assert "must be after the start of the range" in signed_in.get(
        "/admin/audit?since=2026-11-01T12:00&until=2026-11-01T11:00").get_data(as_text=True)


def test_audit_log_pages_by_time_then_id(app, signed_in):
    app.config["ADMIN_PAGE_SIZE"] = 4
    # Ten events, several sharing a timestamp: the (occurred_at, id) key still pages without gaps or repeats.
    seed_events(app, [(T0 + timedelta(minutes=n // 3), f"test.e{n}", "pager", None) for n in range(10)])
    seen, url = [], "/admin/audit?actor=pager"
    while url:
        response = signed_in.get(url)
        seen.extend(actions_on(response))
        found = re.search(r'rel="next" href="([^"]+)"', response.get_data(as_text=True))
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == [f"test.e{n}" for n in reversed(range(10))]


def test_dashboard_counts_keyring_jobs_and_security_events(app, signed_in, make_user, make_client):
    user = make_user()
    registered, _ = make_client()
    _, sid = make_session(app, user.id)
    make_grant(app, user.id, registered.id, sid=sid)
    seed_events(app, [(T0, "refresh_token.reuse_detected", "system", "refresh_family:1"), (T0, "user.updated", "cli", "user:1")])
    with app.app_context():
        db.session.add(JobRun(job="purge", started_at=T0, finished_at=T0, outcome="succeeded", counts={"sessions": 3}))
        db.session.commit()
    html = signed_in.get("/admin/").get_data(as_text=True)
    stats = re.findall(r'<span class="stat-value">([^<]*)</span>\s*<span class="stat-label">(?:<a [^>]*>)?([^<]+)<', html)
    assert {label: value.strip() for value, label in stats} == {
        "Users": "2", "Clients": "1", "Active sessions": "2", "Live refresh-token families": "1"}
    assert "refresh_token.reuse_detected" in html and "user.updated" not in html.split("Recent security events")[1]
    assert "purge" in html and "badge-succeeded" in html
    assert "no next key published" not in html


def test_dashboard_counts_are_bounded(app, signed_in, make_user, monkeypatch):
    from admin_ui import queries

    for _ in range(3):
        make_user()
    monkeypatch.setattr(queries, "COUNT_LIMIT", 2)
    with app.app_context():
        count = queries.dashboard_counts()["users"]
    assert not count.exact and count.value >= 2
    html = signed_in.get("/admin/").get_data(as_text=True)
    assert "estimate from database statistics" in html


def test_planner_estimate_on_postgresql(app, database_url):
    from admin_ui.queries import planner_estimate
    from idp.models import User

    with app.app_context():
        estimate = planner_estimate(db.select(User.id).where(User.created_at > T0))
    if database_url.startswith("sqlite"):
        assert estimate is None
    else:
        assert isinstance(estimate, int) and estimate >= 0


def test_dashboard_warns_about_a_missing_next_key(app, signed_in):
    with app.app_context():
        db.session.execute(db.delete(SigningKey).where(SigningKey.state == KeyState.NEXT, SigningKey.alg == "ES256"))
        db.session.commit()
    html = signed_in.get("/admin/").get_data(as_text=True)
    assert "ES256: no next key published" in html
