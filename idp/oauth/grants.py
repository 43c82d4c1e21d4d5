"""Authlib grants and extensions on our storage: code + PKCE, refresh_token, client_credentials.

Each grant fills only Authlib's storage hooks; each hook calls a service (codes, refresh
families, access and ID tokens). What a grant acts for travels as a `Principal`: Authlib hands
it from `authenticate_user` (or the authorization step's `grant_user`) to the token generator
and the ID-token extension, so `sid`, `auth_time`, `nonce`, `acr`/`amr` and the user's token
version reach the tokens without a second lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode, OpenIDToken
from authlib.oidc.core.errors import RegistrationNotSupportedError, RequestNotSupportedError, RequestURINotSupportedError
from flask import current_app

from idp.audit.actors import Actor
from idp.clients.models import Client
from idp.db import db, durable
from idp.oauth import codes
from idp.scopes import OFFLINE_ACCESS, USER_SCOPES
from idp.oauth.session_binding import session_alive
from idp.oidc.claims import id_token_claims
from idp.oidc.id_token import issue_id_token
from idp.tokens.access import IssuedAccessToken, issue_access_token
from idp.tokens.models import RefreshFamily, RefreshToken
from idp.tokens.refresh import InvalidRefreshToken, lookup_with_user, pair_access_token, revoke_family, rotate, start_family
from idp.users.models import User
from idp.web import params

PROMPTS = ("none", "login", "consent")


@dataclass(frozen=True)
class Principal:
    """The user a grant acts for, with the sign-in facts its tokens carry."""

    user: User
    token_version: int
    sid: str | None = None  # SSO session the grant came from
    auth_time: datetime | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    nonce: str | None = None

    def get_user_id(self) -> int:
        return self.user.id


class TokenResponse(dict):
    """The token endpoint's JSON body; what was issued rides along as attributes, never serialized."""

    def __init__(self, body: dict, access: IssuedAccessToken, family: RefreshFamily | None = None):
        super().__init__(body)
        self.access = access
        self.family = family


def issues_refresh_token(client: Client, scope: str) -> bool:
    """Refresh tokens go with offline_access, or to confidential clients when configured."""
    if not client.check_grant_type("refresh_token"):
        return False
    return OFFLINE_ACCESS in scope.split() or (not client.is_public and current_app.config["REFRESH_TOKENS_FOR_CONFIDENTIAL_CLIENTS"])


def normalize_scope(scope: str | None) -> str:
    """Scope tokens in request order, each once."""
    return " ".join(dict.fromkeys((scope or "").split()))


def generate_token(grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True) -> TokenResponse:
    """Authlib's token generator: an RFC 9068 access token and, where policy allows, a refresh family.

    A family granted offline_access survives the SSO session; any other is bound to it (`sid`),
    and so are its access tokens.
    """
    scope = normalize_scope(scope)
    if user is None:  # client_credentials: the client acts for itself
        access = issue_access_token(client_id=client.client_id, subject=client.client_id, scope=scope)
        return TokenResponse(_body(access, scope), access)
    offline = OFFLINE_ACCESS in scope.split()
    bound_sid = None if offline else user.sid
    access = issue_access_token(
        client_id=client.client_id, subject=user.user.subject, scope=scope, sid=bound_sid,
        token_version=user.token_version, auth_time=user.auth_time, acr=user.acr, amr=user.amr,
    )
    body = _body(access, scope)
    family = None
    if include_refresh_token and issues_refresh_token(client, scope):
        rotation = start_family(
            client=client, user=user.user, scope=scope, sid=bound_sid, offline=offline,
            auth_time=user.auth_time, acr=user.acr, amr=user.amr,
        )
        pair_access_token(rotation, access)
        family = rotation.family
        body["refresh_token"] = rotation.token
    return TokenResponse(body, access, family)


def _body(access: IssuedAccessToken, scope: str) -> dict:
    body = {"access_token": access.token, "token_type": "Bearer", "expires_in": access.expires_in}
    if scope:
        body["scope"] = scope
    return body


# --- authorization_code ---------------------------------------------------------------------------


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """RFC 6749 4.1 with PKCE; codes are digests, single use, and a replay revokes what they issued."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @staticmethod
    def validate_authorization_redirect_uri(request, client):
        # As Authlib's, but the description never quotes the presented URI: it is attacker input
        # and Authlib refuses to build descriptions with some characters.
        if request.payload.redirect_uri:
            if not client.check_redirect_uri(request.payload.redirect_uri):
                raise InvalidRequestError("The redirect_uri is not registered for this client.")
            return request.payload.redirect_uri
        redirect_uri = client.get_default_redirect_uri()
        if not redirect_uri:
            raise InvalidRequestError("Missing 'redirect_uri': this client registered several.")
        return redirect_uri

    def generate_authorization_code(self) -> str:
        return codes.new_code_value()

    def save_authorization_code(self, code: str, request) -> None:
        principal: Principal = request.user
        data = request.payload.data
        codes.save_code(code, codes.CodeRequest(
            client=request.client,
            user=principal.user,
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope,
            sid=principal.sid,
            auth_time=principal.auth_time,
            nonce=data.get("nonce") or None,
            code_challenge=data.get("code_challenge") or None,
            code_challenge_method=data.get("code_challenge_method") or None,
            acr=principal.acr,
            amr=principal.amr,
        ))

    def query_authorization_code(self, code: str, client: Client):
        return codes.claim_code(code, client)

    def authenticate_user(self, authorization_code) -> Principal | None:
        user = db.session.get(User, authorization_code.user_id)
        if user is None or user.is_disabled or user.token_version != authorization_code.token_version:
            return None
        if authorization_code.sid and not session_alive(authorization_code.sid):
            return None  # the user signed out (or was signed out) before the code was redeemed
        return Principal(
            user=user,
            token_version=authorization_code.token_version,
            sid=authorization_code.sid,
            auth_time=authorization_code.auth_time,
            acr=authorization_code.acr,
            amr=tuple(authorization_code.amr or ()),
            nonce=authorization_code.nonce,
        )

    def save_token(self, token: TokenResponse) -> None:
        codes.record_issued(self.request.authorization_code, token.access, token.family)

    def delete_authorization_code(self, authorization_code) -> None:
        """Kept, marked used, until it expires: a replay must still find what to revoke (RFC 6749 4.1.2)."""


class S256CodeChallenge(CodeChallenge):
    """PKCE (RFC 7636) with S256 only (RFC 9700 2.1.1), required of public clients and, unless a
    confidential client is relaxed (`require_pkce=False`), of every client."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        client: Client = grant.request.client
        if not data.get("code_challenge"):
            if client.is_public or client.require_pkce:
                raise InvalidRequestError("Missing 'code_challenge': this client must use PKCE with S256.")
        elif not data.get("code_challenge_method"):
            # RFC 7636 4.3 would read a missing method as "plain", which is refused.
            raise InvalidRequestError("Missing 'code_challenge_method': only S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationRequestChecks:
    """Extension of the code grant: the OpenID and RFC 6749 3.1 checks Authlib leaves to us.

    Refuses repeated parameters, oversized values, request objects (OIDC Core 6), response
    modes other than query, unknown prompt values, `none` combined with another prompt and a
    max_age that is not a non-negative integer. Errors redirect, as the client and redirect_uri
    are already validated when this runs.
    """

    def __call__(self, grant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.check)

    def check(self, grant, redirect_uri) -> None:
        data, datalist = grant.request.payload.data, grant.request.payload.datalist
        params.AUTHORIZATION.enforce(datalist)
        if "request" in data:
            raise RequestNotSupportedError()
        if "request_uri" in data:
            raise RequestURINotSupportedError()
        if "registration" in data:
            raise RegistrationNotSupportedError()
        if data.get("response_mode", "query") != "query":
            raise InvalidRequestError("Only response_mode=query is supported.")
        prompts = requested_prompts(data)
        if any(prompt not in PROMPTS for prompt in prompts):
            raise InvalidRequestError("Unsupported 'prompt' value; supported: none, login, consent.")
        if "none" in prompts and len(prompts) > 1:
            raise InvalidRequestError("prompt=none cannot be combined with other values.")
        if "max_age" in data and requested_max_age(data) is None:
            raise InvalidRequestError("max_age must be a non-negative integer.")


def requested_prompts(data) -> set[str]:
    """The set of prompt values of an authorization request (OIDC Core 3.1.2.1)."""
    return set((data.get("prompt") or "").split())


def requested_max_age(data) -> int | None:
    """max_age in seconds, or None when absent or malformed."""
    raw = data.get("max_age")
    if raw is None or not raw.isdigit() or len(raw) > 10:
        return None
    return int(raw)


class KeyringIDToken:
    """Mixin for Authlib's OpenID extensions: ID tokens signed by our keyring, from the Principal."""

    def encode_id_token(self, token, request) -> str:
        principal: Principal = request.user
        return issue_id_token(
            client=request.client,
            subject=principal.user.subject,
            auth_time=principal.auth_time,
            nonce=principal.nonce,
            sid=principal.sid,
            acr=principal.acr,
            amr=principal.amr,
            access_token=token.get("access_token"),
            user_claims=id_token_claims(request.client, principal.user, token.get("scope") or ""),
        )


class OpenIDCodeExtension(KeyringIDToken, OpenIDCode):
    """ID token on the code grant (OIDC Core 3.1.3.3)."""

    def exists_nonce(self, nonce, request) -> bool:
        # The nonce protects the relying party, which checks it in the ID token (Core 15.5.2);
        # the OP only carries it, and an RP retrying a request may legitimately repeat one.
        return False


class OpenIDRefreshExtension(KeyringIDToken, OpenIDToken):
    """A fresh ID token on refresh (OIDC Core 12.2): same sub, auth_time, acr and amr; no nonce."""


# --- refresh_token --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshCredential:
    """A presented refresh token, its row, its family and its user, as Authlib's refresh grant expects."""

    value: str
    token: RefreshToken
    family: RefreshFamily
    user: User | None

    def check_client(self, client: Client) -> bool:
        return self.family.client_id == client.id

    def get_scope(self) -> str:
        return self.family.scope


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """RFC 6749 6 with rotation on every use and reuse detection (RFC 9700 4.14.2).

    Authlib checks the client and the scope (narrowing only) before anything is spent; the
    rotation itself (`idp.tokens.refresh.rotate`, with its reuse grace) is one atomic step in `issue_token`.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = False  # the rotation supplies the successor

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshCredential | None:
        found = lookup_with_user(refresh_token)
        return RefreshCredential(refresh_token, *found) if found else None

    def authenticate_user(self, credential: RefreshCredential) -> Principal | None:
        family, user = credential.family, credential.user
        if user is None:
            return None
        return Principal(
            user=user, token_version=family.token_version, sid=family.sid,
            auth_time=family.auth_time, acr=family.acr, amr=tuple(family.amr or ()),
        )

    def issue_token(self, user: Principal, credential: RefreshCredential) -> TokenResponse:
        family = credential.family
        if family.sid and not family.offline and family.revoked_at is None and not session_alive(family.sid):
            # The refusal rolls back; the revocation of the dead session's family must stay.
            with durable("a refresh family of an ended session is revoked"):
                revoke_family(family, reason="session_ended", actor=Actor.SYSTEM)
            raise InvalidGrantError("The sign-in session this refresh token was bound to has ended.")
        # Signed first, so the rotation stores the successor already paired with it (one INSERT);
        # answered only if the rotation succeeds, before the edge commits it under its locks.
        token = self.generate_token(user=user, scope=normalize_scope(self.request.payload.scope) or family.scope, include_refresh_token=False)
        try:
            rotation = rotate(credential.value, client=self.request.client, found=(credential.token, family), access=token.access)
        except InvalidRefreshToken:
            raise InvalidGrantError("The refresh token is invalid, expired or revoked.") from None
        token["refresh_token"] = rotation.token
        return token

    def revoke_old_credential(self, credential: RefreshCredential) -> None:
        """Nothing left to do: `rotate` spent the old token in the same step that made the new one."""


# --- client_credentials ---------------------------------------------------------------------------


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """RFC 6749 4.4 for confidential clients: an access token for the client itself, never a
    refresh or ID token, within the scopes the client registered."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = set((self.request.payload.scope or "").split())
        if requested & USER_SCOPES:
            raise InvalidScopeError("openid and offline_access need a signed-in user.")
        if not requested <= set(self.request.client.scopes):
            raise InvalidScopeError("The client did not register every requested scope.")


# --- registration ---------------------------------------------------------------------------------


class Issuer(IssuerParameter):
    """RFC 9207: `iss` in every authorization response, errors included."""

    def get_issuer(self) -> str:
        return current_app.config["ISSUER"]


issuer_parameter = Issuer()


def authenticate_client_secret_basic_safely(query_client, request):
    """Authlib's client_secret_basic, treating undecodable credentials as absent (no 500)."""
    try:
        return authenticate_client_secret_basic(query_client, request)
    except ValueError:  # UnicodeDecodeError, or base64 of non-ASCII text ("Basic é")
        return None


def register_grants(server) -> None:
    """Register the grants, their extensions and the token generator on a new Authlib server."""
    server.register_token_generator("default", generate_token)
    server.register_client_auth_method("client_secret_basic", authenticate_client_secret_basic_safely)
    server.register_extension(issuer_parameter)
    server.register_grant(
        AuthorizationCodeGrant,
        [S256CodeChallenge(required=True), AuthorizationRequestChecks(), OpenIDCodeExtension(require_nonce=False)],
    )
    server.register_grant(RefreshTokenGrant, [OpenIDRefreshExtension()])
    server.register_grant(ClientCredentialsGrant)
