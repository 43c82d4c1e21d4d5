"""The only module that touches raw secrets: random tokens, digests, password hashing, key encryption."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app, has_app_context

from idp.config import SETTINGS_BY_NAME

# Visible prefixes let secret scanners recognise a leaked value (cf. warehouse's `pypi-` tokens).
CLIENT_SECRET_PREFIX = "idp_cs_"
REFRESH_TOKEN_PREFIX = "idp_rt_"


def random_token(nbytes: int = 32, prefix: str = "") -> str:
    """A URL-safe random string carrying `nbytes` bytes (default 256 bits) of entropy."""
    return prefix + secrets.token_urlsafe(nbytes)


def derived_token(key: str, context: str, prefix: str = "") -> str:
    """A token only the holder of `key` can compute from `context` (HMAC-SHA256), shaped like random_token's."""
    mac = hmac.new(key.encode(), context.encode(), hashlib.sha256).digest()
    return prefix + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def digest(value: str) -> str:
    """SHA-256 hex digest of a high-entropy token; what the database stores instead of the token."""
    return hashlib.sha256(value.encode()).hexdigest()


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two secrets without leaking where they differ."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


# Outside an app (scripts, unit tests) the settings table's defaults apply.
_ARGON2_SETTINGS = ("ARGON2_TIME_COST", "ARGON2_MEMORY_COST", "ARGON2_PARALLELISM")


def password_hasher() -> PasswordHasher:
    """argon2id with the current app's ARGON2_* settings (the table's defaults outside an app)."""
    source = current_app.config if has_app_context() else {name: SETTINGS_BY_NAME[name].default for name in _ARGON2_SETTINGS}
    return _hasher_for(*(source[name] for name in _ARGON2_SETTINGS))


@lru_cache(maxsize=8)
def _hasher_for(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


@lru_cache(maxsize=8)
def _dummy_hash(hasher: PasswordHasher) -> str:
    """Verified against when the user is unknown, so both failures cost one argon2 computation.

    Made on first use, not at import, so a process start (every CLI command) does not pay for it.
    """
    return hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """argon2id hash of a password."""
    return password_hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> tuple[bool, str | None]:
    """Check a password; return (ok, new_hash) where new_hash is set when parameters changed."""
    hasher = password_hasher()
    if password_hash is None:
        try:
            hasher.verify(_dummy_hash(hasher), password)
        except VerificationError:
            pass
        return False, None
    try:
        hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False, None
    if hasher.check_needs_rehash(password_hash):
        return True, hasher.hash(password)
    return True, None


class KeyEncryptor:
    """Encrypts private keys under a rotatable list of key-encryption keys (first encrypts, all decrypt)."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("at least one key-encryption key is required")
        self._newest = Fernet(keys[0])
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, plaintext: bytes) -> str:
        """Encrypt and authenticate `plaintext` under the newest key."""
        return self._fernet.encrypt(plaintext).decode()

    def decrypt(self, ciphertext: str) -> bytes:
        """Decrypt with whichever listed key encrypted it; raise ValueError otherwise."""
        try:
            return self._fernet.decrypt(ciphertext.encode())
        except InvalidToken:
            raise ValueError("no configured key-encryption key decrypts this value") from None

    def rewrap(self, ciphertext: str) -> str:
        """Re-encrypt under the newest key (for `idp keys rewrap`)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError("no configured key-encryption key decrypts this value") from None

    def is_under_newest(self, ciphertext: str) -> bool:
        """True when the newest key already decrypts `ciphertext` (no older key is needed for it)."""
        try:
            self._newest.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True
