"""UserInfo (OpenID Connect Core 5.3): claims per scope, RFC 6750 token transport and errors, and
every hostile token refused without any outbound fetch."""

from __future__ import annotations

import pytest
import requests

from idp.db import db
from idp.models import User
from tests.oidc.resource_support import (  # noqa: F401 (fixtures)
    access_token,
    bearer,
    hostile_tokens,
    recorder,
    rp,
    user,
)


def test_openid_scope_gives_only_sub(app, client, user, rp):
    response = client.get("/userinfo", headers=bearer(access_token(app, user, rp[0], scope="openid")))
    assert response.status_code == 200
    assert response.get_json() == {"sub": user.subject}
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "application/json"


def test_profile_and_email_scopes_add_their_claims(app, client, user, rp):
    response = client.get("/userinfo", headers=bearer(access_token(app, user, rp[0], scope="openid profile email")))
    claims = response.get_json()
    assert response.status_code == 200
    assert claims.pop("updated_at") > 0
    assert claims == {
        "sub": user.subject,
        "name": "Ada Lovelace",
        "preferred_username": "ada@example.com",
        "email": "ada@example.com",
        "email_verified": False,
    }


def test_email_scope_alone_has_no_profile_claims(app, client, user, rp):
    claims = client.get("/userinfo", headers=bearer(access_token(app, user, rp[0], scope="openid email"))).get_json()
    assert claims == {"sub": user.subject, "email": "ada@example.com", "email_verified": False}


def test_a_claim_without_a_value_is_omitted(app, client, make_user, rp):
    nameless = make_user(email="nameless@example.com")
    claims = client.get("/userinfo", headers=bearer(access_token(app, nameless, rp[0], scope="openid profile"))).get_json()
    assert "name" not in claims and claims["preferred_username"] == "nameless@example.com"


def test_claims_are_read_at_request_time(app, client, user, rp):
    token = access_token(app, user, rp[0], scope="openid profile")
    with app.app_context():
        db.session.get(User, user.id).name = "Ada King"
        db.session.commit()
    assert client.get("/userinfo", headers=bearer(token)).get_json()["name"] == "Ada King"


def test_post_with_bearer_header(app, client, user, rp):
    response = client.post("/userinfo", headers=bearer(access_token(app, user, rp[0])))
    assert response.status_code == 200 and response.get_json()["sub"] == user.subject


def test_post_with_form_encoded_body_token(app, client, user, rp):
    """RFC 6750 2.2: the token may come as `access_token` in a form-encoded POST body."""
    response = client.post("/userinfo", data={"access_token": access_token(app, user, rp[0])})
    assert response.status_code == 200 and response.get_json()["sub"] == user.subject


def test_body_token_needs_form_encoding_and_post(app, client, user, rp):
    token = access_token(app, user, rp[0])
    as_json = client.post("/userinfo", json={"access_token": token})
    assert as_json.status_code == 401 and as_json.headers["WWW-Authenticate"] == "Bearer"
    # No endpoint takes multipart bodies (idp.input_guard): refused before the token is looked for.
    multipart = client.post("/userinfo", data={"access_token": token}, content_type="multipart/form-data")
    assert multipart.status_code == 400 and multipart.get_json()["error"] == "invalid_request"


def test_query_string_token_is_refused(app, client, user, rp):
    """RFC 6750 2.3 is allowed but discouraged (URLs are logged): we refuse it."""
    token = access_token(app, user, rp[0])
    for response in (client.get(f"/userinfo?access_token={token}"), client.post(f"/userinfo?access_token={token}")):
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_request"
        assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_request"')


def test_token_sent_twice_is_invalid_request(app, client, user, rp):
    token = access_token(app, user, rp[0])
    both = client.post("/userinfo", headers=bearer(token), data={"access_token": token})
    twice = client.post("/userinfo", data={"access_token": [token, token]})
    for response in (both, twice):
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_missing_token_gets_a_bare_challenge(client):
    """RFC 6750 3.1: no credentials -> 401 with `WWW-Authenticate: Bearer` and no error code."""
    for response in (client.get("/userinfo"), client.post("/userinfo"), client.get("/userinfo", headers={"Authorization": "Basic YTpi"})):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "error" not in (response.get_json() or {})


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer    ", "bearer x y z", "Bearer \u00e9"])
def test_malformed_bearer_header_is_invalid_token(client, header):
    response = client.get("/userinfo", headers={"Authorization": header})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_token_without_openid_scope_is_insufficient_scope(app, client, user, rp):
    response = client.get("/userinfo", headers=bearer(access_token(app, user, rp[0], scope="profile email")))
    assert response.status_code == 403
    assert response.get_json()["error"] == "insufficient_scope"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", scope="openid"'


def test_client_credentials_token_is_not_a_user(app, client, rp):
    """A token a client obtained for itself (no user, no token version) has nobody to describe."""
    response = client.get("/userinfo", headers=bearer(access_token(app, None, rp[0], scope="openid")))
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"


def test_token_of_a_deleted_client_is_refused(app, client, user, rp):
    from idp.models import Client

    token = access_token(app, user, rp[0])
    with app.app_context():
        db.session.delete(db.session.get(Client, rp[0].id))
        db.session.commit()
    assert client.get("/userinfo", headers=bearer(token)).status_code == 401


def test_hostile_and_stale_tokens_are_refused_without_fetching(app, client, user, rp, recorder):
    tokens = hostile_tokens(app, user, rp[0], recorder.url)
    for name, token in tokens.items():
        for response in (client.get("/userinfo", headers=bearer(token)), client.post("/userinfo", data={"access_token": token})):
            assert response.status_code == 401, name
            assert response.get_json()["error"] == "invalid_token", name
            assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"'), name
            assert response.headers["Cache-Control"] == "no-store"
    assert recorder.requests == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_unknown_methods_are_405_json(client, method):
    response = client.open("/userinfo", method=method)
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_oversized_body_is_413_not_500(client):
    response = client.post("/userinfo", data={"access_token": "a" * (2 * 1024 * 1024)})
    assert response.status_code == 413


@pytest.mark.slow
def test_userinfo_over_http_on_a_real_server(app, shared_server, user, rp, recorder):
    """Through `idp serve`: a good token works, and hostile ones are refused with nothing fetched."""
    base = shared_server(issuer="http://localhost")
    good = access_token(app, user, rp[0], scope="openid email")
    response = requests.get(base + "/userinfo", headers=bearer(good), timeout=10)
    assert response.status_code == 200
    assert response.json() == {"sub": user.subject, "email": "ada@example.com", "email_verified": False}
    for name, token in hostile_tokens(app, user, rp[0], recorder.url).items():
        # gunicorn itself turns away a header over 8 KiB (431); the body has no such limit.
        for refused in (requests.post(base + "/userinfo", data={"access_token": token}, timeout=10),) + (
            (requests.get(base + "/userinfo", headers=bearer(token), timeout=10),) if len(token) < 8000 else ()
        ):
            assert refused.status_code == 401, name
            assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"], name
    assert recorder.requests == []


EXPECTED_REASONS = {
    "alg none": "unacceptable algorithm",
    "HS256 signed with the public key": "unacceptable algorithm",
    "unknown kid": "unknown key",
    "our kid, foreign key": "bad signature",
    "jku header": "unacceptable header",
    "x5u header": "unacceptable header",
    "jwk header": "unacceptable header",
    "x5c header": "unacceptable header",
    "ID token": "not an access token",
    "expired": "expired",
    "not yet valid": "not yet valid",
    "wrong issuer": "wrong issuer",
    "wrong audience": "wrong audience",
    "tampered payload": "bad signature",
    "garbage": "malformed token",
    "three dots of garbage": "malformed token",
    "oversized": "malformed token",
    "revoked": "revoked",
    "older token version": "outdated",
    "disabled user": "outdated",
}


def test_each_hostile_token_is_refused_for_its_own_reason(app, user, rp, recorder):
    """Each case above fails for the reason it stands for, not by accident of another defect."""
    from idp.tokens.access import InvalidTokenError, verify_access_token

    tokens = hostile_tokens(app, user, rp[0], recorder.url)
    assert set(tokens) == set(EXPECTED_REASONS)
    with app.app_context():
        for name, token in tokens.items():
            with pytest.raises(InvalidTokenError) as refused:
                verify_access_token(token)
            assert str(refused.value) == EXPECTED_REASONS[name], name
