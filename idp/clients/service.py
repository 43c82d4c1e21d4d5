"""Client registration: validation of redirect URIs, grants and scopes; secrets shown once."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from idp.audit.service import record
from idp.clients.models import Client
from idp.config import is_loopback_host
from idp.db import db
from idp.errors import NotFoundError, ValidationError
from idp.oauth.scopes import SCOPES  # re-exported: the admin form and the server read it here
from idp.security import CLIENT_SECRET_PREFIX, constant_time_equals, digest, random_token

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
DEFAULT_GRANT_TYPES = ["authorization_code", "refresh_token"]
DEFAULT_SCOPE = "openid profile email offline_access"


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
    if id_token_signed_response_alg not in ("RS256", "ES256"):
        raise ValidationError("id_token_signed_response_alg must be RS256 or ES256", field="id_token_signed_response_alg")
    if public and not require_pkce:
        raise ValidationError("public clients must use PKCE", field="require_pkce")
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
    )


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
    actor: str = "system",
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
    )
    secret = None if public else random_token(32, prefix=CLIENT_SECRET_PREFIX)
    client = Client(client_id=random_token(16), secret_digest=digest(secret) if secret else None, **settings)
    db.session.add(client)
    db.session.flush()
    record("client.created", actor=actor, target=f"client:{client.client_id}", public=public)
    db.session.commit()
    return client, secret


def update_client(client: Client, *, actor: str, **changes) -> list[str]:
    """Change a client's settings (its type stays); validated like registration. Returns changed fields; caller commits."""
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
    """Delete a client (caller commits); its codes, consents and refresh families go with it (ON DELETE CASCADE).

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


def rotate_client_secret(client: Client, *, actor: str = "system") -> str:
    """Replace a confidential client's secret; return the new one (shown once)."""
    if client.is_public:
        raise ValidationError("a public client has no secret")
    secret = random_token(32, prefix=CLIENT_SECRET_PREFIX)
    client.secret_digest = digest(secret)
    record("client.secret_rotated", actor=actor, target=f"client:{client.client_id}")
    db.session.commit()
    return secret


def get_client(client_id: str) -> Client | None:
    """The client with this public client_id, or None."""
    # A NUL byte is not storable text on PostgreSQL: refuse it here rather than fail the query.
    if not client_id or len(client_id) > 64 or "\x00" in client_id:
        return None
    return db.session.scalar(select(Client).where(Client.client_id == client_id))


def require_client(client_id: str) -> Client:
    """The client with this client_id; raise NotFoundError if there is none."""
    client = get_client(client_id)
    if client is None:
        raise NotFoundError(f"no client with client_id {client_id!r}")
    return client


def list_clients(limit: int = 1000) -> list[Client]:
    """Clients ordered by id."""
    return list(db.session.scalars(select(Client).order_by(Client.id).limit(limit)))
