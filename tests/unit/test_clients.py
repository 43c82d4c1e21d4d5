"""Client registration: redirect URI rules, grants, scopes, secrets."""

import pytest
from sqlalchemy import func, select

from idp.clients import service
from idp.db import db
from idp.errors import ValidationError
from idp.models import Client
from idp.security import digest


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.example.com/callback",
        "https://rp.example.com/cb?tenant=a",
        "http://127.0.0.1:8080/cb",
        "http://localhost/cb",
        "http://[::1]:3000/cb",
        "com.example.app:/oauth2redirect",
    ],
)
def test_acceptable_redirect_uris(uri):
    assert service.validate_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("/callback", "must be absolute"),
        ("rp.example.com/callback", "must be absolute"),
        ("https://rp.example.com/cb#frag", "fragment"),
        ("http://rp.example.com/cb", "non-loopback"),
        ("javascript:alert(1)", "reverse-domain"),
        ("https:///nohost", "no host"),
    ],
)
def test_refused_redirect_uris(uri, reason):
    with pytest.raises(ValidationError, match=reason):
        service.validate_redirect_uri(uri)


def test_confidential_client_secret_is_shown_once_and_stored_as_digest(app_ctx):
    client, secret = service.create_client("RP", redirect_uris=["https://rp.example.com/cb"])
    assert secret.startswith("idp_cs_") and len(secret) >= 7 + 43
    assert client.secret_digest == digest(secret)
    stored = db.session.scalar(select(Client))
    assert secret not in repr(stored.__dict__)
    assert service.verify_client_secret(stored, secret)
    assert not service.verify_client_secret(stored, secret + "x")
    assert not service.verify_client_secret(stored, None)
    assert client.token_endpoint_auth_method == "client_secret_basic"


def test_public_client_has_no_secret_and_requires_pkce(app_ctx):
    client, secret = service.create_client("SPA", redirect_uris=["https://spa.example.com/cb"], public=True)
    assert secret is None and client.secret_digest is None
    assert client.token_endpoint_auth_method == "none" and client.require_pkce
    with pytest.raises(ValidationError, match="PKCE"):
        service.create_client("SPA2", redirect_uris=["https://spa.example.com/cb"], public=True, require_pkce=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grant_types": ["password"]}, "unknown grant type 'password'"),
        ({"grant_types": ["implicit"]}, "unknown grant type"),
        ({"public": True, "grant_types": ["client_credentials"]}, "public client cannot use client_credentials"),
        ({"redirect_uris": []}, "needs at least one redirect URI"),
        ({"scope": "openid admin"}, "unknown scope 'admin'"),
        ({"post_logout_redirect_uris": ["http://evil.example.com/"]}, "non-loopback"),
        ({"backchannel_logout_uri": "com.example.app:/logout"}, "must be an https URL"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "unknown token endpoint auth method"),
        ({"token_endpoint_auth_method": "none"}, "public clients authenticate with 'none'"),
    ],
)
def test_bad_registrations_are_refused_and_nothing_written(app_ctx, kwargs, message):
    kwargs.setdefault("redirect_uris", ["https://rp.example.com/cb"])
    with pytest.raises(ValidationError, match=message):
        service.create_client("RP", **kwargs)
    assert db.session.scalar(select(func.count()).select_from(Client)) == 0


def test_client_credentials_only_client_needs_no_redirect_uri(app_ctx):
    client, secret = service.create_client("API", grant_types=["client_credentials"], scope="")
    assert client.redirect_uris == [] and secret


def test_rotate_secret_invalidates_old_one(app_ctx):
    client, old = service.create_client("RP", redirect_uris=["https://rp.example.com/cb"])
    new = service.rotate_client_secret(client)
    assert service.verify_client_secret(client, new) and not service.verify_client_secret(client, old)


REFUSED_BACKCHANNEL_URIS = [
    ("http://rp.example.com/bc", "use https"),
    ("http://127.0.0.1:9000/bc", "must use https"),
    ("https://127.0.0.1:9000/bc", "must not be a loopback address"),
    ("https://localhost/bc", "must not be a loopback address"),
    ("https://[::1]/bc", "must not be a loopback address"),
    ("https://admin.localhost/bc", "must not be a loopback address"),
]


def test_backchannel_logout_uri_on_a_production_issuer_is_https_and_not_loopback(app, make_app):
    production = make_app(ISSUER="https://idp.example.com")  # `app` cleans the database afterwards
    with production.app_context():
        client, _ = service.create_client("RP", redirect_uris=["https://rp.example.com/cb"], backchannel_logout_uri="https://rp.example.com/bc")
        db.session.commit()  # registered by one request; each refusal below rolls back only itself
        for uri, message in REFUSED_BACKCHANNEL_URIS:
            with pytest.raises(ValidationError, match=message):
                service.create_client("RP", redirect_uris=["https://rp.example.com/cb"], backchannel_logout_uri=uri)
            with pytest.raises(ValidationError, match=message):
                service.update_client(client, actor="test", backchannel_logout_uri=uri)
            db.session.rollback()
        assert [row.backchannel_logout_uri for row in db.session.scalars(select(Client))] == ["https://rp.example.com/bc"]


def test_backchannel_logout_uri_may_be_loopback_http_for_a_loopback_issuer(app_ctx):
    client, _ = service.create_client("RP", redirect_uris=["https://rp.example.com/cb"], backchannel_logout_uri="http://127.0.0.1:9000/bc")
    assert client.backchannel_logout_uri == "http://127.0.0.1:9000/bc"


def test_client_ids_are_hex_so_no_command_line_reads_one_as_an_option():
    """One base64url id in 32 began with "-", and `idp clients update -Bfm...` took it for an option."""
    ids = {service.new_client_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(value) == 32 and set(value) <= set("0123456789abcdef") for value in ids)
