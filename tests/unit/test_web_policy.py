"""Headers are set one way (idp/web/headers.py) and redirects pass one guard (idp/web/redirects.py)."""

from __future__ import annotations

import pytest
from flask import Response

from idp.web import headers
from idp.web.redirects import safe_next


@pytest.mark.parametrize("target", [
    None, "", "https://evil.example/", "//evil.example/x", "/\t/evil.example", "/\\evil.example", "/\\/evil",
    "http:/evil", "/path with space", "/a\r\nSet-Cookie: x=1", "evil.example",
])
def test_anything_but_a_local_path_is_refused(target):
    assert safe_next(target) is None


def test_a_local_path_keeps_its_query_and_loses_its_fragment():
    assert safe_next("/account?tab=apps#top") == "/account?tab=apps"


def test_within_a_prefix_and_refused_paths():
    assert safe_next("/admin/users?q=a", within="/admin") == "/admin/users?q=a"
    assert safe_next("/admin", within="/admin") == "/admin"
    assert safe_next("/administrator", within="/admin") is None
    assert safe_next("/account", within="/admin") is None
    assert safe_next("/admin/login", within="/admin", refuse={"/admin/login"}) is None


def test_header_sets(app):
    with app.test_request_context():
        response = headers.secure(Response("x"), headers.USER_PAGES)
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert "Strict-Transport-Security" not in response.headers
    assert headers.TOKEN_RESPONSE == {"Cache-Control": "no-store", "Pragma": "no-cache"}
    assert "default-src 'none'" in headers.LOGOUT_PAGES["Content-Security-Policy"]
    assert headers.ADMIN_PAGES["X-Content-Type-Options"] == "nosniff"


def test_hsts_only_on_an_https_issuer(app):
    with app.test_request_context():
        app.config["ISSUER"] = "https://idp.example.com"
        response = headers.secure(Response("x"), headers.ADMIN_PAGES, hsts=True)
    assert response.headers["Strict-Transport-Security"] == headers.HSTS
