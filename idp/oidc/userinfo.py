"""The UserInfo endpoint (OpenID Connect Core 1.0 section 5.3) on Authlib's UserInfoEndpoint.

Only this issuer's RFC 9068 access tokens are accepted, verified by `verify_access_token` (alg
allow-list, our keys only, nothing fetched, `typ: at+jwt` so an ID token is refused, denylist and
token version). The bearer token comes from the Authorization header or a form-encoded POST body
(RFC 6750 2.1, 2.2), never from the query string (2.3 is refused: URLs end up in logs).
"""

from __future__ import annotations

from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from authlib.oidc.core import UserInfoEndpoint as _UserInfoEndpoint
from flask import Blueprint, current_app, request

from idp.extensions import csrf
from idp.cors import any_origin
from idp.db import reads_only
from idp.oauth.endpoints import endpoint_response
from idp.oauth.presented import PresentedAccessToken
from idp.oidc.claims import claims_for
from idp.routing import spec_defined_methods
from idp.tokens.access import InvalidTokenError as TokenRefused
from idp.tokens.access import live_user, verify_access_token
from idp.web.errors import json_errors

USERINFO_PATH = "/userinfo"
FORM_ENCODED = "application/x-www-form-urlencoded"

bp = json_errors(Blueprint("userinfo", __name__))  # protocol endpoints: errors in JSON
# Authenticated by a bearer token, never by the browser's cookie: no CSRF token.
csrf.exempt(bp)


class MissingTokenError(OAuth2Error):
    """RFC 6750 3.1: a request with no credentials (or another scheme) gets a bare challenge, no error code."""

    status_code = 401

    def get_body(self):
        return []

    def get_headers(self):
        return super().get_headers() + [("WWW-Authenticate", "Bearer")]


class InvalidBearerRequestError(OAuth2Error):
    """RFC 6750 3.1 `invalid_request`: the token came twice, by two methods, or in the query string."""

    error = "invalid_request"
    status_code = 400

    def get_headers(self):
        return super().get_headers() + [("WWW-Authenticate", f'Bearer error="{self.error}", error_description="{self.description}"')]


class InsufficientScope(InsufficientScopeError):
    """RFC 6750 3.1 `insufficient_scope`, with the challenge naming the scope userinfo needs."""

    def get_headers(self):
        return super().get_headers() + [("WWW-Authenticate", 'Bearer error="insufficient_scope", scope="openid"')]


class AccessTokenValidator(BearerTokenValidator):
    """Accepts live access tokens of this issuer that act for an existing user."""

    def authenticate_token(self, token_string):
        try:
            claims = verify_access_token(token_string, check_state=False)
            # The state check loads the user in the same round trip: userinfo needs it anyway.
            return PresentedAccessToken(claims, revoked=False, user=live_user(claims))
        except TokenRefused:
            return None

    def validate_token(self, token, scopes, request):
        # One answer for every bad token, whatever the reason (RFC 6750 3.1 `invalid_token`).
        if token is None or token.is_expired() or token.is_revoked() or token.get_user() is None or token.get_client() is None:
            raise InvalidTokenError()
        if self.scope_insufficient(token.get_scope(), scopes):
            raise InsufficientScope()


class BearerProtector(ResourceProtector):
    """Finds the bearer token the way RFC 6750 section 2 allows, and only that way."""

    def parse_request_authorization(self, _request):
        if "access_token" in request.args:
            raise InvalidBearerRequestError("access tokens are not accepted in the query string")
        body_tokens = request.form.getlist("access_token") if request.method == "POST" and request.mimetype == FORM_ENCODED else []
        header = request.headers.get("Authorization")
        if len(body_tokens) > 1 or (header and body_tokens):
            raise InvalidBearerRequestError("send the access token once, by one method")
        validator = self.get_token_validator("bearer")
        if body_tokens:
            return validator, body_tokens[0]
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            raise MissingTokenError()
        return validator, token.strip()


class UserInfoEndpoint(_UserInfoEndpoint):
    """Claims about the token's user, per the token's scopes; plain JSON (signed userinfo is not offered)."""

    @classmethod
    def create(cls) -> UserInfoEndpoint:
        protector = BearerProtector()
        protector.register_token_validator(AccessTokenValidator())
        return cls(resource_protector=protector)

    def generate_user_info(self, user, scope):
        return claims_for(user, scope)

    def get_issuer(self) -> str:
        return current_app.config["ISSUER"]


@bp.route(USERINFO_PATH, methods=["GET", "POST"])
@spec_defined_methods("OIDC Core 5.3.1: GET and POST; it only reads")
@any_origin  # a bearer token, never a cookie
@reads_only
def userinfo():
    """OpenID Connect Core 5.3 UserInfo."""
    return endpoint_response(UserInfoEndpoint.ENDPOINT_NAME)


def userinfo_metadata(issuer: str) -> dict:
    """Discovery 1.0 section 3 members for userinfo and the claims it can release."""
    return {"userinfo_endpoint": issuer + USERINFO_PATH}
