"""Tokens presented back to us (to revoke, introspect or spend at userinfo), as Authlib's TokenMixin.

An access token is a JWT we verify offline; a refresh token is looked up by its digest. Lookups
come in two strengths: `live=True` (introspection, userinfo) also consults the denylist, the user's
token version and the family's state, while `live=False` (revocation) accepts anything we issued
whose signature and claims still hold, so that revoking it has something to act on.
"""

from __future__ import annotations

from datetime import datetime, timezone

from authlib.oauth2.rfc6749 import TokenMixin
from flask import current_app

from idp.audit.service import record
from idp.clients.models import Client
from idp.clients.service import get_client
from idp.clock import utcnow
from idp.db import db
from idp.security import REFRESH_TOKEN_PREFIX
from idp.tokens.access import InvalidTokenError, check_access_token_state, revoke_access_token, verify_access_token
from idp.tokens.models import RefreshFamily, RefreshToken
from idp.tokens.refresh import find_family, live_token, revoke_family
from idp.users.models import User

ACCESS_TOKEN = "access_token"
REFRESH_TOKEN = "refresh_token"


class PresentedAccessToken(TokenMixin):
    """A verified JWT access token (RFC 9068), identified by its claims."""

    kind = ACCESS_TOKEN

    def __init__(self, claims: dict, *, revoked: bool | None = None, user: User | None | bool = False):
        self.claims = claims
        self._revoked = revoked  # None: not looked up yet
        self._user = user  # False: not loaded yet
        self._client: Client | None | bool = False

    @property
    def client_id(self) -> str:
        return self.claims["client_id"]

    def check_client(self, client: Client) -> bool:
        return client is not None and self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        scope = self.claims.get("scope")
        return scope if isinstance(scope, str) else ""

    scope = property(get_scope)  # Authlib's UserInfoEndpoint reads `token.scope`

    def get_expires_in(self) -> int:
        return self.claims["exp"] - self.claims["iat"]

    def is_expired(self) -> bool:
        # The same leeway as verification, so a token verification just accepted is not "expired".
        return self.claims["exp"] <= utcnow().timestamp() - current_app.config["CLOCK_SKEW"]

    def is_revoked(self) -> bool:
        if self._revoked is None:
            try:
                check_access_token_state(self.claims)
                self._revoked = False
            except InvalidTokenError:
                self._revoked = True
        return self._revoked

    def get_user(self) -> User | None:
        """The user the token acts for; None for client_credentials tokens (no token version)."""
        if self._user is False:
            self._user = None
            if "ver" in self.claims:
                self._user = db.session.scalar(db.select(User).where(User.subject == self.claims["sub"]))
        return self._user

    def get_client(self) -> Client | None:
        if self._client is False:
            self._client = get_client(self.client_id)
        return self._client

    def introspection(self) -> dict:
        """RFC 7662 2.2 members for an active access token."""
        claims = self.claims
        body = {
            "active": True,
            "token_type": ACCESS_TOKEN,
            "iss": claims["iss"],
            "sub": claims["sub"],
            "aud": claims["aud"],
            "client_id": claims["client_id"],
            "scope": self.get_scope(),
            "exp": claims["exp"],
            "iat": claims["iat"],
            "jti": claims["jti"],
        }
        if isinstance(claims.get("sid"), str):
            body["sid"] = claims["sid"]
        # RFC 7662 2.2 allows further members: how the user signed in (RFC 8176 amr).
        body.update({name: claims[name] for name in ("acr", "amr") if name in claims})
        return body

    def revoke(self, *, actor: str) -> None:
        """Deny this jti until the token would have expired."""
        expires_at = datetime.fromtimestamp(self.claims["exp"], tz=timezone.utc)
        revoke_access_token(self.claims["jti"], expires_at)
        record("access_token.revoked", actor=actor, target=f"access_token:{self.claims['jti']}", client=self.client_id)


class PresentedRefreshToken(TokenMixin):
    """A refresh token we issued: its family and, for live lookups, the token row itself."""

    kind = REFRESH_TOKEN

    def __init__(self, family: RefreshFamily, token: RefreshToken | None = None):
        self.family = family
        self.token = token

    def check_client(self, client: Client) -> bool:
        # RFC 6749 6: a refresh token is bound to the client it was issued to.
        return client is not None and self.family.client_id == client.id

    def get_scope(self) -> str:
        return self.family.scope

    def _expires_at(self) -> datetime:
        return min(self.token.expires_at, self.family.expires_at) if self.token else self.family.expires_at

    def get_expires_in(self) -> int:
        start = self.token.created_at if self.token else self.family.created_at
        return int((self._expires_at() - start).total_seconds())

    def is_expired(self) -> bool:
        return utcnow() >= self._expires_at()

    def is_revoked(self) -> bool:
        return self.family.revoked_at is not None or (self.token is not None and self.token.rotated_at is not None)

    def get_user(self) -> User | None:
        return db.session.get(User, self.family.user_id) if self.family.user_id is not None else None

    def get_client(self) -> Client | None:
        return db.session.get(Client, self.family.client_id)

    def introspection(self) -> dict:
        """RFC 7662 2.2 members for an active refresh token."""
        client = self.get_client()
        user = self.get_user()
        body = {
            "active": True,
            "token_type": REFRESH_TOKEN,
            "iss": current_app.config["ISSUER"],
            # A family without a user was granted to the client itself, which is then the subject.
            "sub": user.subject if user else client.client_id,
            "client_id": client.client_id,
            "scope": self.get_scope(),
            "exp": int(self._expires_at().timestamp()),
            "iat": int((self.token.created_at if self.token else self.family.created_at).timestamp()),
        }
        if self.family.sid:
            body["sid"] = self.family.sid
        if self.family.amr:
            body.update(acr=self.family.acr, amr=list(self.family.amr))
        return body

    def revoke(self, *, actor: str) -> None:
        """Revoke the whole family: the grant ends, not just this token (RFC 7009 2.1)."""
        revoke_family(self.family, reason="revoked", actor=actor)


Presented = PresentedAccessToken | PresentedRefreshToken


def find_presented_token(value: str, hint: str | None, *, live: bool, now: datetime | None = None) -> Presented | None:
    """The token `value` denotes, or None; `hint` only orders the search (RFC 7009 2.1, RFC 7662 2.1)."""
    if not isinstance(value, str) or not value:
        return None
    kinds = (REFRESH_TOKEN, ACCESS_TOKEN) if hint == REFRESH_TOKEN else (ACCESS_TOKEN, REFRESH_TOKEN)
    for kind in kinds:
        found = _find_access(value, live, now) if kind == ACCESS_TOKEN else _find_refresh(value, live, now)
        if found is not None:
            return found
    return None


def _find_access(value: str, live: bool, now: datetime | None) -> PresentedAccessToken | None:
    if value.count(".") != 2:
        return None
    try:
        claims = verify_access_token(value, now=now, check_state=live)
    except InvalidTokenError:
        return None
    return PresentedAccessToken(claims, revoked=False if live else None)


def _find_refresh(value: str, live: bool, now: datetime | None) -> PresentedRefreshToken | None:
    # Every refresh token we mint carries the prefix: anything else needs no database round trip.
    if not value.startswith(REFRESH_TOKEN_PREFIX):
        return None
    if live:
        found = live_token(value, now=now)
        return PresentedRefreshToken(found[1], found[0]) if found else None
    family = find_family(value)
    return PresentedRefreshToken(family) if family else None
