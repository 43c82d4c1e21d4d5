"""Session kinds are one enum: the path decides the kind, the kind decides cookie, SameSite and lifetimes."""

from __future__ import annotations

from flask import request

from idp.sessions.interface import cookie_name, session_kind
from idp.sessions.models import SessionKind
from idp.sessions.store import absolute_ttl, idle_ttl


def test_the_kinds_are_the_stored_strings():
    assert [kind.value for kind in SessionKind] == ["sso", "admin"]
    assert SessionKind.SSO == "sso" and SessionKind("admin") is SessionKind.ADMIN


def test_the_path_decides_the_kind(app):
    for path, kind in (("/admin", SessionKind.ADMIN), ("/admin/users", SessionKind.ADMIN), ("/administrator", SessionKind.SSO), ("/login", SessionKind.SSO)):
        with app.test_request_context(path):
            assert session_kind(request) is kind, path


def test_the_kind_decides_cookie_and_lifetimes(app):
    assert cookie_name(app, SessionKind.ADMIN) != cookie_name(app, SessionKind.SSO)
    assert idle_ttl(app, SessionKind.ADMIN).total_seconds() == app.config["ADMIN_SESSION_IDLE_TTL"]
    assert absolute_ttl(app, SessionKind.SSO).total_seconds() == app.config["SSO_SESSION_ABSOLUTE_TTL"]
