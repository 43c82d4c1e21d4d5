"""Client registration: validation of redirect URIs, grants and scopes; secrets shown once.

Lookups by client_id (every token, introspection and revocation request authenticates a client)
are served from a per-process cache of the client's column values (`ClientCache`): a change made
in this process (a flush touching a client, its commit or its rollback) empties it at once; a
change made in another process (another worker, another replica) is seen within
CLIENT_CACHE_SECONDS, the documented bound for a deleted client, a changed redirect URI or a
rotated secret to take effect everywhere (docs/performance.md). Unknown client_ids are never
cached, so a client registered anywhere works at once.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

from flask import Flask, current_app, has_app_context
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.clients.models import Client
from idp.config import is_loopback_host
from idp.db import db
from idp.errors import NotFoundError, ValidationError
from idp.keyring.models import ALGORITHMS
from idp.scopes import SCOPES  # re-exported: the admin form and the server read it here
from idp.security import CLIENT_SECRET_PREFIX, constant_time_equals, digest, random_token

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
DEFAULT_GRANT_TYPES = ["authorization_code", "refresh_token"]
DEFAULT_SCOPE = "openid profile email offline_access"
# What an ID token carries beyond who signed in and how (see Client.id_token_claims).
ID_TOKEN_CLAIMS = ("standard", "minimal")


def validate_redirect_uri(uri: str, field: str = "redirect_uri") -> str:
    """An absolute URI without fragment (RFC 6749 3.1.2); https, http on loopback, or a private-use scheme (RFC 8252 7.1)."""
    uri = (uri or "").strip()
    if len(uri) > 2000:
        raise ValidationError(f"{field} is too long", field=field)
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise ValidationError(f"{field} {uri!r} is not a valid URI", field=field) from None
    if not parts.scheme:
        raise ValidationError(f"{field} {uri!r} must be absolute", field=field)
    if parts.fragment or "#" in uri:
        raise ValidationError(f"{field} {uri!r} must not contain a fragment", field=field)
    if parts.scheme == "https":
        if not parts.hostname:
            raise ValidationError(f"{field} {uri!r} has no host", field=field)
    elif parts.scheme == "http":
        if not is_loopback_host(parts.hostname):
            raise ValidationError(f"{field} {uri!r} uses http on a non-loopback host; use https", field=field)
    elif "." not in parts.scheme:
        # RFC 8252 7.1: private-use schemes are reverse domain names, e.g. com.example.app:/cb
        raise ValidationError(f"{field} {uri!r} must use https, loopback http, or a reverse-domain scheme", field=field)
    return uri


def validate_https_url(uri: str, field: str) -> str:
    """An absolute https URL without fragment, e.g. a back-channel logout URI; loopback only for a loopback issuer.

    The worker POSTs to this URL: on a production issuer a loopback target would let an admin (or a
    stolen admin session) aim the IdP at services listening on its own host.
    """
    uri = validate_redirect_uri(uri, field)
    parts = urlsplit(uri)
    if parts.scheme not in {"http", "https"}:
        raise ValidationError(f"{field} {uri!r} must be an https URL", field=field)
    if not is_loopback_host(urlsplit(current_app.config["ISSUER"]).hostname):
        if parts.scheme != "https":
            raise ValidationError(f"{field} {uri!r} must use https", field=field)
        if is_loopback_host(parts.hostname):
            raise ValidationError(f"{field} {uri!r} must not be a loopback address", field=field)
    return uri


def validate_scope(scope: str) -> str:
    """A space-separated subset of the supported scopes, normalised."""
    scopes = (scope or "").split()
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValidationError(f"unknown scope {unknown[0]!r}; supported: {' '.join(SCOPES)}", field="scope")
    return " ".join(dict.fromkeys(scopes))


def validate_client_settings(
    *,
    name: str,
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str],
    public: bool,
    grant_types: list[str] | None,
    scope: str,
    token_endpoint_auth_method: str | None,
    require_pkce: bool,
    skip_consent: bool,
    backchannel_logout_uri: str | None,
    id_token_signed_response_alg: str,
    id_token_claims: str = "standard",
) -> dict:
    """Check a client's settings and return them normalised, as Client column values; raise ValidationError."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError("name must be 1 to 200 characters", field="name")
    grant_types = list(dict.fromkeys(grant_types or DEFAULT_GRANT_TYPES))
    for grant in grant_types:
        if grant not in GRANT_TYPES:
            raise ValidationError(f"unknown grant type {grant!r}; supported: {', '.join(GRANT_TYPES)}", field="grant_types")
    if public and "client_credentials" in grant_types:
        raise ValidationError("a public client cannot use client_credentials", field="grant_types")
    redirect_uris = [validate_redirect_uri(uri) for uri in redirect_uris]
    if "authorization_code" in grant_types and not redirect_uris:
        raise ValidationError("the authorization_code grant needs at least one redirect URI", field="redirect_uris")
    post_logout_redirect_uris = [validate_redirect_uri(uri, "post_logout_redirect_uri") for uri in post_logout_redirect_uris]
    if backchannel_logout_uri:
        backchannel_logout_uri = validate_https_url(backchannel_logout_uri, "backchannel_logout_uri")
    if token_endpoint_auth_method is None:
        token_endpoint_auth_method = "none" if public else "client_secret_basic"
    if token_endpoint_auth_method not in AUTH_METHODS:
        raise ValidationError(f"unknown token endpoint auth method {token_endpoint_auth_method!r}", field="token_endpoint_auth_method")
    if public != (token_endpoint_auth_method == "none"):
        raise ValidationError("public clients authenticate with 'none'; confidential clients with a secret", field="token_endpoint_auth_method")
    if id_token_signed_response_alg not in ALGORITHMS:
        raise ValidationError("id_token_signed_response_alg must be RS256 or ES256", field="id_token_signed_response_alg")
    if public and not require_pkce:
        raise ValidationError("public clients must use PKCE", field="require_pkce")
    if id_token_claims not in ID_TOKEN_CLAIMS:
        raise ValidationError(f"id_token_claims must be {' or '.join(ID_TOKEN_CLAIMS)}", field="id_token_claims")
    return dict(
        name=name,
        is_public=public,
        redirect_uris=list(dict.fromkeys(redirect_uris)),
        post_logout_redirect_uris=list(dict.fromkeys(post_logout_redirect_uris)),
        grant_types=grant_types,
        scope=validate_scope(scope),
        token_endpoint_auth_method=token_endpoint_auth_method,
        require_pkce=require_pkce,
        skip_consent=skip_consent,
        backchannel_logout_uri=backchannel_logout_uri or None,
        id_token_signed_response_alg=id_token_signed_response_alg,
        id_token_claims=id_token_claims,
    )


def new_client_id() -> str:
    """A fresh client_id: 128 random bits as hex.

    Hex, not base64url: an identifier that begins with "-" is read as an option by any command
    line it is pasted into (`idp clients update -Bfm...`), and one in 32 base64url ids does.
    """
    return secrets.token_hex(16)


def create_client(
    name: str,
    *,
    redirect_uris: list[str] = (),
    post_logout_redirect_uris: list[str] = (),
    public: bool = False,
    grant_types: list[str] | None = None,
    scope: str = DEFAULT_SCOPE,
    token_endpoint_auth_method: str | None = None,
    require_pkce: bool = True,
    skip_consent: bool = False,
    backchannel_logout_uri: str | None = None,
    id_token_signed_response_alg: str = "RS256",
    id_token_claims: str = "standard",
    actor: str = Actor.SYSTEM,
) -> tuple[Client, str | None]:
    """Register a client; return it and its secret (None for public clients), which is never stored."""
    settings = validate_client_settings(
        name=name,
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_redirect_uris),
        public=public,
        grant_types=grant_types,
        scope=scope,
        token_endpoint_auth_method=token_endpoint_auth_method,
        require_pkce=require_pkce,
        skip_consent=skip_consent,
        backchannel_logout_uri=backchannel_logout_uri,
        id_token_signed_response_alg=id_token_signed_response_alg,
        id_token_claims=id_token_claims,
    )
    secret = None if public else random_token(32, prefix=CLIENT_SECRET_PREFIX)
    client = Client(client_id=new_client_id(), secret_digest=digest(secret) if secret else None, **settings)
    db.session.add(client)
    db.session.flush()
    record("client.created", actor=actor, target=f"client:{client.client_id}", public=public)
    return client, secret


def update_client(client: Client, *, actor: str, **changes) -> list[str]:
    """Change a client's settings (its type stays); validated like registration. Returns changed fields."""
    current = {
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_types,
        "scope": client.scope,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "require_pkce": client.require_pkce,
        "skip_consent": client.skip_consent,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "id_token_claims": client.id_token_claims,
    }
    unknown = set(changes) - set(current)
    if unknown:
        raise ValidationError(f"cannot change {sorted(unknown)[0]!r}")
    settings = validate_client_settings(**{**current, **changes}, public=client.is_public)
    changed = sorted(field for field, value in settings.items() if getattr(client, field) != value)
    for field in changed:
        setattr(client, field, settings[field])
    if changed:
        record("client.updated", actor=actor, target=f"client:{client.client_id}", fields=changed)
    return changed


def delete_client(client: Client, *, actor: str) -> None:
    """Delete a client; its codes, consents and refresh families go with it (ON DELETE CASCADE).

    Access tokens already issued stay valid until they expire; refresh tokens die with their family.
    """
    record("client.deleted", actor=actor, target=f"client:{client.client_id}", name=client.name)
    db.session.delete(client)
    db.session.flush()


def verify_client_secret(client: Client, secret: str | None) -> bool:
    """Constant-time check of a presented secret against the stored digest."""
    if client.secret_digest is None or not secret:
        return False
    return constant_time_equals(digest(secret), client.secret_digest)


def rotate_client_secret(client: Client, *, actor: str = Actor.SYSTEM) -> str:
    """Replace a confidential client's secret; return the new one (shown once)."""
    if client.is_public:
        raise ValidationError("a public client has no secret")
    secret = random_token(32, prefix=CLIENT_SECRET_PREFIX)
    client.secret_digest = digest(secret)
    record("client.secret_rotated", actor=actor, target=f"client:{client.client_id}")
    return secret


# How long a process trusts its cached view of a client changed elsewhere (see the module docstring).
CLIENT_CACHE_SECONDS = 5
CLIENT_CACHE_ENTRIES = 10_000  # past this many clients the cache starts over: memory stays bounded
_FLUSHED_CLIENTS = "idp.clients_flushed"  # session.info flag: this transaction wrote a client


class ClientCache:
    """Column values of clients by client_id, each trusted for CLIENT_CACHE_SECONDS after it was read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock  # tests drive it to check the bound without sleeping
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, dict]] = {}
        # Bumped by every clear: a value read before a clear is not stored after it.
        self.generation = 0

    def now(self) -> float:
        return self._clock()

    def get(self, client_id: str) -> dict | None:
        entry = self._entries.get(client_id)
        if entry is None or self._clock() - entry[0] >= CLIENT_CACHE_SECONDS:
            return None
        return entry[1]

    def put(self, client_id: str, values: dict, generation: int, read_at: float) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= CLIENT_CACHE_ENTRIES:
                self._entries.clear()
            self._entries[client_id] = (read_at, values)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()

    def forget(self, client_id: str) -> None:
        """Drop one client's entry (a fresh read found it gone)."""
        with self._lock:
            self._entries.pop(client_id, None)


def init_client_cache(app: Flask) -> None:
    """Give `app` its client cache and empty it whenever this process writes a client."""
    app.extensions["idp.client_cache"] = ClientCache()
    for name, listener in (("after_flush", _after_flush), ("after_commit", _after_end), ("after_soft_rollback", _after_end)):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def _app_cache() -> ClientCache | None:
    return current_app.extensions.get("idp.client_cache") if has_app_context() else None


def _after_flush(session: Session, _context) -> None:
    if any(isinstance(row, Client) for row in (*session.new, *session.dirty, *session.deleted)):
        session.info[_FLUSHED_CLIENTS] = True
        if (cache := _app_cache()) is not None:
            cache.clear()


def _after_end(session: Session, *_args) -> None:
    # Committed, or undone: either way another read must see what the database now holds.
    if session.info.pop(_FLUSHED_CLIENTS, False) and (cache := _app_cache()) is not None:
        cache.clear()


def _own_copy(values: dict) -> dict:
    # Column values are scalars or (JSON) lists of strings: copying the lists copies everything mutable.
    return {key: list(value) if isinstance(value, list) else value for key, value in values.items()}


def _column_values(client: Client) -> dict:
    return _own_copy({attr.key: getattr(client, attr.key) for attr in inspect(Client).column_attrs})


def _attached(values: dict) -> Client:
    """A persistent, clean Client in this request's session, built from cached values without a query."""
    present = db.session.identity_map.get(identity_key(Client, values["id"]))
    if present is not None:
        return present
    client = Client(**_own_copy(values))  # the lists are this request's own
    make_transient_to_detached(client)
    db.session.add(client)
    return client


def get_client(client_id: str, *, fresh: bool = False) -> Client | None:
    """The client with this public client_id, or None; from the client cache unless `fresh`."""
    # A NUL byte is not storable text on PostgreSQL: refuse it here rather than fail the query.
    if not client_id or len(client_id) > 64 or "\x00" in client_id:
        return None
    cache = _app_cache()
    if cache is None:
        return db.session.scalar(select(Client).where(Client.client_id == client_id))
    if not fresh and (values := cache.get(client_id)) is not None:
        return _attached(values)
    generation, read_at = cache.generation, cache.now()
    client = db.session.scalar(select(Client).where(Client.client_id == client_id))
    if client is None:
        cache.forget(client_id)  # deleted by another process: no later lookup here may still find it
        return None
    unwritten = not db.session.info.get(_FLUSHED_CLIENTS) and client not in db.session.dirty
    if unwritten:
        cache.put(client_id, _column_values(client), generation, read_at)
    return client


def deleted_elsewhere(client_id: str | None) -> bool:
    """Whether a request that failed on a cached client met one another process deleted meanwhile.

    Within CLIENT_CACHE_SECONDS this process may still serve a client another replica deleted: its
    codes and refresh families went with it (ON DELETE CASCADE), or a row written for it fails its
    foreign key. Reads the client afresh (call it after rolling the failure back); when it is
    gone, its cache entry goes too, so the request can be answered as for any unknown client.
    """
    return bool(client_id) and get_client(client_id, fresh=True) is None


def require_client(client_id: str) -> Client:
    """The client with this client_id; raise NotFoundError if there is none."""
    client = get_client(client_id, fresh=True)
    if client is None:
        raise NotFoundError(f"no client with client_id {client_id!r}")
    return client


def list_clients(limit: int = 1000) -> list[Client]:
    """Clients ordered by id."""
    return list(db.session.scalars(select(Client).order_by(Client.id).limit(limit)))
