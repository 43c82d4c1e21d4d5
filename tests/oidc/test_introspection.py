"""Token introspection (RFC 7662): active metadata, exactly `{"active": false}` otherwise, and who may ask."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from idp.clock import utcnow
from idp.db import db
from idp.models import Client, RefreshFamily, User
from tests.oidc.resource_support import (  # noqa: F401 (fixtures)
    access_token,
    basic,
    decode_part,
    hostile_tokens,
    other_rp,
    post_rp,
    public_rp,
    recorder,
    refresh_token,
    rp,
    user,
)

INACTIVE = {"active": False}


def introspect(client, credentials: tuple, token: str, **extra):
    registered, secret = credentials
    return client.post("/introspect", data={"token": token, **extra}, headers=basic(registered.client_id, secret))


def test_active_access_token(app, client, user, rp):
    token = access_token(app, user, rp[0], scope="openid profile", sid="session-1")
    claims = decode_part(token, 1)
    response = introspect(client, rp, token)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "active": True,
        "token_type": "access_token",
        "iss": "http://localhost",
        "sub": user.subject,
        "aud": "http://localhost",
        "client_id": rp[0].client_id,
        "scope": "openid profile",
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": claims["jti"],
        "sid": "session-1",
    }


def test_a_resource_server_may_introspect_any_access_token(app, client, user, rp, other_rp, post_rp):
    """Resource servers are confidential clients; the token was issued to someone else."""
    token = access_token(app, user, rp[0])
    assert introspect(client, other_rp, token).get_json()["active"] is True
    by_post = client.post("/introspect", data={"token": token, "client_id": post_rp[0].client_id, "client_secret": post_rp[1]})
    assert by_post.get_json()["client_id"] == rp[0].client_id


def test_client_credentials_access_token(app, client, rp):
    token = access_token(app, None, rp[0], scope="")
    body = introspect(client, rp, token).get_json()
    assert body["active"] is True and body["sub"] == rp[0].client_id and "sid" not in body


def test_active_refresh_token_for_its_own_client(app, client, user, rp):
    now = utcnow()
    token = refresh_token(app, user, rp[0], sid="session-2", now=now)
    body = introspect(client, rp, token, token_type_hint="refresh_token").get_json()
    with app.app_context():
        idle_end = now + timedelta(seconds=app.config["REFRESH_TOKEN_IDLE_TTL"])
    assert body == {
        "active": True,
        "token_type": "refresh_token",
        "iss": "http://localhost",
        "sub": user.subject,
        "client_id": rp[0].client_id,
        "scope": "openid profile email offline_access",
        "exp": int(idle_end.timestamp()),
        "iat": int(now.timestamp()),
        "sid": "session-2",
    }


def test_refresh_tokens_are_shown_only_to_their_client(app, client, user, rp, other_rp):
    token = refresh_token(app, user, rp[0])
    response = introspect(client, other_rp, token)
    assert response.status_code == 200 and response.get_json() == INACTIVE


def test_hint_does_not_hide_a_token(app, client, user, rp):
    access, refresh = access_token(app, user, rp[0]), refresh_token(app, user, rp[0])
    assert introspect(client, rp, access, token_type_hint="refresh_token").get_json()["token_type"] == "access_token"
    assert introspect(client, rp, refresh, token_type_hint="access_token").get_json()["token_type"] == "refresh_token"
    assert introspect(client, rp, refresh, token_type_hint="bogus").get_json()["active"] is True


def test_hostile_and_stale_access_tokens_are_exactly_inactive(app, client, user, rp, recorder):
    for name, token in hostile_tokens(app, user, rp[0], recorder.url).items():
        response = introspect(client, rp, token)
        assert response.status_code == 200, name
        assert response.get_json() == INACTIVE, name
    assert recorder.requests == []


def test_revoked_access_token_is_inactive_at_once(app, client, user, rp):
    token = access_token(app, user, rp[0])
    assert introspect(client, rp, token).get_json()["active"] is True
    assert client.post("/revoke", data={"token": token}, headers=basic(rp[0].client_id, rp[1])).status_code == 200
    assert introspect(client, rp, token).get_json() == INACTIVE


@pytest.mark.parametrize("state", ["rotated", "family revoked", "expired", "family expired", "version bumped", "user disabled"])
def test_dead_refresh_tokens_are_exactly_inactive(app, client, user, rp, state):
    from idp.tokens.refresh import find_family, revoke_family, rotate
    from idp.signout import disable_user
    from idp.users.service import bump_token_version

    now = utcnow()
    if state == "expired":
        token = refresh_token(app, user, rp[0], now=now - timedelta(seconds=app.config["REFRESH_TOKEN_IDLE_TTL"] + 1))
    elif state == "family expired":
        token = refresh_token(app, user, rp[0], now=now - timedelta(seconds=app.config["REFRESH_TOKEN_ABSOLUTE_TTL"] + 1))
    else:
        token = refresh_token(app, user, rp[0])
    with app.app_context():
        family = find_family(token)
        if state == "rotated":
            rotate(token, client=db.session.get(Client, family.client_id))
        elif state == "family revoked":
            revoke_family(family, reason="test", actor="test")
        elif state == "version bumped":
            bump_token_version(db.session.get(User, user.id), reason="test", actor="test")
        elif state == "user disabled":
            disable_user(db.session.get(User, user.id))
        db.session.commit()
    assert introspect(client, rp, token).get_json() == INACTIVE


def test_unknown_tokens_are_exactly_inactive(client, rp):
    for token in ("unknown", "idp_rt_" + "x" * 43, "a" * 50000, "\u00e9\u00e8", "a.b.c"):
        response = introspect(client, rp, token)
        assert response.status_code == 200 and response.get_json() == INACTIVE


@pytest.mark.parametrize("credentials", ["none", "wrong secret", "unknown client", "public client", "secret in the body of a basic client"])
def test_client_authentication_is_required(app, client, user, rp, public_rp, credentials):
    token = access_token(app, user, rp[0])
    registered, secret = rp
    data, headers = {"token": token}, {}
    if credentials == "wrong secret":
        headers = basic(registered.client_id, "idp_cs_wrong")
    elif credentials == "unknown client":
        headers = basic("nobody", secret)
    elif credentials == "public client":
        data["client_id"] = public_rp[0].client_id
    elif credentials == "secret in the body of a basic client":
        data.update(client_id=registered.client_id, client_secret=secret)
    response = client.post("/introspect", data=data, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert "active" not in response.get_json()
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("data", [{}, {"token": ""}, {"token": ["a", "b"]}])
def test_malformed_requests_are_invalid_request(client, rp, data):
    response = client.post("/introspect", data=data, headers=basic(rp[0].client_id, rp[1]))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_unknown_methods_are_405_json(client, method):
    response = client.open("/introspect", method=method)
    assert response.status_code == 405 and response.get_json()["error"] == "method_not_allowed"


def test_introspection_writes_nothing(app, client, user, rp):
    """Asking is not an event: a busy resource server must not fill the audit log or any table."""
    from idp.audit.models import AuditEvent

    token = access_token(app, user, rp[0])
    with app.app_context():
        before = db.session.scalar(db.select(db.func.count(AuditEvent.id)))
    introspect(client, rp, token)
    introspect(client, rp, "garbage")
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(AuditEvent.id))) == before
        assert db.session.scalar(db.select(db.func.count(RefreshFamily.id))) == 0


@pytest.mark.slow
def test_introspection_over_http_on_a_real_server(app, shared_server, user, rp, other_rp):
    base = shared_server(issuer="http://localhost")
    access, refresh = access_token(app, user, rp[0]), refresh_token(app, user, rp[0])
    resource_server = (other_rp[0].client_id, other_rp[1])
    active = requests.post(base + "/introspect", data={"token": access}, auth=resource_server, timeout=10)
    assert active.status_code == 200 and active.json()["sub"] == user.subject
    assert active.headers["Cache-Control"] == "no-store"
    assert requests.post(base + "/introspect", data={"token": refresh}, auth=resource_server, timeout=10).json() == INACTIVE
    own = requests.post(base + "/introspect", data={"token": refresh}, auth=(rp[0].client_id, rp[1]), timeout=10)
    assert own.json()["token_type"] == "refresh_token"
    assert requests.post(base + "/introspect", data={"token": access}, timeout=10).status_code == 401
