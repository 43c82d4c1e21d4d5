"""The SigningKey model."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db


class KeyState(str, enum.Enum):
    """Lifecycle of a signing key; only `next`, `active` and `retired` are published in the JWKS."""

    NEXT = "next"  # published, not yet signing
    ACTIVE = "active"  # signing (one per algorithm)
    RETIRED = "retired"  # published so tokens it signed still verify; no longer signing
    REVOKED = "revoked"  # compromised: withdrawn from the JWKS at once


PUBLISHED_STATES = (KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRED)
# The signing algorithms, defined once: RS256 is mandatory for OpenID Connect (Core 15.1).
ALGORITHMS = ("RS256", "ES256")


class SigningKey(db.Model):
    """A JWS signing key; the private half is stored only encrypted under the key-encryption keys."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        Index("ix_signing_keys_alg_state", "alg", "state"),
        # The database itself refuses a second active or a second next key for an algorithm, so two
        # racing rotations cannot both promote (see idp/keyring/rotation.py).
        Index("uq_signing_keys_alg_active", "alg", unique=True, sqlite_where=text("state = 'active'"), postgresql_where=text("state = 'active'")),
        Index("uq_signing_keys_alg_next", "alg", unique=True, sqlite_where=text("state = 'next'"), postgresql_where=text("state = 'next'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)  # RFC 7638 thumbprint
    alg: Mapped[str] = mapped_column(String(10))
    state: Mapped[KeyState] = mapped_column(Enum(KeyState, native_enum=False, length=10, values_callable=lambda e: [m.value for m in e]))
    public_jwk: Mapped[str] = mapped_column(Text)
    private_jwk_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)  # published from here on
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<SigningKey {self.alg} {self.state.value} {self.kid}>"
