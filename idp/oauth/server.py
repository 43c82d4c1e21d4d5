"""Authlib's AuthorizationServer, bound to our storage: one per app, built by the app factory.

`build_authorization_server` makes a fresh server for an app (grants, token generator, the
endpoints the factory hands it) and keeps it in `app.extensions[EXTENSION]`; request code reaches
it through `authorization_server()`. Nothing here is module-level state, so two apps in one
process (tests, a CLI command beside a server) never share grants, endpoints or configuration.
"""

from __future__ import annotations

from typing import Iterable

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InsecureTransportError, InvalidRequestError
from flask import Flask, current_app

from idp.clients.service import SCOPES, get_client
from idp.oauth.grants import register_grants

EXTENSION = "idp.oauth"


def save_token(token: dict, request) -> None:
    """Nothing to store: access tokens are self-contained JWTs, and refresh tokens are persisted
    (as digests, in their family) by the grant at the moment it issues them."""


def authorization_server() -> AuthorizationServer:
    """The current app's authorization server (built by `build_authorization_server`)."""
    return current_app.extensions[EXTENSION]


def insecure_transport(error: InsecureTransportError):
    """Plain http to a non-loopback host: 400 `invalid_request` (RFC 6749 3.1, 3.2 require TLS), never a 500.

    Authlib raises this while it builds its request, before its own error handling, from any
    endpoint; behind a TLS proxy it means IDP_TRUSTED_PROXIES does not count that proxy.
    """
    return authorization_server().handle_error_response(None, InvalidRequestError("This endpoint is served over https only."))


def build_authorization_server(app: Flask, endpoints: Iterable = ()) -> AuthorizationServer:
    """A new authorization server for `app`: our grants, then `endpoints` (classes or instances), kept in app.extensions."""
    app.register_error_handler(InsecureTransportError, insecure_transport)
    app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", list(SCOPES))
    server = AuthorizationServer()
    # init_app installs Authlib's default token generator; register_grants replaces it with ours.
    server.init_app(app, query_client=get_client, save_token=save_token)
    register_grants(server)
    for endpoint in endpoints:
        server.register_endpoint(endpoint)
    app.extensions[EXTENSION] = server
    return server
