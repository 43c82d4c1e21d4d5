"""The token endpoint itself: client authentication, RFC 6749 5.2 errors, hostile input, no-store."""

import base64

import pytest

from tests.oidc.conftest import basic


def assert_oauth_error(response, error, status=400):
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_only_post(client, method):
    response = client.open("/token", method=method)
    assert response.status_code == 405 and response.mimetype == "application/json"
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("grant_type", [None, "password", "implicit", "urn:ietf:params:oauth:grant-type:device_code", '"><x>'])
def test_unsupported_grant_types(oidc, rp, grant_type):
    form = {"grant_type": grant_type} if grant_type else {}
    assert_oauth_error(oidc.token(rp, **form), "unsupported_grant_type")


def test_wrong_secret_is_401_with_www_authenticate(oidc, rp):
    response = oidc.client.post("/token", data={"grant_type": "client_credentials"}, headers={"Authorization": basic(rp.client_id, "wrong")})
    assert_oauth_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_unknown_client_in_basic_is_401(oidc):
    response = oidc.client.post("/token", data={"grant_type": "client_credentials"}, headers={"Authorization": basic("nobody", "secret")})
    assert_oauth_error(response, "invalid_client", 401)
    assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\x00:\x00").decode(),
        "Bearer something",
        "Basic " + "A" * 10000,
        "Basic \xc3\xa9",  # "é" in UTF-8, as a server hands non-ASCII header bytes over (latin-1)
    ],
)
def test_malformed_basic_credentials_are_invalid_client_not_500(oidc, header):
    response = oidc.client.post("/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header})
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"


def test_repeated_parameters_are_invalid_request(oidc, rp):
    response = oidc.client.post(
        "/token", data={"grant_type": ["client_credentials", "client_credentials"]}, headers={"Authorization": basic(rp.client_id, rp.secret)}
    )
    assert_oauth_error(response, "invalid_request")
    response = oidc.client.post("/token?grant_type=client_credentials", data={"grant_type": "client_credentials"}, headers={"Authorization": basic(rp.client_id, rp.secret)})
    assert_oauth_error(response, "invalid_request")


def test_json_body_is_not_understood_but_answered(oidc, rp):
    response = oidc.client.post("/token", json={"grant_type": "client_credentials"}, headers={"Authorization": basic(rp.client_id, rp.secret)})
    assert_oauth_error(response, "unsupported_grant_type")


def test_oversized_body_is_refused(oidc, rp):
    response = oidc.client.post("/token", data={"grant_type": "client_credentials", "junk": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413 and response.mimetype == "application/json"


def test_a_grant_the_client_did_not_register_is_unauthorized_client(oidc, rp):
    assert_oauth_error(oidc.token(rp, grant_type="client_credentials"), "unauthorized_client")


def test_error_descriptions_are_json_and_uncached(oidc, rp):
    body = assert_oauth_error(oidc.token(rp, grant_type="refresh_token"), "invalid_request")
    assert set(body) <= {"error", "error_description", "error_uri"}
