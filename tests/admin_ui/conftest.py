"""Fixtures for the admin UI: admins, signed-in test clients, CSRF tokens read from real pages."""

from __future__ import annotations

import re

import pytest

from idp.db import db
from idp.models import UserSession

PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = CSRF_INPUT.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


class AdminBrowser:
    """A Flask test client that reads each form's CSRF token from the page, like a browser."""

    def __init__(self, client):
        self.client = client

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def token(self, page_url: str) -> str:
        response = self.client.get(page_url)
        assert response.status_code == 200, (page_url, response.status_code)
        return csrf_from(response.get_data(as_text=True))

    def post(self, url: str, data: dict | None = None, *, page: str | None = None, **kwargs):
        """POST `data` with the CSRF token from `page` (default: the URL itself)."""
        data = dict(data or {})
        data.setdefault("csrf_token", self.token(page or url))
        return self.client.post(url, data=data, **kwargs)

    def sign_in(self, email: str, password: str = PASSWORD):
        return self.post("/admin/login", {"email": email, "password": password})


@pytest.fixture
def admin(make_user):
    """An admin account."""
    return make_user(email="admin@example.com", password=PASSWORD, is_admin=True)


@pytest.fixture
def browser(client) -> AdminBrowser:
    """An anonymous browser on the test client."""
    return AdminBrowser(client)


@pytest.fixture
def signed_in(app, admin) -> AdminBrowser:
    """A browser signed in to the admin UI as `admin`, through the real sign-in form."""
    browser = AdminBrowser(app.test_client())
    response = browser.sign_in(admin.email)
    assert response.status_code == 303, response.get_data(as_text=True)
    return browser


def admin_session_rows(app) -> list[UserSession]:
    with app.app_context():
        return list(db.session.scalars(db.select(UserSession).where(UserSession.kind == "admin")))


def audit_actions(app, **where) -> list[str]:
    """Actions of the recorded audit events, oldest first, optionally filtered by column values."""
    from idp.models import AuditEvent

    with app.app_context():
        query = db.select(AuditEvent.action).order_by(AuditEvent.id)
        for column, value in where.items():
            query = query.where(getattr(AuditEvent, column) == value)
        return list(db.session.scalars(query))


def make_session(app, user_id: int, kind: str = "sso", **columns) -> tuple[str, str]:
    """A signed-in session row made through the session service; returns (cookie value, sid)."""
    from idp.models import User
    from idp.sessions.service import new_row

    with app.app_context():
        value, row = new_row(app, kind, db.session.get(User, user_id))
        for name, column_value in columns.items():
            setattr(row, name, column_value)
        db.session.commit()
        return value, row.sid


def snapshot(app) -> tuple:
    """Everything an admin action could change, to prove a refused request changed nothing."""
    from idp.models import AuditEvent, Client, Consent, RefreshFamily, User

    with app.app_context():
        return (
            db.session.scalar(db.select(db.func.count(AuditEvent.id))),
            [tuple(row) for row in db.session.execute(db.select(User.id, User.email, User.name, User.password_hash, User.is_admin,
                                                                  User.token_version, User.disabled_at).order_by(User.id))],
            [tuple(row) for row in db.session.execute(db.select(Client.id, Client.name, Client.secret_digest, Client.redirect_uris).order_by(Client.id))],
            sorted(db.session.scalars(db.select(UserSession.sid))),
            db.session.scalar(db.select(db.func.count(Consent.id))),
            [tuple(row) for row in db.session.execute(db.select(RefreshFamily.id, RefreshFamily.revoked_at).order_by(RefreshFamily.id))],
        )


def make_grant(app, user_id: int, client_pk: int, *, sid: str | None = None, scope: str = "openid email") -> int:
    """A consent and a live refresh family for (user, client), via the token service; returns the family id."""
    from idp.models import Client, Consent, User
    from idp.tokens.refresh import start_family

    with app.app_context():
        db.session.add(Consent(user_id=user_id, client_id=client_pk, scope=scope))
        rotation = start_family(client=db.session.get(Client, client_pk), user=db.session.get(User, user_id), scope=scope, sid=sid)
        db.session.commit()
        return rotation.family.id
