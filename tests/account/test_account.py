"""The account page: own sessions, sign out one or everywhere, change password, revoke applications."""

import re

import pytest
from sqlalchemy import func, select

from idp.db import db
from idp.models import AuditEvent, Client, Consent, RefreshFamily, User, UserSession
from idp.sessions.service import new_row
from idp.tokens.refresh import InvalidRefreshToken, rotate, start_family
from tests.oidc.flow import csrf_token

PASSWORD = "correct horse battery"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def sign_in(client, email: str, password: str = PASSWORD):
    page = client.get("/account", headers={"User-Agent": FIREFOX})
    assert page.status_code == 302 and page.location.startswith("/login?next=")
    login = client.get(page.location)
    return client.post(page.location, data={"username": email, "password": password, "csrf_token": csrf_token(login.get_data(as_text=True)), "next": "/account"}, headers={"User-Agent": FIREFOX})


@pytest.fixture
def user(make_user):
    return make_user(email="ada@example.com")


@pytest.fixture
def signed_in(client, user):
    response = sign_in(client, user.email)
    assert response.status_code == 302 and response.location == "/account"
    return client


def page(client) -> str:
    response = client.get("/account")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def other_device(app, user_id: int) -> str:
    with app.app_context():
        _, row = new_row(app, "sso", db.session.get(User, user_id))
        row.user_agent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1"
        row.ip = "198.51.100.7"
        db.session.commit()
        return row.sid


def test_anonymous_visitor_is_sent_to_login_and_back(client, user):
    response = sign_in(client, user.email)
    assert response.status_code == 302 and response.location == "/account"
    assert "ada@example.com" in page(client)


@pytest.mark.parametrize("target", ["https://evil.example.com/", "//evil.example.com/", "/\\evil.example.com", "javascript:alert(1)"])
def test_login_never_redirects_off_site(client, user, target):
    login = client.get("/login")
    response = client.post("/login", data={"username": user.email, "password": PASSWORD, "csrf_token": csrf_token(login.get_data(as_text=True)), "next": target})
    assert response.status_code == 200 and b"Signed in" in response.data


def test_page_lists_sessions_with_device_and_marks_the_current_one(app, signed_in, user):
    other_device(app, user.id)
    html = page(signed_in)
    assert "Firefox on Linux" in html and "(this browser)" in html
    assert "Safari on iPhone" in html and "198.51.100.7" in html
    assert html.count(">Sign out</button>") == 2
    assert "You have not allowed any application yet" in html


def test_sign_out_another_session(app, signed_in, user):
    sid = other_device(app, user.id)
    html = page(signed_in)
    response = signed_in.post(f"/account/sessions/{sid}/sign-out", data={"csrf_token": csrf_token(html)})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(UserSession).where(UserSession.sid == sid)) is None
    assert page(signed_in)  # this browser is still signed in


def test_cannot_sign_out_someone_elses_session(app, signed_in, make_user):
    stranger = make_user(email="eve@example.com")
    sid = other_device(app, stranger.id)
    response = signed_in.post(f"/account/sessions/{sid}/sign-out", data={"csrf_token": csrf_token(page(signed_in))})
    assert response.status_code == 404
    with app.app_context():
        assert db.session.scalar(select(UserSession).where(UserSession.sid == sid)) is not None


def test_forms_without_csrf_change_nothing(app, signed_in, user):
    sid = other_device(app, user.id)
    assert signed_in.post(f"/account/sessions/{sid}/sign-out").status_code == 400
    assert signed_in.post("/account/sign-out-everywhere").status_code == 400
    assert signed_in.post("/account/password", data={"current_password": PASSWORD, "new_password": "x" * 12, "confirm_password": "x" * 12}).status_code == 400
    with app.app_context():
        assert db.session.get(User, user.id).token_version == 1


def test_sign_out_everywhere_ends_this_browser_too(app, signed_in, user):
    other_device(app, user.id)
    response = signed_in.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(page(signed_in))})
    assert response.status_code == 200 and b"Signed out everywhere" in response.data
    assert signed_in.get("/account").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UserSession)) == 0
        assert db.session.get(User, user.id).token_version == 2


def test_change_password_keeps_this_browser_and_ends_the_rest(app, signed_in, user):
    sid = other_device(app, user.id)
    before = signed_in.get_cookie("idp_session").value
    html = page(signed_in)
    response = signed_in.post("/account/password", data={"csrf_token": csrf_token(html), "current_password": PASSWORD, "new_password": "a brand new password", "confirm_password": "a brand new password"})
    assert response.status_code == 302
    assert signed_in.get_cookie("idp_session").value != before  # a new session id
    assert "Password changed" in page(signed_in)
    with app.app_context():
        assert db.session.scalar(select(UserSession).where(UserSession.sid == sid)) is None
        assert db.session.get(User, user.id).token_version == 2


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong password", "a brand new password", "a brand new password", "current password is wrong"),
        (PASSWORD, "short", "short", "at least 8 characters"),
        (PASSWORD, "a brand new password", "something else entirely", "The two new passwords differ."),
    ],
)
def test_bad_password_changes_re_render_with_errors_and_change_nothing(app, signed_in, user, current, new, confirm, message):
    response = signed_in.post("/account/password", data={"csrf_token": csrf_token(page(signed_in)), "current_password": current, "new_password": new, "confirm_password": confirm})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, user.id).token_version == 1
    assert page(signed_in)  # still signed in


def test_wrong_current_password_is_audited(app, signed_in, user):
    signed_in.post("/account/password", data={"csrf_token": csrf_token(page(signed_in)), "current_password": "nope nope nope", "new_password": "a brand new password", "confirm_password": "a brand new password"})
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.password_change_failed")) is not None


def test_revoke_access_to_an_application(app, signed_in, user, make_client):
    rp, _ = make_client(name="Photo <b>App</b>")
    with app.app_context():
        db.session.add(Consent(user_id=user.id, client_id=rp.id, scope="openid email"))
        family = start_family(client=db.session.get(Client, rp.id), user=db.session.get(User, user.id), scope="openid offline_access", offline=True)
        db.session.commit()
        token = family.token
    html = page(signed_in)
    assert "Photo &lt;b&gt;App&lt;/b&gt;" in html and "<b>App</b>" not in html
    response = signed_in.post(f"/account/applications/{rp.client_id}/revoke", data={"csrf_token": csrf_token(html)})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Consent)) is None
        assert db.session.scalar(select(RefreshFamily)).revoked_reason == "user_revoked_access"
        with pytest.raises(InvalidRefreshToken):
            rotate(token, client=db.session.get(Client, rp.id))
    assert signed_in.post("/account/applications/not-a-client/revoke", data={"csrf_token": csrf_token(page(signed_in))}).status_code == 404


def test_pages_are_not_framable_or_cached(signed_in):
    response = signed_in.get("/account")
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"
