"""The authorization_code grant: single use, bound to client, redirect_uri and PKCE verifier."""

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from idp.clock import utcnow
from idp.db import db
from idp.models import AuditEvent, AuthorizationCode, RefreshFamily, RevokedAccessToken, UserSession
from idp.tokens.access import InvalidTokenError, verify_access_token
from tests.oidc.conftest import claims_of, header_of


def test_redemption_returns_bearer_access_token_and_id_token_uncached(oidc, rp, user, app):
    result = oidc.sign_in_and_authorize(rp, user.email)
    response = oidc.redeem(rp, result)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Pragma"] == "no-cache"
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "openid profile email"
    assert "refresh_token" not in body  # no offline_access, and confidential clients get none by default
    assert header_of(body["access_token"])["typ"] == "at+jwt"
    with app.test_request_context():
        claims = verify_access_token(body["access_token"])
    assert claims["sub"] == user.subject and claims["client_id"] == rp.client_id
    assert claims["scope"] == "openid profile email" and claims["ver"] == 1
    with app.app_context():
        assert claims["sid"] == db.session.scalar(select(UserSession.sid))
    assert claims_of(body["id_token"])["aud"] == rp.client_id


def test_offline_access_gives_a_refresh_token_not_bound_to_the_session(oidc, rp, user, app):
    body = oidc.tokens_for(rp, user.email, scope="openid offline_access")
    assert body["refresh_token"].startswith("idp_rt_")
    assert "sid" not in claims_of(body["access_token"])
    with app.app_context():
        family = db.session.scalar(select(RefreshFamily))
        assert family.offline and family.sid is None and family.scope == "openid offline_access"


def test_confidential_clients_may_get_session_bound_refresh_tokens_when_configured(oidc, rp, public_rp, user, app):
    app.config["REFRESH_TOKENS_FOR_CONFIDENTIAL_CLIENTS"] = True
    assert "refresh_token" in oidc.tokens_for(rp, user.email)
    with app.app_context():
        family = db.session.scalar(select(RefreshFamily))
        assert not family.offline and family.sid == db.session.scalar(select(UserSession.sid))
    assert "refresh_token" not in oidc.tokens_for(public_rp, user.email)


def test_a_client_without_the_refresh_grant_gets_no_refresh_token(oidc, register, user):
    no_refresh = register(grant_types=["authorization_code"])
    assert "refresh_token" not in oidc.tokens_for(no_refresh, user.email, scope="openid offline_access")


def test_a_second_redemption_fails_and_revokes_what_the_first_issued(oidc, rp, user, app):
    result = oidc.sign_in_and_authorize(rp, user.email, scope="openid offline_access")
    first = oidc.redeem(rp, result).get_json()
    second = oidc.redeem(rp, result)
    assert second.status_code == 400 and second.get_json()["error"] == "invalid_grant"
    with app.app_context():
        family = db.session.scalar(select(RefreshFamily))
        assert family.revoked_reason == "code_reuse"
        jti = claims_of(first["access_token"])["jti"]
        assert db.session.get(RevokedAccessToken, jti) is not None
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "authorization_code.reuse_detected")) is not None
    with app.test_request_context(), pytest.raises(InvalidTokenError):
        verify_access_token(first["access_token"])
    refreshed = oidc.token(rp, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refreshed.get_json()["error"] == "invalid_grant"


def test_an_expired_code_is_invalid_grant(oidc, rp, user, app):
    result = oidc.sign_in_and_authorize(rp, user.email)
    with app.app_context():
        db.session.execute(update(AuthorizationCode).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert oidc.redeem(rp, result).get_json()["error"] == "invalid_grant"


def test_an_expired_or_stolen_presentation_neither_spends_the_code_nor_counts_as_reuse(oidc, rp, register, user, app):
    result = oidc.sign_in_and_authorize(rp, user.email, scope="openid offline_access")
    assert oidc.redeem(register(name="Thief"), result).get_json()["error"] == "invalid_grant"
    with app.app_context():
        row = db.session.scalar(select(AuthorizationCode))
        assert row.used_at is None
        kept_expiry = row.expires_at
        db.session.execute(update(AuthorizationCode).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert oidc.redeem(rp, result).get_json()["error"] == "invalid_grant"
    with app.app_context():
        assert db.session.scalar(select(AuthorizationCode)).used_at is None
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "authorization_code.reuse_detected")) is None
        db.session.execute(update(AuthorizationCode).values(expires_at=kept_expiry))
        db.session.commit()
    first = oidc.redeem(rp, result)
    assert first.status_code == 200 and "refresh_token" in first.get_json()
    with app.app_context():
        assert db.session.scalar(select(RefreshFamily)).revoked_at is None


def test_codes_live_at_most_ten_minutes(oidc, rp, user, app):
    oidc.sign_in_and_authorize(rp, user.email)
    with app.app_context():
        row = db.session.scalar(select(AuthorizationCode))
        assert row.expires_at - row.created_at == timedelta(seconds=600)
        assert row.code_challenge_method == "S256" and len(row.code_digest) == 64


def test_the_code_is_bound_to_its_client(oidc, rp, register, user):
    result = oidc.sign_in_and_authorize(rp, user.email)
    thief = register(name="Thief")
    assert oidc.redeem(thief, result).get_json()["error"] == "invalid_grant"
    assert oidc.redeem(rp, result).status_code == 200  # the failed attempt did not spend it


def test_the_code_is_bound_to_its_redirect_uri(oidc, rp, user):
    result = oidc.sign_in_and_authorize(rp, user.email)
    assert oidc.redeem(rp, result, redirect_uri="http://127.0.0.1:9999/other").get_json()["error"] == "invalid_grant"
    assert oidc.redeem(rp, result, redirect_uri=None).get_json()["error"] == "invalid_grant"
    assert oidc.redeem(rp, result).status_code == 200


def test_the_code_is_bound_to_its_pkce_verifier(oidc, public_rp, user):
    result = oidc.sign_in_and_authorize(public_rp, user.email)
    assert oidc.redeem(public_rp, result, code_verifier=None).get_json()["error"] == "invalid_request"
    assert oidc.redeem(public_rp, result, code_verifier="w" * 43).get_json()["error"] == "invalid_grant"
    assert oidc.redeem(public_rp, result, code_verifier="short").get_json()["error"] == "invalid_request"
    assert oidc.redeem(public_rp, result).status_code == 200


def test_a_verifier_without_a_challenge_is_refused(oidc, register, user):
    relaxed = register(require_pkce=False)
    result = oidc.sign_in_and_authorize(relaxed, user.email, code_challenge=None, code_challenge_method=None)
    assert oidc.redeem(relaxed, result, code_verifier="v" * 43).get_json()["error"] == "invalid_request"


def test_missing_or_unknown_code(oidc, rp):
    assert oidc.token(rp, grant_type="authorization_code", redirect_uri=rp.redirect_uri).get_json()["error"] == "invalid_request"
    for code in ("nope", "x" * 5000):
        response = oidc.token(rp, grant_type="authorization_code", code=code, redirect_uri=rp.redirect_uri, code_verifier="v" * 43)
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    # A NUL byte is refused by the input guard before any grant runs: a malformed request (RFC 6749 5.2).
    response = oidc.token(rp, grant_type="authorization_code", code="\x00", redirect_uri=rp.redirect_uri, code_verifier="v" * 43)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_a_user_disabled_after_the_code_was_issued_gets_nothing(oidc, rp, user, app):
    from idp.signout import disable_user
    from idp.users.service import require_user

    result = oidc.sign_in_and_authorize(rp, user.email)
    with app.app_context():
        disable_user(require_user(user.email))
    assert oidc.redeem(rp, result).get_json()["error"] == "invalid_grant"


def test_a_code_dies_with_the_session_it_came_from(oidc, rp, user, app):
    result = oidc.sign_in_and_authorize(rp, user.email)
    with app.app_context():
        db.session.execute(UserSession.__table__.delete())
        db.session.commit()
    assert oidc.redeem(rp, result).get_json()["error"] == "invalid_grant"


def test_public_client_authenticates_with_none(oidc, public_rp, user):
    result = oidc.sign_in_and_authorize(public_rp, user.email)
    response = oidc.token(public_rp, auth="none", grant_type="authorization_code", code=result.code, redirect_uri=public_rp.redirect_uri, code_verifier=result.verifier)
    assert response.status_code == 200


def test_confidential_client_must_authenticate(oidc, rp, user):
    result = oidc.sign_in_and_authorize(rp, user.email)
    response = oidc.token(rp, auth="none", grant_type="authorization_code", code=result.code, redirect_uri=rp.redirect_uri, code_verifier=result.verifier)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    assert oidc.redeem(rp, result).status_code == 200


def test_client_secret_post_client(oidc, register, user):
    poster = register(token_endpoint_auth_method="client_secret_post")
    result = oidc.sign_in_and_authorize(poster, user.email)
    form = dict(grant_type="authorization_code", code=result.code, redirect_uri=poster.redirect_uri, code_verifier=result.verifier)
    # Its registered method only: Basic is refused.
    assert oidc.token(poster, auth="basic", **form).get_json()["error"] == "invalid_client"
    assert oidc.token(poster, auth="post", **form).status_code == 200
