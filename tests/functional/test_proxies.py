"""Forwarded headers (IDP_TRUSTED_PROXIES) and the CSRF Origin check, over the test client.

The same behaviour through a real nginx in front of real `idp serve` replicas, in Chromium, is
tests/functional/test_nginx.py.
"""

from __future__ import annotations

import pytest
from flask import jsonify, request

from tests.oidc.conftest import PASSWORD
from tests.oidc.flow import csrf_token

# Nothing here depends on the database: one backend is enough.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PEER = "10.9.8.7"  # the connection's own address: the proxy, when there is one


def probe(make_app, **config):
    """An app with a route that shows what it believes about the client."""
    app = make_app(**config)
    app.add_url_rule("/_probe", "probe", lambda: jsonify(ip=request.remote_addr, scheme=request.scheme, host=request.host))
    client = app.test_client()
    return lambda headers: client.get("/_probe", headers=headers, environ_base={"REMOTE_ADDR": PEER}).get_json()


SPOOF = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}


def test_without_trusted_proxies_forwarded_headers_are_ignored(make_app):
    seen = probe(make_app)
    assert seen(SPOOF) == {"ip": PEER, "scheme": "http", "host": "localhost"}


def test_one_trusted_hop_believes_only_the_value_its_proxy_appended(make_app):
    seen = probe(make_app, TRUSTED_PROXIES=1)
    # The client wrote 198.51.100.1 itself; the proxy appended the address it saw.
    assert seen({"X-Forwarded-For": "198.51.100.1, 203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "login.example.com"}) == {
        "ip": "203.0.113.9", "scheme": "https", "host": "login.example.com"}
    assert seen({}) == {"ip": PEER, "scheme": "http", "host": "localhost"}


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-For": "not-an-address"},
    {"X-Forwarded-For": "203.0.113.9:4711"},
    {"X-Forwarded-For": "<script>"},
    {"X-Forwarded-Proto": "gopher"},
    {"X-Forwarded-Host": "bad host/<x>"},
    {"X-Forwarded-Port": "99999"},
    {"X-Forwarded-Port": "eighty"},
])
def test_a_malformed_forwarded_header_is_ignored_not_a_500(make_app, headers):
    seen = probe(make_app, TRUSTED_PROXIES=1)
    assert seen(headers) == {"ip": PEER, "scheme": "http", "host": "localhost"}


def test_sign_in_over_https_needs_no_referer_but_a_foreign_origin_is_refused(make_app, make_user):
    """Behind TLS (WTF_CSRF_SSL_STRICT's Referer check is off): Origin, when sent, must be the issuer's."""
    app = make_app(ISSUER="https://login.example.com")
    user = make_user()
    client = app.test_client()
    https = {"base_url": "https://login.example.com"}

    def post(origin):
        token = csrf_token(client.get("/login", **https).get_data(as_text=True))
        headers = {"Origin": origin} if origin else {}
        return client.post("/login", data={"username": user.email, "password": PASSWORD, "csrf_token": token}, headers=headers, **https)

    for foreign in ("https://evil.example", "null", "http://login.example.com", "https://login.example.com:8443"):
        refused = post(foreign)
        assert refused.status_code == 400 and b"did not come from this site" in refused.data, foreign
    assert post(None).status_code == 200  # no Origin, no Referer: the token decides
    assert b"Signed in" in post("https://login.example.com").data


def test_admin_forms_check_the_origin_too(make_app, make_user):
    app = make_app(ISSUER="https://login.example.com")
    admin = make_user(is_admin=True)
    client = app.test_client()
    https = {"base_url": "https://login.example.com"}
    token = csrf_token(client.get("/admin/login", **https).get_data(as_text=True))
    form = {"email": admin.email, "password": PASSWORD, "csrf_token": token}
    assert client.post("/admin/login", data=form, headers={"Origin": "https://evil.example"}, **https).status_code == 400
    assert client.post("/admin/login", data=form, headers={"Origin": "https://login.example.com"}, **https).status_code == 303


@pytest.mark.slow
def test_a_real_server_without_trusted_proxies_ignores_spoofed_forwarded_headers(app, start_server, make_user):
    """gunicorn (forwarded_allow_ips empty) and the app (IDP_TRUSTED_PROXIES=0) both ignore them."""
    import requests
    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent

    user = make_user()
    base = start_server()
    browser = requests.Session()
    spoof = {"X-Forwarded-For": "203.0.113.9"}
    form = {"username": user.email, "password": PASSWORD, "csrf_token": csrf_token(browser.get(base + "/login", timeout=30).text)}
    signed_in = browser.post(base + "/login", data=form, headers=spoof, timeout=30)
    assert signed_in.status_code == 200 and "Signed in" in signed_in.text
    account = browser.get(base + "/account", headers=spoof, timeout=30)
    assert "127.0.0.1" in account.text and "203.0.113.9" not in account.text
    with app.app_context():
        assert set(db.session.scalars(select(AuditEvent.ip).where(AuditEvent.action == "user.signed_in"))) == {"127.0.0.1"}
