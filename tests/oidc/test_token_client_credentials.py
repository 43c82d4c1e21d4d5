"""The client_credentials grant: the client acts for itself, within its registered scopes."""

import pytest

from idp.tokens.access import verify_access_token
from tests.oidc.conftest import claims_of


@pytest.fixture
def machine(register):
    """A confidential client registered for client_credentials only."""
    return register(name="Machine", grant_types=["client_credentials"], redirect_uris=[], scope="profile email")


def test_issues_an_access_token_for_the_client_only(oidc, machine, app):
    response = oidc.token(machine, grant_type="client_credentials", scope="email")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    with app.test_request_context():
        claims = verify_access_token(body["access_token"])
    assert claims["sub"] == machine.client_id and claims["client_id"] == machine.client_id
    assert claims["scope"] == "email" and "ver" not in claims and "sid" not in claims


def test_without_scope_the_token_carries_none(oidc, machine):
    body = oidc.token(machine, grant_type="client_credentials").get_json()
    assert "scope" not in body and claims_of(body["access_token"])["scope"] == ""


def test_client_secret_post_works(oidc, register):
    poster = register(grant_types=["client_credentials"], redirect_uris=[], token_endpoint_auth_method="client_secret_post")
    assert oidc.token(poster, auth="post", grant_type="client_credentials").status_code == 200


@pytest.mark.parametrize("scope", ["openid", "offline_access", "profile openid", "admin", "email address"])
def test_scope_is_limited_to_what_the_client_registered(oidc, register, scope):
    narrow = register(grant_types=["client_credentials"], redirect_uris=[], scope="openid email offline_access")
    response = oidc.token(narrow, grant_type="client_credentials", scope=scope)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_scope"


def test_public_clients_cannot_use_it(oidc, public_rp):
    response = oidc.token(public_rp, auth="none", grant_type="client_credentials")
    assert response.status_code in (400, 401) and response.get_json()["error"] in ("invalid_client", "unauthorized_client")


def test_a_client_without_the_grant_is_unauthorized(oidc, rp):
    assert oidc.token(rp, grant_type="client_credentials").get_json()["error"] == "unauthorized_client"
