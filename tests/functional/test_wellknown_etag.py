"""Discovery and JWKS answer from precomputed bytes with ETags; API endpoints never touch a session."""

import json

import pytest
from sqlalchemy import event

from idp.db import db


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/jwks.json"])
def test_documents_revalidate_with_their_etag(client, path):
    first = client.get(path)
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag.startswith('"') and "max-age=" in first.headers["Cache-Control"]
    assert client.get(path).headers["ETag"] == etag and client.get(path).data == first.data
    for condition in (etag, "W/" + etag, f'"other", {etag}', "*"):
        again = client.get(path, headers={"If-None-Match": condition})
        assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_the_discovery_bytes_are_the_metadata(app, client):
    from idp.oidc.discovery import metadata

    with app.test_request_context():
        assert json.loads(client.get("/.well-known/openid-configuration").data) == metadata()


# /userinfo still opens a session it is sent: a cookie met by a database outage there is a 503
# (tests/unit/test_outages.py), and a bearer-less call costs no query anyway.
@pytest.mark.parametrize("path", ["/.well-known/jwks.json", "/token"])
def test_api_endpoints_do_not_load_a_session_cookie(app, client, path):
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        client.set_cookie("idp_session", "a-session-that-does-not-exist")
        answer = client.post(path) if path == "/token" else client.get(path)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert answer.status_code in (200, 400, 401)
    assert not [statement for statement in statements if "sessions" in statement]
    assert "idp_session" not in answer.headers.get("Set-Cookie", "")
