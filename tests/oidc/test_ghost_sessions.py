"""Issue 4's promise: after any token-version trigger, every old credential fails at its next use.

Each trigger is followed by every way an old credential could still be used: refresh (offline and
session-bound), introspection, userinfo, the SSO cookie, and the admin cookie. Then the same over
HTTP across two real `idp serve` replicas on one database.
"""

import pytest
import requests
from sqlalchemy import select

from idp import signout
from idp.db import db
from idp.models import User, UserSession
from idp.sessions.service import new_row
from tests.oidc.conftest import PASSWORD, basic
from tests.oidc.flow import csrf_token, sign_in

TRIGGERS = {
    "sign_out_everywhere": lambda user: signout.sign_out_everywhere(user, actor="test"),
    "set_password": lambda user: signout.set_password(user, "a brand new password", actor="test"),
    "disable": lambda user: signout.disable_user(user, actor="test"),
    "revoke_admin": lambda user: signout.set_admin(user, False, actor="test"),
    "delete": lambda user: signout.delete_user(user, actor="test"),
}


def use_everything(client, rp, tokens: dict, bound: dict) -> dict:
    """Try every credential once; what each answered."""
    auth = {"Authorization": basic(rp.client_id, rp.secret)}
    return {
        "refresh_offline": client.post("/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, headers=auth).status_code,
        "refresh_bound": client.post("/token", data={"grant_type": "refresh_token", "refresh_token": bound["refresh_token"]}, headers=auth).status_code,
        "introspection": client.post("/introspect", data={"token": tokens["access_token"]}, headers=auth).get_json(),
        "userinfo": client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code,
        "sso_cookie": client.get("/account").status_code,
        "admin_cookie": client.get("/admin/").status_code,
    }


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_every_old_credential_is_refused_at_its_next_use(app, client, oidc, rp, user, trigger):
    app.config["REFRESH_TOKENS_FOR_CONFIDENTIAL_CLIENTS"] = True
    tokens = oidc.tokens_for(rp, user.email, scope="openid profile offline_access")
    bound = oidc.tokens_for(rp, user.email, scope="openid profile")  # same browser: session-bound grant
    with app.app_context():
        db.session.get(User, user.id).is_admin = True
        db.session.commit()
        admin_cookie, _ = new_row(app, "admin", db.session.get(User, user.id))
        db.session.commit()
    client.set_cookie("idp_admin", admin_cookie)
    assert client.get("/account").status_code == 200
    assert client.get("/admin/").status_code == 200

    with app.app_context():
        TRIGGERS[trigger](db.session.get(User, user.id))

    answers = use_everything(client, rp, tokens, bound)
    assert answers == {
        "refresh_offline": 400,
        "refresh_bound": 400,
        "introspection": {"active": False},
        "userinfo": 401,
        "sso_cookie": 302,
        "admin_cookie": 303,  # See Other: to the admin sign-in page
    }
    with app.app_context():
        assert db.session.scalar(select(UserSession).where(UserSession.kind == "admin")) is None


@pytest.mark.slow
def test_sign_out_everywhere_through_one_replica_is_in_force_on_the_other(start_server, make_user, make_client):
    first, second = start_server.replicas(2)  # two replicas of one deployment, one database
    user = make_user(email="rep@example.com")
    rp, secret = make_client(redirect_uris=["http://127.0.0.1:8765/callback"])
    signed = sign_in(first, client_id=rp.client_id, client_secret=secret, redirect_uri="http://127.0.0.1:8765/callback", email=user.email, password=PASSWORD)
    browser, tokens = signed.browser, signed.tokens
    auth = (rp.client_id, secret)
    assert requests.post(second + "/introspect", data={"token": tokens["access_token"]}, auth=auth, timeout=10).json()["active"] is True
    assert browser.get(second + "/account", allow_redirects=False, timeout=10).status_code == 200

    page = browser.get(first + "/account", timeout=10)
    assert browser.post(first + "/account/sign-out-everywhere", data={"csrf_token": csrf_token(page.text)}, timeout=10).status_code == 200

    # The very next request to the other replica already refuses everything.
    assert requests.post(second + "/introspect", data={"token": tokens["access_token"]}, auth=auth, timeout=10).json() == {"active": False}
    assert requests.get(second + "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10).status_code == 401
    refreshed = requests.post(second + "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth, timeout=10)
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert browser.get(second + "/account", allow_redirects=False, timeout=10).status_code == 302
