"""Users pages: search, pages, create, edit, disable/enable, password, admin rights, sign-out, sessions, grants."""

from __future__ import annotations

import re
from datetime import timedelta

from idp.db import db
from idp.models import AuditEvent, Consent, RefreshFamily, User, UserSession
from idp.security import verify_password
from tests.admin_ui.conftest import PASSWORD, AdminBrowser, admin_session_rows, audit_actions, make_grant, make_session


def emails_on(response) -> list[str]:
    return re.findall(r'<a href="/admin/users/\d+">([^<]+)</a>', response.get_data(as_text=True))


def user_row(app, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def seed_users(app, emails: list[str]) -> None:
    with app.app_context():
        db.session.add_all(User(email=email, password_hash="x") for email in emails)
        db.session.commit()


def test_list_is_sorted_by_email_and_paginated_by_key(app, signed_in, admin):
    app.config["ADMIN_PAGE_SIZE"] = 3
    seed_users(app, [f"u{n:02d}@example.com" for n in range(7)])
    first = signed_in.get("/admin/users")
    assert emails_on(first) == ["admin@example.com", "u00@example.com", "u01@example.com"]
    next_link = re.search(r'href="(/admin/users\?after=[^"]+)"', first.get_data(as_text=True)).group(1)
    second = signed_in.get(next_link.replace("&amp;", "&"))
    assert emails_on(second) == ["u02@example.com", "u03@example.com", "u04@example.com"]
    prev_link = re.search(r'href="(/admin/users\?before=[^"]+)"', second.get_data(as_text=True)).group(1)
    assert emails_on(signed_in.get(prev_link.replace("&amp;", "&"))) == emails_on(first)
    third = signed_in.get(re.search(r'href="(/admin/users\?after=[^"]+)"', second.get_data(as_text=True)).group(1))
    assert emails_on(third) == ["u05@example.com", "u06@example.com"]
    assert 'rel="next"' not in third.get_data(as_text=True)


def test_search_matches_an_email_prefix_literally(app, signed_in):
    seed_users(app, ["alice@example.com", "alfred@example.com", "bob@example.com", "a_b@example.com", "axb@example.com", "a%c@example.com"])
    assert emails_on(signed_in.get("/admin/users?q=AL")) == ["alfred@example.com", "alice@example.com"]
    assert emails_on(signed_in.get("/admin/users?q=a_")) == ["a_b@example.com"]  # _ is not a wildcard
    assert emails_on(signed_in.get("/admin/users?q=a%25")) == ["a%c@example.com"]  # nor is %
    empty = signed_in.get("/admin/users?q=zzz")
    assert emails_on(empty) == [] and "No user matches this search" in empty.get_data(as_text=True)


def test_status_filter(app, signed_in, make_user, admin):
    gone = make_user(email="gone@example.com")
    from idp.signout import disable_user

    with app.app_context():
        disable_user(db.session.get(User, gone.id), actor="test")
    assert emails_on(signed_in.get("/admin/users?status=admins")) == ["admin@example.com"]
    assert emails_on(signed_in.get("/admin/users?status=disabled")) == ["gone@example.com"]
    assert signed_in.get("/admin/users?status=bogus").status_code == 400


def test_tampered_cursors_are_400_not_500(signed_in):
    for cursor in ["nonsense", "W10", "WzFd", "eyJ4IjoxfQ", "W3siZHQiOiJub3QtYS1kYXRlIn1d", "x" * 600]:
        response = signed_in.get(f"/admin/users?after={cursor}")
        assert response.status_code == 400, cursor
        assert "page link is malformed" in response.get_data(as_text=True)


def test_create_user(app, signed_in):
    response = signed_in.post("/admin/users/new", {"email": "New@Example.com ", "name": "New Person",
                                                   "password": "a-long-password", "password_confirm": "a-long-password"})
    assert response.status_code == 303
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == "new@example.com"))
        assert user.name == "New Person" and not user.is_admin
        assert verify_password(user.password_hash, "a-long-password")[0]
    assert response.headers["Location"] == f"/admin/users/{user.id}"
    page = signed_in.get(response.headers["Location"])
    assert "Created new@example.com." in page.get_data(as_text=True)
    with app.app_context():
        event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "user.created", AuditEvent.target == f"user:{user.id}"))
        assert event.actor == f"user:{admin_session_rows(app)[0].user_id}" and event.target == f"user:{user.id}"


def test_create_user_bad_input_rerenders_with_field_errors(app, signed_in, make_user):
    make_user(email="taken@example.com")
    cases = [
        ({"email": "taken@example.com", "password": "a-long-password", "password_confirm": "a-long-password"}, "already exists"),
        ({"email": "not-an-email", "password": "a-long-password", "password_confirm": "a-long-password"}, "email address is malformed"),
        ({"email": "ok@example.com", "password": "short", "password_confirm": "short"}, "at least 8 characters"),
        ({"email": "ok@example.com", "password": "a-long-password", "password_confirm": "different-one"}, "The two passwords differ."),
        ({"email": "", "password": "", "password_confirm": ""}, "This field is required."),
        ({"email": "ok@example.com", "name": "n" * 201, "password": "a-long-password", "password_confirm": "a-long-password"}, "Field cannot be longer than 200 characters."),
    ]
    for data, message in cases:
        response = signed_in.post("/admin/users/new", data)
        html = response.get_data(as_text=True)
        assert response.status_code == 400, data
        assert message in html and 'aria-invalid="true"' in html, data
        assert "a-long-password" not in html  # passwords are never echoed back
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == 2  # admin + taken


def test_edit_user(app, signed_in, make_user):
    user = make_user(email="before@example.com")
    make_user(email="taken@example.com")
    duplicate = signed_in.post(f"/admin/users/{user.id}/edit", {"email": "taken@example.com", "name": ""})
    assert duplicate.status_code == 400 and "already exists" in duplicate.get_data(as_text=True)
    response = signed_in.post(f"/admin/users/{user.id}/edit", {"email": "after@example.com", "name": "After"})
    assert response.status_code == 303
    saved = user_row(app, user.id)
    assert (saved.email, saved.name) == ("after@example.com", "After")
    with app.app_context():
        event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "user.updated"))
        assert event.details == {"fields": ["email", "name"]}


def test_tampered_user_ids_are_404(signed_in, make_client):
    registered, _ = make_client()
    for url in ["/admin/users/999999", "/admin/users/999999/edit", "/admin/users/999999/password", "/admin/users/abc",
                "/admin/users/999999/disable", "/admin/users/999999/sign-out", "/admin/users/999999/delete"]:
        assert signed_in.get(url).status_code == 404, url
    for url in ["/admin/users/999999/enable", "/admin/users/999999/disable", f"/admin/users/999999/grants/{registered.client_id}/revoke"]:
        assert signed_in.post(url, page="/admin/").status_code == 404, url


def test_disable_asks_first_then_ends_every_session(app, signed_in, make_user):
    user = make_user(email="leaver@example.com")
    make_session(app, user.id)
    confirm = signed_in.get(f"/admin/users/{user.id}/disable")
    assert confirm.status_code == 200 and "signed out everywhere" in confirm.get_data(as_text=True)
    assert user_row(app, user.id).disabled_at is None
    response = signed_in.post(f"/admin/users/{user.id}/disable")
    assert response.status_code == 303
    saved = user_row(app, user.id)
    assert saved.disabled_at is not None and saved.token_version == 2
    with app.app_context():
        assert db.session.scalar(db.select(UserSession).where(UserSession.user_id == user.id)) is None
    assert {"user.disabled", "session.ended"} <= set(audit_actions(app))
    enabled = signed_in.post(f"/admin/users/{user.id}/enable", page=f"/admin/users/{user.id}")
    assert enabled.status_code == 303 and user_row(app, user.id).disabled_at is None
    assert "user.enabled" in audit_actions(app)


def test_an_admin_cannot_disable_themselves_or_revoke_their_own_rights(app, signed_in, admin):
    for action in ("disable", "revoke-admin"):
        response = signed_in.post(f"/admin/users/{admin.id}/{action}", page=f"/admin/users/{admin.id}/{action}")
        assert response.status_code == 303
        assert "cannot" in signed_in.get(response.headers["Location"]).get_data(as_text=True)
    saved = user_row(app, admin.id)
    assert saved.disabled_at is None and saved.is_admin and saved.token_version == 1


def test_set_password_ends_the_users_sessions(app, signed_in, make_user):
    user = make_user(email="forgetful@example.com")
    make_session(app, user.id)
    weak = signed_in.post(f"/admin/users/{user.id}/password", {"password": "short", "password_confirm": "short"})
    assert weak.status_code == 400 and "at least 8 characters" in weak.get_data(as_text=True)
    response = signed_in.post(f"/admin/users/{user.id}/password", {"password": "brand-new-password", "password_confirm": "brand-new-password"})
    assert response.status_code == 303
    saved = user_row(app, user.id)
    assert verify_password(saved.password_hash, "brand-new-password")[0] and saved.token_version == 2
    with app.app_context():
        assert db.session.scalar(db.select(UserSession).where(UserSession.user_id == user.id)) is None
    assert "user.password_set" in audit_actions(app)


def test_setting_your_own_password_signs_you_in_again(app, signed_in, admin):
    response = signed_in.post(f"/admin/users/{admin.id}/password", {"password": "brand-new-password", "password_confirm": "brand-new-password"})
    assert response.headers["Location"] == "/admin/login?signed_out=password"
    assert signed_in.get("/admin/").status_code == 303
    assert signed_in.sign_in(admin.email, "brand-new-password").status_code == 303


def test_grant_and_revoke_admin_rights_bump_the_token_version(app, signed_in, make_user):
    user = make_user(email="helper@example.com", password=PASSWORD)
    make_session(app, user.id)
    assert signed_in.post(f"/admin/users/{user.id}/grant-admin").status_code == 303
    saved = user_row(app, user.id)
    assert saved.is_admin and saved.token_version == 2
    helper = AdminBrowser(app.test_client())
    assert helper.sign_in(user.email).status_code == 303
    assert signed_in.post(f"/admin/users/{user.id}/revoke-admin").status_code == 303
    saved = user_row(app, user.id)
    assert not saved.is_admin and saved.token_version == 3
    assert helper.get("/admin/").status_code == 303  # their admin session ended
    assert ["user.admin_granted", "user.admin_revoked"] == [a for a in audit_actions(app) if a.startswith("user.admin_")]


def test_sign_out_everywhere(app, signed_in, make_user):
    user = make_user(email="roamer@example.com")
    for _ in range(3):
        make_session(app, user.id)
    page = signed_in.get(f"/admin/users/{user.id}")
    assert page.get_data(as_text=True).count('name="only"') == 3
    response = signed_in.post(f"/admin/users/{user.id}/sign-out")
    assert "3 sessions ended" in signed_in.get(response.headers["Location"]).get_data(as_text=True)
    assert user_row(app, user.id).token_version == 2
    with app.app_context():
        assert db.session.scalar(db.select(UserSession).where(UserSession.user_id == user.id)) is None


def test_user_page_lists_sessions_and_grants_with_revoke_buttons(app, signed_in, make_user, make_client):
    user = make_user(email="owner@example.com")
    registered, _ = make_client(name="Photo App")
    _, sid = make_session(app, user.id, ip="203.0.113.7", user_agent="Firefox/140")
    family = make_grant(app, user.id, registered.id)  # not bound to the session: survives its end
    html = signed_in.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "203.0.113.7" in html and "Firefox/140" in html and "Photo App" in html
    assert f'value="{sid}"' in html

    revoked = signed_in.post("/admin/sessions/revoke", {"only": sid, "next": f"/admin/users/{user.id}"}, page=f"/admin/users/{user.id}")
    assert revoked.headers["Location"] == f"/admin/users/{user.id}"
    with app.app_context():
        assert db.session.scalar(db.select(UserSession).where(UserSession.sid == sid)) is None

    response = signed_in.post(f"/admin/users/{user.id}/grants/{registered.client_id}/revoke", page=f"/admin/users/{user.id}")
    assert response.status_code == 303
    with app.app_context():
        assert db.session.get(RefreshFamily, family).revoked_reason == "admin"
        assert db.session.scalar(db.select(Consent)) is None
    assert {"consent.revoked", "refresh_family.revoked", "session.ended"} <= set(audit_actions(app))
    assert "has not granted any application access yet" in signed_in.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert signed_in.post(f"/admin/users/{user.id}/grants/no-such-client/revoke", page=f"/admin/users/{user.id}").status_code == 404


def test_expired_sessions_are_not_shown_as_sessions_of_the_user_list(app, signed_in, make_user):
    user = make_user(email="sleeper@example.com")
    make_session(app, user.id)
    with app.app_context():
        row = db.session.scalar(db.select(UserSession).where(UserSession.user_id == user.id))
        row.last_seen_at -= timedelta(days=2)
        db.session.commit()
    html = signed_in.get(f"/admin/sessions?user={user.email}").get_data(as_text=True)
    assert "sleeper@example.com</a>" not in html


def test_delete_a_user_after_confirmation(app, signed_in, make_user, make_client, admin):
    user = make_user(email="gone-soon@example.com")
    registered, _ = make_client()
    _, sid = make_session(app, user.id)
    make_grant(app, user.id, registered.id, sid=sid)
    confirm = signed_in.get(f"/admin/users/{user.id}/delete")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.get_data(as_text=True)
    response = signed_in.post(f"/admin/users/{user.id}/delete")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/users"
    assert "Deleted gone-soon@example.com." in signed_in.get("/admin/users").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, user.id) is None
        assert db.session.scalar(db.select(UserSession).where(UserSession.user_id == user.id)) is None
        assert db.session.scalar(db.select(Consent)) is None
    assert "user.deleted" in audit_actions(app)
    refused = signed_in.post(f"/admin/users/{admin.id}/delete", page=f"/admin/users/{admin.id}")
    assert "cannot delete your own account" in signed_in.get(refused.headers["Location"]).get_data(as_text=True)
    assert user_row(app, admin.id) is not None
