"""Discovery lists exactly what sign-in implements, and the endpoints it names answer."""

from urllib.parse import urlsplit


def test_sign_in_metadata(client):
    document = client.get("/.well-known/openid-configuration").get_json()
    assert document["authorization_endpoint"] == "http://localhost/authorize"
    assert document["token_endpoint"] == "http://localhost/token"
    assert document["response_types_supported"] == ["code"]
    assert document["response_modes_supported"] == ["query"]
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token", "client_credentials"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post", "none"]
    assert document["scopes_supported"] == ["openid", "profile", "email", "offline_access"]
    assert document["prompt_values_supported"] == ["none", "login", "consent"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["request_parameter_supported"] is False and document["request_uri_parameter_supported"] is False
    # Back-Channel Logout 1.0 section 2.1: logout tokens are sent, with `sid`.
    assert document["backchannel_logout_supported"] is True
    assert document["backchannel_logout_session_supported"] is True
    assert {"sub", "auth_time", "nonce", "acr", "amr", "at_hash", "sid"} <= set(document["claims_supported"])
    assert client.get("/.well-known/oauth-authorization-server").get_json() == document


def test_named_endpoints_exist(client):
    document = client.get("/.well-known/openid-configuration").get_json()
    assert client.get(urlsplit(document["authorization_endpoint"]).path).status_code == 400  # no client: an error page
    assert client.post(urlsplit(document["token_endpoint"]).path).status_code == 400  # no grant_type
