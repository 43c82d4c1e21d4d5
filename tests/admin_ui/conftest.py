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
