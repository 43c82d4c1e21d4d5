"""Keys page (timeline, rotate now, revoke: recent password, confirmation) and jobs page (last runs, run now)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from idp.db import db
from idp.models import JobRun, KeyState, SigningKey
from tests.admin_ui.conftest import PASSWORD, AdminBrowser, audit_actions
from tests.admin_ui.test_auth import age_authentication

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def keys_by_state(app, alg: str) -> dict[str, list[str]]:
    with app.app_context():
        found: dict[str, list[str]] = {}
        for key in db.session.scalars(db.select(SigningKey).where(SigningKey.alg == alg).order_by(SigningKey.id)):
            found.setdefault(key.state.value, []).append(key.kid)
        return found


def test_keys_page_shows_each_algorithms_timeline(app, signed_in):
    with app.app_context():
        keys = list(db.session.scalars(db.select(SigningKey)))
    html = signed_in.get("/admin/keys").get_data(as_text=True)
    for key in keys:
        assert key.kid in html
    assert html.index(">ES256</h2>") < html.index(">RS256</h2>")
    assert html.count("badge-active") == 2 and html.count("badge-next") == 2
    assert "Ready to sign from" in html  # the next keys were published less than the lead time ago
    assert html.count(">Revoke<") == 4


def test_rotate_now_needs_a_recent_password_and_respects_the_lead_time(app, signed_in):
    before, other = keys_by_state(app, "RS256"), keys_by_state(app, "ES256")
    age_authentication(app, app.config["ADMIN_REAUTH_MAX_AGE"] + 1)
    assert signed_in.get("/admin/keys/rotate").headers["Location"] == "/admin/reauth?next=/admin/keys/rotate"
    signed_in.post("/admin/reauth?next=/admin/keys/rotate", {"password": PASSWORD})
    confirm = signed_in.get("/admin/keys/rotate")
    assert confirm.status_code == 200 and "Nobody is signed out" in confirm.get_data(as_text=True)

    too_soon = signed_in.post("/admin/keys/rotate", {"alg": "RS256"})
    assert too_soon.status_code == 400 and "relying parties that cache the JWKS may not have it" in too_soon.get_data(as_text=True)
    assert keys_by_state(app, "RS256") == before
    assert signed_in.post("/admin/keys/rotate", {"alg": "HS256"}).status_code == 400

    done = signed_in.post("/admin/keys/rotate", {"alg": "RS256", "force": "y"})
    assert done.status_code == 303 and done.headers["Location"] == "/admin/keys"
    after = keys_by_state(app, "RS256")
    assert after["active"] == before["next"] and after["retired"] == before["active"] and len(after["next"]) == 1
    assert after["next"] != before["next"]
    assert keys_by_state(app, "ES256") == other  # untouched
    assert "RS256 now signs with" in signed_in.get("/admin/keys").get_data(as_text=True)
    assert {"key.activated", "key.retired", "key.created"} <= set(audit_actions(app))


def test_rotate_every_algorithm_once_the_next_keys_are_old_enough(app, signed_in):
    with app.app_context():
        for key in db.session.scalars(db.select(SigningKey).where(SigningKey.state == KeyState.NEXT)):
            key.created_at -= timedelta(seconds=app.config["KEY_ROTATION_LEAD_TIME"] + 1)
        db.session.commit()
    before = {alg: keys_by_state(app, alg) for alg in ("RS256", "ES256")}
    assert signed_in.post("/admin/keys/rotate", {"alg": ""}).status_code == 303
    for alg in ("RS256", "ES256"):
        assert keys_by_state(app, alg)["active"] == before[alg]["next"]


def test_revoke_a_key_says_what_breaks_and_needs_a_recent_password(app, signed_in):
    active = keys_by_state(app, "ES256")["active"][0]
    upcoming = keys_by_state(app, "ES256")["next"][0]
    url = f"/admin/keys/{active}/revoke"
    confirm = signed_in.get(url).get_data(as_text=True)
    assert "stops verifying here at once" in confirm and "The next key takes over signing immediately" in confirm
    assert "has not signed anything yet" in signed_in.get(f"/admin/keys/{upcoming}/revoke").get_data(as_text=True)
    age_authentication(app, app.config["ADMIN_REAUTH_MAX_AGE"] + 1)
    assert signed_in.post(url, page="/admin/keys").headers["Location"] == f"/admin/reauth?next={url}"
    assert keys_by_state(app, "ES256")["active"] == [active]
    signed_in.post(f"/admin/reauth?next={url}", {"password": PASSWORD})
    response = signed_in.post(url)
    assert response.status_code == 303
    after = keys_by_state(app, "ES256")
    assert after["revoked"] == [active] and after["active"] == [upcoming] and len(after["next"]) == 1
    assert f"Revoked ES256 key {active}" in signed_in.get("/admin/keys").get_data(as_text=True)
    assert "key.revoked" in audit_actions(app, target=f"key:{active}")
    jwks = signed_in.get("/.well-known/jwks.json")
    assert jwks.status_code == 200


def test_revoking_unknown_or_revoked_keys_is_404(app, signed_in):
    assert signed_in.get("/admin/keys/not-a-kid/revoke").status_code == 404
    assert signed_in.get("/admin/keys/" + "k" * 80 + "/revoke").status_code == 404
    upcoming = keys_by_state(app, "RS256")["next"][0]
    signed_in.post(f"/admin/keys/{upcoming}/revoke")
    assert signed_in.get(f"/admin/keys/{upcoming}/revoke").status_code == 404
    assert signed_in.post(f"/admin/keys/{upcoming}/revoke", page="/admin/keys").status_code == 404


def test_jobs_page_lists_every_job_with_its_last_run(app, signed_in):
    html = signed_in.get("/admin/jobs").get_data(as_text=True)
    assert html.count("Has not run yet") == 2 and ">purge</th>" in html and ">rotate_keys</th>" in html
    with app.app_context():
        db.session.add_all([
            JobRun(job="rotate_keys", started_at=T0, finished_at=T0, outcome="succeeded", counts={"rotated": 0}),
            JobRun(job="rotate_keys", started_at=T0 + timedelta(hours=1), finished_at=T0 + timedelta(hours=1), outcome="failed", error="boom"),
            JobRun(job="purge", started_at=T0, outcome="running", counts={}),
        ])
        db.session.commit()
    html = signed_in.get("/admin/jobs").get_data(as_text=True)
    assert "Has not run yet" not in html and "boom" in html and "badge-running" in html
    assert "2026-11-01 13:00 UTC" in html and "rotated" not in html


def test_run_now_queues_the_job(app, signed_in):
    response = signed_in.post("/admin/jobs/purge/run", page="/admin/jobs")
    assert response.status_code == 303
    assert "Queued a run of purge" in signed_in.get("/admin/jobs").get_data(as_text=True)
    assert signed_in.post("/admin/jobs/nope/run", page="/admin/jobs").status_code == 404


def test_run_now_with_the_broker_down_says_so(make_app, admin):
    app = make_app(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    browser = AdminBrowser(app.test_client())
    assert browser.sign_in(admin.email).status_code == 303
    response = browser.post("/admin/jobs/rotate_keys/run", page="/admin/jobs")
    assert response.status_code == 303
    assert "Could not start rotate_keys" in browser.get("/admin/jobs").get_data(as_text=True)


def test_a_revocation_raced_by_another_publisher_is_a_message_on_the_page(app, signed_in, key_rows):
    """The scheduled rotation publishes a missing next key while the admin revokes the active one: no 500."""
    from sqlalchemy import create_engine, event

    upcoming = next(row for row in key_rows if row["alg"] == "RS256" and row["state"] is KeyState.NEXT)
    with app.app_context():
        active = db.session.scalar(db.select(SigningKey.kid).where(SigningKey.alg == "RS256", SigningKey.state == KeyState.ACTIVE))
        db.session.execute(db.delete(SigningKey).where(SigningKey.kid == upcoming["kid"]))
        db.session.commit()
        engine = db.engine
    page = signed_in.token(f"/admin/keys/{active}/revoke")
    other = create_engine(app.config["DATABASE_URL"])
    published = []

    def publish_meanwhile(conn, cursor, statement, *args):
        # Between the revocation's read of the keyring and its first write, another process commits
        # a next key; the revocation's own new next key then collides with it in the unique index.
        if not published and statement.lstrip().upper().startswith("UPDATE SIGNING_KEYS"):
            published.append(True)
            with other.begin() as connection:
                connection.execute(SigningKey.__table__.insert(), [upcoming])

    event.listen(engine, "before_cursor_execute", publish_meanwhile)
    try:
        response = signed_in.client.post(f"/admin/keys/{active}/revoke", data={"csrf_token": page})
    finally:
        event.remove(engine, "before_cursor_execute", publish_meanwhile)
        other.dispose()
    assert published and response.status_code == 303
    html = signed_in.get("/admin/keys").get_data(as_text=True)
    assert "Another rotation changed the keyring at the same moment; nothing was changed, try again." in html
    after = keys_by_state(app, "RS256")
    assert after["active"] == [active] and after["next"] == [upcoming["kid"]] and "revoked" not in after
