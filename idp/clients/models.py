"""The Client model."""

from __future__ import annotations

from datetime import datetime

from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db
from idp.security import constant_time_equals, digest

LOOPBACK_IPS = ("127.0.0.1", "::1")


class Client(db.Model, ClientMixin):
    """A registered relying party; a confidential one holds only its secret's digest."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_digest: Mapped[str | None] = mapped_column(String(64))
    is_public: Mapped[bool] = mapped_column(default=False)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(Text, default="")
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    # PKCE is required of every client unless a confidential client is explicitly relaxed.
    require_pkce: Mapped[bool] = mapped_column(default=True)
    # First-party clients may skip the consent page.
    skip_consent: Mapped[bool] = mapped_column(default=False)
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(10), default="RS256")
    # "standard": the ID token carries the claims of the granted profile and email scopes;
    # "minimal": only who signed in and how, the rest from userinfo (OIDC Core 5.4).
    id_token_claims: Mapped[str] = mapped_column(String(10), default="standard", server_default="standard")
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()

    @property
    def client_metadata(self) -> dict:
        """Registered metadata under its RFC 7591 / OIDC names, as Authlib's OIDC endpoints read it."""
        return {
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris or []),
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "id_token_signed_response_alg": self.id_token_signed_response_alg,
        }

    # --- Authlib's ClientMixin: the storage hooks its grants and endpoints call ---

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # RFC 6749 3.1.2.3: with several registered URIs the request must name one.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scopes)
        return " ".join(dict.fromkeys(s for s in (scope or "").split() if s in allowed))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(redirect_uri_matches(registered, redirect_uri) for registered in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_digest is None or not client_secret:
            return False
        return constant_time_equals(digest(client_secret), self.secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # The registered method applies to every endpoint that authenticates clients
        # (token, revocation, introspection): no downgrade from a secret to "none".
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    def __repr__(self) -> str:
        return f"<Client {self.client_id} {self.name!r}>"


def redirect_uri_matches(registered: str, presented: str) -> bool:
    """Exact string match (RFC 9700 2.1), except any port on a loopback IP (RFC 8252 7.3)."""
    if presented == registered:
        return True
    try:
        want, got = urlsplit(registered), urlsplit(presented)
        got.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return False
    if want.scheme != "http" or want.hostname not in LOOPBACK_IPS:
        return False
    return (
        got.scheme == "http"
        and got.hostname == want.hostname
        and got.path == want.path
        and got.query == want.query
        and not got.fragment
        and got.username is None
        and "@" not in got.netloc
    )
