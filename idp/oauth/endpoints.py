"""Token revocation (RFC 7009) and introspection (RFC 7662) on Authlib's endpoints.

Authlib authenticates the client (per `Client.check_endpoint_auth_method`) and shapes the
responses; these subclasses fill its storage hooks. The app factory (`idp.configure_oauth`)
registers them, with the OpenID Connect userinfo and end-session endpoints, on the server.

Who may do what:
- Revocation: any client, public ones included (RFC 7009 5), but only of its own tokens. Another
  client's token, an unknown one or garbage all get the same empty 200 and nothing happens, so the
  endpoint cannot be used to learn whether a token exists (RFC 7009 2.2).
- Introspection: confidential clients only (RFC 7662 4: the caller must authenticate; a public
  client's `none` proves nothing). Resource servers are registered as confidential clients, so any
  of them may introspect any access token. A refresh token is only ever shown to the client that
  holds it: anyone else gets `{"active": false}`.
"""

from __future__ import annotations


from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from flask import Blueprint

from idp.audit.actors import Actor
from idp.cors import client_origins
from idp.db import reads_only
from idp.extensions import csrf
from idp.oauth.presented import PresentedAccessToken, find_presented_token
from idp.oauth.server import authorization_server
from idp.web import params
from idp.web.errors import json_errors

REVOCATION_PATH = "/revoke"
INTROSPECTION_PATH = "/introspect"
REVOCATION_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
INTROSPECTION_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

bp = json_errors(Blueprint("token_endpoints", __name__))  # protocol endpoints: errors in JSON
# Called by clients with their own credentials, never with the browser's cookie: no CSRF token.
csrf.exempt(bp)


class PresentedTokenParams:
    """The `token` / `token_type_hint` request shared by RFC 7009 2.1 and RFC 7662 2.1."""

    def check_params(self, request, client) -> None:
        form = request.form
        tokens = form.getlist("token")
        if len(tokens) != 1 or not tokens[0]:
            raise InvalidRequestError("exactly one non-empty 'token' parameter is required")
        params.PRESENTED_TOKEN.enforce(params.multi(form))
        # An unknown hint is not an error: the hint only orders the search (RFC 7009 2.1, RFC 7662 2.1).


class RevocationEndpoint(PresentedTokenParams, _RevocationEndpoint):
    """RFC 7009: a refresh token revokes its family; an access token's jti is denied until it expires."""

    CLIENT_AUTH_METHODS = REVOCATION_AUTH_METHODS

    def authenticate_token(self, request, client):
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token is None or not token.check_client(client):
            # RFC 7009 2.2: the client cannot act on an error here, and the same 200 for every
            # token it does not own keeps it from probing other clients' tokens.
            return None
        return token

    def query_token(self, token_string, token_type_hint):
        return find_presented_token(token_string, token_type_hint, live=False)

    def revoke_token(self, token, request):
        token.revoke(actor=Actor.client(request.client.get_client_id()))


class IntrospectionEndpoint(PresentedTokenParams, _IntrospectionEndpoint):
    """RFC 7662: `{"active": false}` for anything not live, else the token's metadata."""

    CLIENT_AUTH_METHODS = INTROSPECTION_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_presented_token(token_string, token_type_hint, live=True)

    def check_permission(self, token, client, request):
        # Access tokens: any authenticated (hence confidential) client, e.g. a resource server.
        # Refresh tokens: only the client they were issued to (RFC 7662 4).
        return isinstance(token, PresentedAccessToken) or token.check_client(client)

    def introspect_token(self, token):
        return token.introspection()


def endpoint_response(name: str):
    """Authlib's response for endpoint `name`, errors included."""
    # Plain http to a non-loopback host raises InsecureTransportError before Authlib's own error
    # handling; the app's handler answers it like every endpoint (idp.oauth.server.insecure_transport).
    return authorization_server().create_endpoint_response(name)


@bp.post(REVOCATION_PATH)
@client_origins
def revoke():
    """RFC 7009 token revocation."""
    return endpoint_response(RevocationEndpoint.ENDPOINT_NAME)


@bp.post(INTROSPECTION_PATH)
@reads_only
def introspect():
    """RFC 7662 token introspection."""
    return endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)


def token_endpoints_metadata(issuer: str) -> dict:
    """RFC 8414 2 members for revocation and introspection."""
    return {
        "revocation_endpoint": issuer + REVOCATION_PATH,
        "revocation_endpoint_auth_methods_supported": list(REVOCATION_AUTH_METHODS),
        "introspection_endpoint": issuer + INTROSPECTION_PATH,
        "introspection_endpoint_auth_methods_supported": list(INTROSPECTION_AUTH_METHODS),
    }
