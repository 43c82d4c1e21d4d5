"""Discovery advertises the resource-facing endpoints, and the endpoints are where it says."""

from __future__ import annotations

from urllib.parse import urlsplit


def test_discovery_lists_the_resource_endpoints(client):
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        document = client.get(path).get_json()
        assert document["userinfo_endpoint"] == "http://localhost/userinfo"
        assert document["revocation_endpoint"] == "http://localhost/revoke"
        assert document["revocation_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post", "none"]
        assert document["introspection_endpoint"] == "http://localhost/introspect"
        assert document["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
        assert document["end_session_endpoint"] == "http://localhost/logout"
        # Every claim userinfo can release is advertised (ID token claims may be listed too).
        assert set(document["claims_supported"]) >= {"sub", "name", "preferred_username", "updated_at", "email", "email_verified"}


def test_every_advertised_endpoint_is_routed(client):
    """Nothing advertised answers 404: each is mounted at the path discovery names."""
    document = client.get("/.well-known/openid-configuration").get_json()
    for member in ("userinfo_endpoint", "revocation_endpoint", "introspection_endpoint", "end_session_endpoint"):
        path = urlsplit(document[member]).path
        assert client.post(path).status_code != 404, member


def test_endpoints_follow_the_configured_issuer(config, key_rows):
    from idp import create_app

    app = create_app({**config, "ISSUER": "https://idp.example.com"})
    document = app.test_client().get("/.well-known/openid-configuration", base_url="https://idp.example.com").get_json()
    assert document["userinfo_endpoint"] == "https://idp.example.com/userinfo"
    assert document["end_session_endpoint"] == "https://idp.example.com/logout"
