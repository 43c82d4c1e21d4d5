"""Token revocation (RFC 7009): families, the jti denylist, client ownership and authentication."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from idp.clock import utcnow
from idp.db import db
from idp.models import RefreshFamily, RevokedAccessToken
from tests.oidc.resource_support import (  # noqa: F401 (fixtures)
    access_token,
    audit_actions,
    basic,
    bearer,
    decode_part,
    id_token,
    other_rp,
    post_rp,
    public_rp,
    recorder,
    refresh_token,
    rp,
    sign,
    user,
)


def family_revoked(app, token: str) -> bool:
    from idp.tokens.refresh import find_family

    with app.app_context():
        return find_family(token).revoked_at is not None


def denylisted(app) -> list[RevokedAccessToken]:
    with app.app_context():
        rows = list(db.session.scalars(db.select(RevokedAccessToken)))
        db.session.expunge_all()
        return rows


def revoke(client, credentials: tuple, token: str, **extra):
    registered, secret = credentials
    return client.post("/revoke", data={"token": token, **extra}, headers=basic(registered.client_id, secret))


def test_refresh_token_revokes_its_whole_family(app, client, user, rp):
    from idp.tokens.refresh import InvalidRefreshToken, rotate

    token = refresh_token(app, user, rp[0])
    response = revoke(client, rp, token, token_type_hint="refresh_token")
    assert response.status_code == 200
    assert response.data in (b"", b"{}")
    assert response.headers["Cache-Control"] == "no-store"
    assert family_revoked(app, token)
    with app.app_context():
        family = db.session.scalar(db.select(RefreshFamily))
        assert family.revoked_reason == "revoked"
        with pytest.raises(InvalidRefreshToken):
            rotate(token, client=family_client(family))
    assert "refresh_family.revoked" in audit_actions(app)


def family_client(family):
    from idp.models import Client

    return db.session.get(Client, family.client_id)


def test_a_rotated_refresh_token_still_revokes_the_family(app, client, user, rp):
    from idp.tokens.refresh import live_token, rotate

    first = refresh_token(app, user, rp[0])
    with app.app_context():
        from idp.tokens.refresh import find_family

        successor = rotate(first, client=family_client(find_family(first))).token
    assert revoke(client, rp, first).status_code == 200
    with app.app_context():
        assert live_token(successor) is None


def test_access_token_is_denylisted_until_it_expires(app, client, user, rp):
    token = access_token(app, user, rp[0])
    claims = decode_part(token, 1)
    assert client.get("/userinfo", headers=bearer(token)).status_code == 200
    assert revoke(client, rp, token, token_type_hint="access_token").status_code == 200
    [row] = denylisted(app)
    assert row.jti == claims["jti"]
    assert row.expires_at == datetime.fromtimestamp(claims["exp"], tz=timezone.utc)
    assert client.get("/userinfo", headers=bearer(token)).status_code == 401
    assert "access_token.revoked" in audit_actions(app)


def test_hint_is_honoured_but_not_trusted(app, client, user, rp):
    """RFC 7009 2.1: with a wrong hint the server still searches every token type."""
    refresh = refresh_token(app, user, rp[0])
    access = access_token(app, user, rp[0])
    assert revoke(client, rp, refresh, token_type_hint="access_token").status_code == 200
    assert revoke(client, rp, access, token_type_hint="refresh_token").status_code == 200
    assert family_revoked(app, refresh) and len(denylisted(app)) == 1


def test_unknown_hint_value_is_ignored(app, client, user, rp):
    token = refresh_token(app, user, rp[0])
    assert revoke(client, rp, token, token_type_hint="id_token").status_code == 200
    assert family_revoked(app, token)


def test_revoking_twice_is_harmless(app, client, user, rp):
    access, refresh = access_token(app, user, rp[0]), refresh_token(app, user, rp[0])
    for _ in range(2):
        assert revoke(client, rp, access).status_code == 200
        assert revoke(client, rp, refresh).status_code == 200
    assert len(denylisted(app)) == 1 and family_revoked(app, refresh)


def test_another_clients_tokens_are_left_alone(app, client, user, rp, other_rp):
    """RFC 7009 2.1: a client may revoke only its own tokens; the answer gives nothing away."""
    refresh, access = refresh_token(app, user, rp[0]), access_token(app, user, rp[0])
    before = audit_actions(app)
    for token in (refresh, access):
        response = revoke(client, other_rp, token)
        assert response.status_code == 200 and response.data in (b"", b"{}")
    assert not family_revoked(app, refresh)
    assert denylisted(app) == []
    assert audit_actions(app) == before
    assert client.get("/userinfo", headers=bearer(access)).status_code == 200


def test_unknown_foreign_and_dead_tokens_get_200_and_change_nothing(app, client, user, rp, make_client):
    from jwcrypto import jwk

    foreign_key = jwk.JWK.generate(kty="RSA", size=2048)
    live = access_token(app, user, rp[0])
    tokens = [
        "unknown",
        "idp_rt_" + "x" * 43,
        "a.b.c",
        "a" * 20000,
        sign(app, {"typ": "at+jwt"}, decode_part(live, 1), key=foreign_key),  # not signed by us
        id_token(app, user, rp[0].client_id),  # an ID token is not revocable
        access_token(app, user, rp[0], now=utcnow() - timedelta(hours=1)),  # expired already
    ]
    before = audit_actions(app)
    for token in tokens:
        assert revoke(client, rp, token).status_code == 200
    assert denylisted(app) == [] and audit_actions(app) == before


def test_client_secret_post_client(app, client, user, post_rp):
    token = refresh_token(app, user, post_rp[0])
    response = client.post("/revoke", data={"token": token, "client_id": post_rp[0].client_id, "client_secret": post_rp[1]})
    assert response.status_code == 200 and family_revoked(app, token)


def test_public_client_revokes_its_own_token_with_its_client_id(app, client, user, public_rp):
    """RFC 7009 5: public clients revoke too; `none` authentication is their registered method."""
    token = refresh_token(app, user, public_rp[0])
    response = client.post("/revoke", data={"token": token, "client_id": public_rp[0].client_id})
    assert response.status_code == 200 and family_revoked(app, token)


@pytest.mark.parametrize(
    "credentials",
    [
        "none",
        "wrong secret",
        "unknown client",
        "secret in the body of a basic client",
        "client_id only for a confidential client",
        "malformed basic",
    ],
)
def test_client_authentication_is_required(app, client, user, rp, credentials):
    token = refresh_token(app, user, rp[0])
    registered, secret = rp
    data, headers = {"token": token}, {}
    if credentials == "wrong secret":
        headers = basic(registered.client_id, secret + "x")
    elif credentials == "unknown client":
        headers = basic("nobody", secret)
    elif credentials == "secret in the body of a basic client":
        data.update(client_id=registered.client_id, client_secret=secret)
    elif credentials == "client_id only for a confidential client":
        data.update(client_id=registered.client_id)
    elif credentials == "malformed basic":
        headers = {"Authorization": "Basic %%%not-base64"}
    response = client.post("/revoke", data=data, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert not family_revoked(app, token)


@pytest.mark.parametrize(
    "data",
    [{}, {"token": ""}, {"token": ["a", "b"]}, {"token": "a", "token_type_hint": ["access_token", "refresh_token"]}],
)
def test_malformed_requests_are_invalid_request(client, rp, data):
    response = client.post("/revoke", data=data, headers=basic(rp[0].client_id, rp[1]))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_json_body_is_not_a_revocation_request(client, rp):
    response = client.post("/revoke", json={"token": "x"}, headers=basic(rp[0].client_id, rp[1]))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_token_in_the_query_string_is_not_read(app, client, user, rp):
    token = refresh_token(app, user, rp[0])
    response = client.post(f"/revoke?token={token}", headers=basic(rp[0].client_id, rp[1]))
    assert response.status_code == 400 and not family_revoked(app, token)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_unknown_methods_are_405_json(client, method):
    response = client.open("/revoke", method=method)
    assert response.status_code == 405 and response.get_json()["error"] == "method_not_allowed"


def test_oversized_body_is_413(client, rp):
    response = client.post("/revoke", data={"token": "a" * (2 * 1024 * 1024)}, headers=basic(rp[0].client_id, rp[1]))
    assert response.status_code == 413


@pytest.mark.slow
def test_revocation_over_http_on_a_real_server(app, shared_server, user, rp, other_rp):
    base = shared_server(issuer="http://localhost")
    access, refresh = access_token(app, user, rp[0]), refresh_token(app, user, rp[0])
    auth = (rp[0].client_id, rp[1])
    assert requests.post(base + "/revoke", data={"token": access}, auth=(other_rp[0].client_id, other_rp[1]), timeout=10).status_code == 200
    assert requests.get(base + "/userinfo", headers=bearer(access), timeout=10).status_code == 200
    assert requests.post(base + "/revoke", data={"token": access}, auth=auth, timeout=10).status_code == 200
    assert requests.post(base + "/revoke", data={"token": refresh}, auth=auth, timeout=10).status_code == 200
    assert requests.get(base + "/userinfo", headers=bearer(access), timeout=10).status_code == 401
    assert family_revoked(app, refresh)
    unauthenticated = requests.post(base + "/revoke", data={"token": refresh}, timeout=10)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"] == "invalid_client"


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect", "/userinfo"])
def test_plain_http_to_a_public_host_is_an_oauth_error_not_500(app, client, user, rp, path):
    """RFC 6749 3.1 wants TLS: Authlib refuses plain http off loopback, before its own error handling."""
    response = client.post(path, data={"token": "x", "grant_type": "client_credentials"}, headers=basic(rp[0].client_id, rp[1]),
                           base_url="http://idp.example.com")
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_request", "error_description": "This endpoint is served over https only."}
    assert response.headers["Cache-Control"] == "no-store"
