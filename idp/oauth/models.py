"""Authorization codes and remembered consents."""

from __future__ import annotations

from datetime import datetime

from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db


class AuthorizationCode(db.Model, AuthorizationCodeMixin):
    """A single-use code (RFC 6749 4.1.2) bound to client, redirect_uri and PKCE challenge."""

    __tablename__ = "authorization_codes"
    __table_args__ = (
        Index("ix_authorization_codes_expires_at", "expires_at"),
        # admin UI: sessions of a client, and the clients of a page of sessions
        Index("ix_authorization_codes_client_id_sid", "client_id", "sid"),
        Index("ix_authorization_codes_sid", "sid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sid: Mapped[str | None] = mapped_column(String(43))
    # The redirect_uri exactly as the authorization request gave it; "" when it was omitted
    # (one registered URI), so the token request must then omit it too (RFC 6749 4.1.3).
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    nonce: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    auth_time: Mapped[datetime | None]
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    # What the redemption issued, so a second redemption can revoke it (RFC 6749 4.1.2).
    issued_family_id: Mapped[int | None]
    issued_access_jti: Mapped[str | None] = mapped_column(String(64))
    issued_access_expires_at: Mapped[datetime | None]

    # --- Authlib's AuthorizationCodeMixin: what its grant and OpenID extension read ---

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int | None:
        return int(self.auth_time.timestamp()) if self.auth_time else None

    def get_acr(self) -> str | None:
        return self.acr

    def get_amr(self) -> list[str] | None:
        return list(self.amr) or None


class Consent(db.Model):
    """Scopes a user granted to a client, remembered so the consent page is shown once."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id", name="uq_consents_user_id_client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(Text, default="")
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
