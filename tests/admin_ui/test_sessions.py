"""Sessions page: active sessions newest first, filters by user, client and kind, keyset pages, revoke."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from idp.db import db
from idp.models import UserSession
from tests.admin_ui.conftest import PASSWORD, AdminBrowser, audit_actions, make_grant, make_session

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def sids_on(response) -> list[str]:
    return re.findall(r'name="sid" value="([^"]+)"', response.get_data(as_text=True))


def test_active_sessions_newest_first_with_keyset_pages(app, signed_in, make_user):
    app.config["ADMIN_PAGE_SIZE"] = 2
    user = make_user(email="many@example.com")
    now = datetime.now(timezone.utc)
    sids = [make_session(app, user.id, created_at=now - timedelta(minutes=n))[1] for n in range(5)]
    make_session(app, user.id, expires_at=now - timedelta(seconds=1))  # past its absolute end: not shown
    make_session(app, user.id, last_seen_at=now - timedelta(days=1))  # idle too long: not shown
    pages, url = [], "/admin/sessions?user=many@example.com"
    while url:
        response = signed_in.get(url)
        assert response.status_code == 200
        pages.append(sids_on(response))
        found = re.search(r'rel="next" href="([^"]+)"', response.get_data(as_text=True))
        url = found.group(1).replace("&amp;", "&") if found else None
    assert pages == [sids[0:2], sids[2:4], sids[4:5]]


def test_filters_by_user_client_and_kind(app, signed_in, admin, make_user, make_client):
    alice, bob = make_user(email="alice@example.com"), make_user(email="bob@example.com")
    photos, _ = make_client(name="Photos")
    mail, _ = make_client(name="Mail")
    _, alice_sid = make_session(app, alice.id)
    _, bob_sid = make_session(app, bob.id)
    make_grant(app, alice.id, photos.id, sid=alice_sid)
    make_grant(app, bob.id, mail.id, sid=bob_sid)
    admin_sid = admin_session_sid(app)

    everything = signed_in.get("/admin/sessions")
    assert set(sids_on(everything)) == {alice_sid, bob_sid, admin_sid}
    assert ">Photos</a>" in everything.get_data(as_text=True)
    assert sids_on(signed_in.get("/admin/sessions?user=ALICE@example.com")) == [alice_sid]
    assert sids_on(signed_in.get(f"/admin/sessions?client={mail.client_id}")) == [bob_sid]
    assert sids_on(signed_in.get("/admin/sessions?kind=admin")) == [admin_sid]
    assert sids_on(signed_in.get(f"/admin/sessions?kind=sso&client={photos.client_id}&user=alice@example.com")) == [alice_sid]
    nobody = signed_in.get("/admin/sessions?user=nobody@example.com")
    assert nobody.status_code == 200 and "No user has the email nobody@example.com" in nobody.get_data(as_text=True)
    assert signed_in.get("/admin/sessions?client=forged").status_code == 400
    assert signed_in.get("/admin/sessions?kind=root").status_code == 400
    assert signed_in.get("/admin/sessions?after=garbage").status_code == 400


def admin_session_sid(app) -> str:
    with app.app_context():
        return db.session.scalar(db.select(UserSession.sid).where(UserSession.kind == "admin"))


def test_revoking_a_session_signs_that_browser_out(app, signed_in, make_user):
    other = make_user(email="second-admin@example.com", password=PASSWORD, is_admin=True)
    second = AdminBrowser(app.test_client())
    assert second.sign_in(other.email).status_code == 303
    assert second.get("/admin/").status_code == 200
    with app.app_context():
        sid = db.session.scalar(db.select(UserSession.sid).where(UserSession.user_id == other.id))
    response = signed_in.post("/admin/sessions/revoke", {"only": sid, "next": "/admin/sessions?kind=admin"}, page="/admin/sessions")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/sessions?kind=admin"
    assert "Revoked 1 session" in signed_in.get(response.headers["Location"]).get_data(as_text=True)
    signed_out = second.get("/admin/")
    assert signed_out.status_code == 303 and signed_out.headers["Location"].startswith("/admin/login")
    assert "session.ended" in audit_actions(app, target=f"session:{sid}")


def test_revoking_many_asks_first(app, signed_in, make_user):
    user = make_user()
    sids = [make_session(app, user.id)[1] for _ in range(3)]
    confirm = signed_in.post("/admin/sessions/revoke", {"sid": sids[:2]}, page="/admin/sessions")
    assert confirm.status_code == 200 and "Revoke 2 sessions?" in confirm.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(UserSession.id)).where(UserSession.user_id == user.id)) == 3
    done = signed_in.post("/admin/sessions/revoke", {"sid": sids[:2] + ["gone-already"], "confirmed": "yes"}, page="/admin/sessions")
    assert "Revoked 2 sessions; those browsers are signed out. 1 had already ended." in signed_in.get(done.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert list(db.session.scalars(db.select(UserSession.sid).where(UserSession.user_id == user.id))) == [sids[2]]


def test_revoke_bad_input(app, signed_in):
    nothing = signed_in.post("/admin/sessions/revoke", {}, page="/admin/sessions")
    assert nothing.status_code == 303
    assert "Select the sessions to revoke first." in signed_in.get(nothing.headers["Location"]).get_data(as_text=True)
    assert signed_in.post("/admin/sessions/revoke", {"only": "unknown-sid"}, page="/admin/sessions").status_code == 404
    assert signed_in.post("/admin/sessions/revoke", {"sid": ["<script>"]}, page="/admin/sessions").status_code == 400
    assert signed_in.post("/admin/sessions/revoke", {"sid": ["a"] * 201}, page="/admin/sessions").status_code == 400
    offsite = signed_in.post("/admin/sessions/revoke", {"sid": ["x"], "confirmed": "yes", "next": "https://evil.example/"}, page="/admin/sessions")
    assert offsite.headers["Location"] == "/admin/sessions"


def test_empty_state(signed_in, app):
    with app.app_context():
        db.session.execute(db.delete(UserSession).where(UserSession.kind == "sso"))
        db.session.commit()
    html = signed_in.get("/admin/sessions?kind=sso").get_data(as_text=True)
    assert "No active session matches this filter." in html
