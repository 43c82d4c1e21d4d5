"""The refresh_token grant: rotation, reuse detection, scope narrowing, session binding."""

import pytest
from sqlalchemy import select

from idp.db import db
from idp.models import AuditEvent, RefreshFamily, RevokedAccessToken, User, UserSession
from tests.oidc.conftest import basic, claims_of


def refresh(oidc, registered, token, **form):
    return oidc.token(registered, auth="basic" if registered.secret else "none", grant_type="refresh_token", refresh_token=token, **form)


@pytest.fixture
def offline(oidc, rp, user):
    """Tokens of an offline_access grant."""
    return oidc.tokens_for(rp, user.email, scope="openid profile email offline_access")


@pytest.fixture
def other(oidc, rp, make_user):
    """Tokens of another user's grant to the same client."""
    return oidc.tokens_for(rp, make_user(email="other@example.com").email, scope="openid offline_access")


def family(app) -> RefreshFamily:
    with app.app_context():
        return db.session.scalar(select(RefreshFamily))


def test_every_refresh_rotates(oidc, rp, offline):
    first = refresh(oidc, rp, offline["refresh_token"])
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    body = first.get_json()
    assert body["refresh_token"] != offline["refresh_token"] and body["access_token"] != offline["access_token"]
    assert refresh(oidc, rp, body["refresh_token"]).status_code == 200


def test_reusing_a_rotated_token_revokes_the_family(oidc, rp, offline, app):
    successor = refresh(oidc, rp, offline["refresh_token"]).get_json()["refresh_token"]
    replay = refresh(oidc, rp, offline["refresh_token"])
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    assert refresh(oidc, rp, successor).get_json()["error"] == "invalid_grant"
    assert family(app).revoked_reason == "reuse"
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "refresh_token.reuse_detected")) is not None


def test_within_the_reuse_grace_a_relying_party_that_lost_the_successor_refreshes_again(oidc, rp, offline, app, client):
    app.config["REFRESH_TOKEN_REUSE_GRACE"] = 60
    lost = refresh(oidc, rp, offline["refresh_token"]).get_json()
    again = refresh(oidc, rp, offline["refresh_token"])
    assert again.status_code == 200
    body = again.get_json()
    assert body["refresh_token"] not in (lost["refresh_token"], offline["refresh_token"])
    assert userinfo_status(client, body["access_token"]) == 200
    assert refresh(oidc, rp, body["refresh_token"]).status_code == 200
    assert family(app).revoked_at is None
    # The family moved on: the first token, and the successor it superseded, are replays now.
    assert refresh(oidc, rp, offline["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert family(app).revoked_reason == "reuse"


def test_the_refreshed_id_token_keeps_sub_auth_time_acr_and_amr(oidc, rp, offline):
    original = claims_of(offline["id_token"])
    body = refresh(oidc, rp, offline["refresh_token"]).get_json()
    renewed = claims_of(body["id_token"])
    assert renewed["sub"] == original["sub"] and renewed["auth_time"] == original["auth_time"]
    # How the user signed in is a fact of the original authentication (OIDC Core 12.2).
    assert (original["acr"], original["amr"]) == ("1", ["pwd"])
    assert (renewed.get("acr"), renewed.get("amr")) == (original["acr"], original["amr"])
    again = claims_of(refresh(oidc, rp, body["refresh_token"]).get_json()["id_token"])
    assert (again.get("acr"), again.get("amr")) == (original["acr"], original["amr"])
    assert renewed["aud"] == rp.client_id and "nonce" not in renewed
    assert renewed["at_hash"] != original["at_hash"]
    assert claims_of(body["access_token"])["auth_time"] == original["auth_time"]


def userinfo_status(client, access_token: str) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def introspected_active(client, registered, token: str) -> bool:
    response = client.post("/introspect", data={"token": token}, headers={"Authorization": basic(registered.client_id, registered.secret)})
    return response.get_json()["active"]


def test_a_detected_reuse_also_cuts_off_every_access_token_of_the_family(oidc, rp, offline, client, app):
    """RFC 9700 4.14.2: whoever replayed the token holds an access token too; introspection and userinfo refuse it at once."""
    renewed = refresh(oidc, rp, offline["refresh_token"]).get_json()
    issued = [offline["access_token"], renewed["access_token"]]
    assert [userinfo_status(client, token) for token in issued] == [200, 200]
    assert refresh(oidc, rp, offline["refresh_token"]).get_json()["error"] == "invalid_grant"  # the replay
    assert [userinfo_status(client, token) for token in issued] == [401, 401]
    assert [introspected_active(client, rp, token) for token in issued] == [False, False]
    with app.app_context():
        denied = set(db.session.scalars(select(RevokedAccessToken.jti)))
    assert denied == {claims_of(token)["jti"] for token in issued}


def test_revoking_a_refresh_token_revokes_the_access_tokens_of_its_grant(oidc, rp, offline, other, client):
    """RFC 7009 2.1: the family's access tokens go with it; another grant's tokens are untouched."""
    renewed = refresh(oidc, rp, offline["refresh_token"]).get_json()
    response = client.post("/revoke", data={"token": renewed["refresh_token"]}, headers={"Authorization": basic(rp.client_id, rp.secret)})
    assert response.status_code == 200
    assert [introspected_active(client, rp, token) for token in (offline["access_token"], renewed["access_token"])] == [False, False]
    assert introspected_active(client, rp, other["access_token"]) and userinfo_status(client, other["access_token"]) == 200


def test_a_replayed_code_revokes_the_access_tokens_its_refresh_token_went_on_to_issue(oidc, rp, user, client):
    authorization = oidc.sign_in_and_authorize(rp, user.email, scope="openid offline_access")
    first = oidc.redeem(rp, authorization).get_json()
    renewed = refresh(oidc, rp, first["refresh_token"]).get_json()
    assert oidc.redeem(rp, authorization).get_json()["error"] == "invalid_grant"
    assert [userinfo_status(client, token) for token in (first["access_token"], renewed["access_token"])] == [401, 401]


def test_scope_may_narrow(oidc, rp, offline, app):
    body = refresh(oidc, rp, offline["refresh_token"], scope="email offline_access").get_json()
    assert body["scope"] == "email offline_access"
    assert claims_of(body["access_token"])["scope"] == "email offline_access"
    assert "id_token" not in body  # no openid, no ID token
    # The family keeps what was granted: a later refresh may ask for all of it again.
    assert family(app).scope == "openid profile email offline_access"
    again = refresh(oidc, rp, body["refresh_token"]).get_json()
    assert again["scope"] == "openid profile email offline_access" and "id_token" in again


def test_scope_may_not_widen_and_the_token_is_not_spent(oidc, register, user):
    narrow = register(scope="openid email offline_access profile")
    tokens = oidc.tokens_for(narrow, user.email, scope="openid offline_access")
    for wider in ("openid offline_access email", "admin"):
        assert refresh(oidc, narrow, tokens["refresh_token"], scope=wider).get_json()["error"] == "invalid_scope"
    assert refresh(oidc, narrow, tokens["refresh_token"]).status_code == 200


def test_bound_to_its_client_and_not_spent_by_another(oidc, rp, register, offline):
    thief = register(name="Thief")
    assert refresh(oidc, thief, offline["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert refresh(oidc, rp, offline["refresh_token"]).status_code == 200


def test_public_client_refreshes_without_a_secret(oidc, public_rp, user):
    tokens = oidc.tokens_for(public_rp, user.email, scope="openid offline_access")
    assert refresh(oidc, public_rp, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize("value", ["nope", "idp_rt_" + "A" * 43, "x" * 5000])
def test_unknown_or_malformed_tokens_are_invalid_grant(oidc, rp, value):
    response = refresh(oidc, rp, value)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


def test_a_token_with_a_nul_byte_is_a_malformed_request(oidc, rp):
    # The input guard refuses text no database can store before any grant runs (RFC 6749 5.2).
    response = refresh(oidc, rp, "\x00")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_missing_token_is_invalid_request(oidc, rp):
    assert oidc.token(rp, grant_type="refresh_token").get_json()["error"] == "invalid_request"


def test_offline_grant_survives_sign_out(oidc, rp, offline, app):
    from idp.sessions.service import end_all_for_user

    with app.app_context():
        end_all_for_user(db.session.scalar(select(User.id)), reason="logout", actor="test")
        db.session.commit()
    assert refresh(oidc, rp, offline["refresh_token"]).status_code == 200


def test_session_bound_grant_ends_with_the_session(oidc, rp, user, app):
    from idp.sessions.service import end_all_for_user

    app.config["REFRESH_TOKENS_FOR_CONFIDENTIAL_CLIENTS"] = True
    tokens = oidc.tokens_for(rp, user.email)
    with app.app_context():
        end_all_for_user(user.id, reason="logout", actor="test")
        db.session.commit()
    assert family(app).revoked_reason == "session_ended"
    assert refresh(oidc, rp, tokens["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_session_bound_grant_ends_with_a_session_that_vanished_unseen(oidc, rp, user, app):
    app.config["REFRESH_TOKENS_FOR_CONFIDENTIAL_CLIENTS"] = True
    tokens = oidc.tokens_for(rp, user.email)
    with app.app_context():  # a purge deletes rows without signalling
        db.session.execute(UserSession.__table__.delete())
        db.session.commit()
    assert refresh(oidc, rp, tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert family(app).revoked_reason == "session_ended"


def test_a_token_version_bump_ends_the_grant(oidc, rp, offline, app):
    from idp.users.service import bump_token_version

    with app.app_context():
        bump_token_version(db.session.scalar(select(User)), reason="password_changed", actor="test")
        db.session.commit()
    assert refresh(oidc, rp, offline["refresh_token"]).get_json()["error"] == "invalid_grant"
