"""Signing keys: generation with jwcrypto, encryption at rest, the published JWKS, the signing key."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from flask import current_app
from jwcrypto import jwk
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.clock import utcnow
from idp.config import KEYRING_CACHE_SECONDS
from idp.db import db
from idp.errors import NotFoundError, ValidationError
from idp.keyring.models import ALGORITHMS, PUBLISHED_STATES, KeyState, SigningKey
from idp.outages import describe, is_database_unavailable
from idp.security import KeyEncryptor

RSA_BITS = 2048
log = logging.getLogger(__name__)
# IDP_KEYRING_CACHE_SECONDS (idp/config.py): how long a web process trusts its cached view of the
# keyring; a rotation or revocation made anywhere is seen by every replica within that many
# seconds, without a restart. Rotation timings add it to their safety margins.


def key_encryptor() -> KeyEncryptor:
    """The app's key-encryption-key list; configured by the factory."""
    return current_app.extensions["idp.key_encryptor"]


def _new_jwk(alg: str) -> jwk.JWK:
    if alg == "RS256":
        return jwk.JWK.generate(kty="RSA", size=RSA_BITS)
    if alg == "ES256":
        return jwk.JWK.generate(kty="EC", crv="P-256")
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def generate_key(alg: str, state: KeyState, *, actor: str = Actor.SYSTEM, now: datetime | None = None) -> SigningKey:
    """Create a key in `state`; kid is its RFC 7638 thumbprint."""
    key = _new_jwk(alg)
    # One base64url thumbprint in 64 starts with "-", and `idp keys revoke KID` would read it as an
    # option: such a key is drawn again (rarely; its kid stays the RFC 7638 thumbprint).
    while key.thumbprint().startswith("-"):
        key = _new_jwk(alg)
    kid = key.thumbprint()  # RFC 7638, SHA-256
    public = json.loads(key.export_public())
    public.update(kid=kid, alg=alg, use="sig")
    now = now or utcnow()
    row = SigningKey(
        kid=kid,
        alg=alg,
        state=state,
        public_jwk=json.dumps(public, sort_keys=True),
        private_jwk_encrypted=key_encryptor().encrypt(key.export_private().encode()),
        created_at=now,
        activated_at=now if state is KeyState.ACTIVE else None,
    )
    db.session.add(row)
    record("key.created", actor=actor, target=f"key:{kid}", alg=alg, state=state.value)
    return row


def ensure_keys(*, actor: str = Actor.SYSTEM, now: datetime | None = None) -> list[SigningKey]:
    """Give every algorithm an active key and a published next key; idempotent. Returns keys made."""
    made = []
    for alg in ALGORITHMS:
        states = set(db.session.scalars(select(SigningKey.state).where(SigningKey.alg == alg)))
        if KeyState.ACTIVE not in states:
            made.append(generate_key(alg, KeyState.ACTIVE, actor=actor, now=now))
        if KeyState.NEXT not in states:
            made.append(generate_key(alg, KeyState.NEXT, actor=actor, now=now))
    return made


def rewrap_keys(*, actor: str) -> dict[str, int]:
    """Re-encrypt every private key under the newest key-encryption key, in one transaction.

    After it, older key-encryption keys can be dropped from the list. Returns how many keys were
    rewrapped and how many of them needed an older key. A key no listed key decrypts stops it with
    ValidationError before anything is written.
    """
    encryptor = key_encryptor()
    rows = list(db.session.scalars(select(SigningKey).order_by(SigningKey.id).with_for_update()))
    older, rewrapped = 0, []
    # Every key is rewrapped before any row changes, so a refusal leaves the caller's transaction
    # as it was (what the caller did before stays; the caller decides its fate).
    for row in rows:
        try:
            older += not encryptor.is_under_newest(row.private_jwk_encrypted)
            rewrapped.append(encryptor.rewrap(row.private_jwk_encrypted))
        except ValueError:
            raise ValidationError(
                f"no configured key-encryption key decrypts signing key {row.kid}; put the key-encryption key "
                "it was written under back into the list (after the new one) and run rewrap again"
            ) from None
    for row, private_jwk in zip(rows, rewrapped):
        row.private_jwk_encrypted = private_jwk
    record("keys.rewrapped", actor=actor, keys=len(rows), were_under_older_key=older)
    invalidate_cache()
    return {"rewrapped": len(rows), "were_under_older_key": older}


def require_key(kid: str) -> SigningKey:
    """The key with this kid; NotFoundError otherwise."""
    key = db.session.scalar(select(SigningKey).where(SigningKey.kid == kid))
    if key is None:
        raise NotFoundError(f"no signing key with kid {kid!r}")
    return key


def list_keys() -> list[SigningKey]:
    """Every key, grouped by algorithm, newest first."""
    return list(db.session.scalars(select(SigningKey).order_by(SigningKey.alg, SigningKey.created_at.desc(), SigningKey.id.desc())))


def describe_key(key: SigningKey) -> dict:
    """A key's public facts (never its private half) for `idp keys list --json` and the admin UI."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "kid": key.kid, "alg": key.alg, "state": key.state.value, "created_at": iso(key.created_at),
        "activated_at": iso(key.activated_at), "retired_at": iso(key.retired_at), "revoked_at": iso(key.revoked_at),
    }


def published_keys() -> list[SigningKey]:
    """Keys that belong in the JWKS: next, active and retired; never revoked ones."""
    return list(db.session.scalars(select(SigningKey).where(SigningKey.state.in_(PUBLISHED_STATES)).order_by(SigningKey.alg, SigningKey.id)))


@dataclass(frozen=True)
class PublishedJwks:
    """The JWKS document and its (strong, unquoted) ETag."""

    body: bytes
    etag: str


def jwks() -> PublishedJwks:
    """The public JWKS (RFC 7517 5): public members only, from the short-lived keyring cache."""
    return _cache().snapshot().jwks


def signing_key(alg: str) -> tuple[str, jwk.JWK]:
    """The active key for `alg` as (kid, private JWK); raise NotFoundError if there is none."""
    return _cache().snapshot().signing_key(alg)


def verification_key(kid: str) -> jwk.JWK | None:
    """The public key with this kid if it is published (next, active or retired); else None."""
    return _cache().snapshot().public.get(kid)


def signer(alg: str):
    """The active key for `alg` as (kid, cryptography private key), for idp.keyring.jws; NotFoundError if none."""
    return _cache().snapshot().signer(alg)


def verifier(kid: str):
    """(alg, cryptography public key) of the published key with this kid, or None; for idp.keyring.jws."""
    return _cache().snapshot().verifiers.get(kid)


def private_jwk(plaintext: bytes) -> jwk.JWK:
    """A private key decrypted from the keyring, ready to sign.

    The ciphertext is authenticated (Fernet), so this is byte for byte a key `generate_key` made and
    checked; cryptography's RSA consistency check (about 50 ms, 200 ms on a loaded machine, every time
    a process's keyring cache is rebuilt) would prove nothing more.
    """
    key = jwk.JWK.from_json(plaintext.decode())
    key.unsafe_skip_rsa_key_validation = True
    return key


class _Snapshot:
    """An immutable view of the keyring at one moment."""

    def __init__(self, keys: list[SigningKey], encryptor: KeyEncryptor):
        documents = [json.loads(key.public_jwk) for key in keys]
        body = json.dumps({"keys": documents}, sort_keys=True, separators=(",", ":")).encode()
        self.jwks = PublishedJwks(body=body, etag=hashlib.sha256(body).hexdigest()[:32])
        self.public = {doc["kid"]: jwk.JWK(**doc) for doc in documents}
        # Built once per snapshot: jwcrypto's conversion to a cryptography key costs more than an ES256 check.
        self.verifiers = {doc["kid"]: (doc["alg"], self.public[doc["kid"]].get_op_key("verify")) for doc in documents}
        self._active = {key.alg: (key.kid, key.private_jwk_encrypted) for key in keys if key.state is KeyState.ACTIVE}
        self._encryptor = encryptor
        self._private: dict[str, jwk.JWK] = {}
        self._signers: dict[str, tuple] = {}

    def signing_key(self, alg: str) -> tuple[str, jwk.JWK]:
        if alg not in self._active:
            raise NotFoundError(f"no active {alg} signing key; run `idp init` or `idp keys rotate --now`")
        kid, encrypted = self._active[alg]
        if kid not in self._private:
            self._private[kid] = private_jwk(self._encryptor.decrypt(encrypted))
        return kid, self._private[kid]

    def signer(self, alg: str):
        if alg not in self._signers:
            kid, key = self.signing_key(alg)
            self._signers[alg] = (kid, key.get_op_key("sign"))
        return self._signers[alg]


class _KeyringCache:
    """Per-process cache of the keyring, reloaded from the database once it is KEYRING_CACHE_SECONDS old.

    While the database is unreachable, the last good snapshot keeps serving (the JWKS, offline
    verification) for at most `stale_limit` seconds after it was loaded. That is safe because a
    key signs only after it has been published for KEY_ROTATION_LEAD_TIME: a snapshot younger
    than the lead time minus what caches add on top of it (JWKS_MAX_AGE, CLOCK_SKEW) already holds
    every key that may sign before a relying party's copy of it expires. The price: a key revoked
    elsewhere during the outage stays published here until the database is back or the limit
    passes. Past the limit the outage is a 503 like any other.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, seconds: float = KEYRING_CACHE_SECONDS):
        self._lock = threading.Lock()
        self._seconds = seconds  # IDP_KEYRING_CACHE_SECONDS
        self._clock = clock  # tests drive it to check the window without sleeping
        self._snapshot: _Snapshot | None = None
        self._loaded_at = 0.0
        self._retry_at = 0.0  # after a failed reload, wait as long as a fresh snapshot would last
        self._serving_stale = False

    def _stale(self) -> bool:
        if self._snapshot is None:
            return True
        now = self._clock()
        return now - self._loaded_at >= self._seconds and now >= self._retry_at

    def snapshot(self) -> _Snapshot:
        if self._stale():
            # With a snapshot in hand, a request that finds another one reloading serves it rather
            # than queueing behind a reload that may be waiting out a connect timeout (a reload
            # takes milliseconds while the database is healthy, so the window barely moves).
            if self._lock.acquire(blocking=self._snapshot is None):
                try:
                    if self._stale():
                        self._reload()
                finally:
                    self._lock.release()
        return self._snapshot

    def _reload(self) -> None:
        # Taken before the query, so the window is measured from no later than the read.
        loaded_at = self._clock()
        # A request already in a transaction has work the outage has cost: it must fail whole.
        at_stake = db.session().in_transaction()
        try:
            self._snapshot = _Snapshot(published_keys(), key_encryptor())
        except SQLAlchemyError as error:
            if at_stake or not self._may_serve_stale(error, loaded_at):
                raise
            # Try again as soon as a fresh snapshot would have expired, or the stale one must.
            self._retry_at = min(loaded_at + self._seconds, self._loaded_at + stale_limit(current_app.config))
            db.session.rollback()  # nothing to lose; the request's next query starts afresh
            return
        if self._serving_stale:
            log.warning("keyring reloaded from the database again")
            self._serving_stale = False
        self._loaded_at = loaded_at

    def _may_serve_stale(self, error: SQLAlchemyError, now: float) -> bool:
        if self._snapshot is None or not is_database_unavailable(error):
            return False
        age = now - self._loaded_at
        if age >= stale_limit(current_app.config):
            return False
        if not self._serving_stale:
            log.warning("database unavailable (%s); serving the keyring as loaded %.0f s ago", describe(error), age)
            self._serving_stale = True
        return True

    def invalidate(self) -> None:
        self._snapshot = None


def stale_limit(config) -> int:
    """How old a keyring snapshot may be and still be served while the database is down (see _KeyringCache)."""
    return config["KEY_ROTATION_LEAD_TIME"] - config["JWKS_MAX_AGE"] - config["CLOCK_SKEW"]


def _cache() -> _KeyringCache:
    return current_app.extensions["idp.keyring_cache"]


def load_cache() -> bool:
    """Load this process's keyring snapshot now; False (and a warning) when the database cannot be read."""
    try:
        _cache().snapshot()
    except SQLAlchemyError as error:
        db.session.rollback()
        log.warning("keyring not loaded ahead of the first request: %s", describe(error))
        return False
    return True


def invalidate_cache() -> None:
    """Drop this process's keyring view (after a change made in this process)."""
    _cache().invalidate()
