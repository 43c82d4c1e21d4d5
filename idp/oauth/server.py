"""Authlib's AuthorizationServer, bound to our storage.

Grants (code + PKCE, refresh_token, client_credentials) and endpoints (revocation, introspection)
register themselves on `authorization` from their own modules; `init_oauth` wires it to an app.
"""

from __future__ import annotations

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InsecureTransportError, InvalidRequestError
from flask import Flask

from idp.clients.service import SCOPES, get_client
from idp.oauth.grants import register_grants

authorization = AuthorizationServer()


def save_token(token: dict, request) -> None:
    """Nothing to store: access tokens are self-contained JWTs, and refresh tokens are persisted
    (as digests, in their family) by the grant at the moment it issues them."""


def insecure_transport(error: InsecureTransportError):
    """Plain http to a non-loopback host: 400 `invalid_request` (RFC 6749 3.1, 3.2 require TLS), never a 500.

    Authlib raises this while it builds its request, before its own error handling, from any
    endpoint; behind a TLS proxy it means IDP_TRUSTED_PROXIES does not count that proxy.
    """
    return authorization.handle_error_response(None, InvalidRequestError("This endpoint is served over https only."))


def init_oauth(app: Flask) -> None:
    """Bind the authorization server to `app` (its endpoints are registered first, by the app factory)."""
    app.register_error_handler(InsecureTransportError, insecure_transport)
    app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", list(SCOPES))
    authorization.init_app(app, query_client=get_client, save_token=save_token)
    register_grants(authorization)
