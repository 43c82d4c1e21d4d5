"""Cross-origin access (CORS) for the endpoints a browser-based client calls directly.

A single-page application signs in as a public client with the code flow and PKCE: with fetch()
from its own origin it reads the discovery document and the JWKS, redeems and refreshes at the
token endpoint, calls userinfo and revokes at sign-out. Each of those views declares a policy:

- `any_origin`: public documents and the bearer-token endpoint (discovery, JWKS, userinfo). They
  read no cookie, so `Access-Control-Allow-Origin: *` shows a page nothing a server could not
  fetch itself.
- `client_origins`: the token and revocation endpoints answer only an origin of one of the
  requesting client's registered redirect URIs (what Keycloak's "+" web origin and
  node-oidc-provider's client-based CORS do), so a page elsewhere cannot read what is issued to
  the client's own page.

Credentials are never allowed (none of these views reads a cookie), and every other view (login,
consent, /authorize, introspection, the admin UI) sends no CORS header, so browsers keep other
origins out of it. A preflight (Fetch standard, "CORS protocol") is answered alike for both
policies: it only lets the request be sent, which a plain form POST could do anyway; whether the
page may read the answer is for the actual response to say.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import unquote, urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from idp.clients.service import get_client
from idp.outages import database_lost

ANY_ORIGIN, CLIENT_ORIGINS = "any-origin", "client-origins"
ALLOWED_HEADERS = "Authorization, Content-Type"
EXPOSED_HEADERS = "WWW-Authenticate"  # RFC 6750 3: the error of a refused bearer token
PREFLIGHT_MAX_AGE = 600
DEFAULT_PORTS = {"http": 80, "https": 443}


def any_origin(view: Callable) -> Callable:
    """Mark a view readable from any origin (no credentials)."""
    view.cors_policy = ANY_ORIGIN
    return view


def client_origins(view: Callable) -> Callable:
    """Mark a view readable only from the origins of the requesting client's redirect URIs."""
    view.cors_policy = CLIENT_ORIGINS
    return view


def init_cors(app: Flask) -> None:
    """Add CORS response headers to the views that declared a policy."""
    app.after_request(_add_cors_headers)


def origin_of(uri: str) -> str | None:
    """The ASCII serialization of a URL's origin (RFC 6454 6.2), or None for non-web schemes."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[parts.scheme] else "")


def _add_cors_headers(response: Response) -> Response:
    origin = request.headers.get("Origin")
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    policy = getattr(view, "cors_policy", None)
    if not origin or policy is None:
        return response
    if request.method == "OPTIONS":
        if "Access-Control-Request-Method" in request.headers:
            methods = sorted(request.url_rule.methods - {"OPTIONS", "HEAD"})
            response.headers.update({
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Methods": ", ".join(methods),
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            })
        return response
    if policy == ANY_ORIGIN:
        response.headers["Access-Control-Allow-Origin"] = "*"
    else:
        response.vary.add("Origin")  # the answer depends on it: caches must not mix origins
        if origin not in _requesting_client_origins():
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


def _requesting_client_origins() -> set[str]:
    """Origins of the redirect URIs of the client named by the request (Basic or `client_id`)."""
    auth = request.authorization
    try:
        # RFC 6749 2.3.1: the Basic user name is the form-urlencoded client_id.
        client_id = unquote(auth.username or "") if auth is not None and auth.type == "basic" else request.form.get("client_id")
    except HTTPException:  # a body too large to read: the view has already refused it
        return set()
    if not client_id or database_lost():  # a 503 for a lost database reads no client
        return set()
    client = get_client(client_id)
    if client is None:
        return set()
    return {origin for origin in map(origin_of, client.redirect_uris) if origin}
