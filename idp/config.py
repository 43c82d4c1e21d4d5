"""Every setting of the IdP, once: its default, a one-line comment and its ``IDP_*`` variable.

Precedence, lowest first: the default here, the environment (``IDP_<NAME>``), then the mapping
passed to ``create_app(config)`` (tests). Bad values fail at start-up with one ``ConfigError``
line; the CLI prints it and exits 2.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from cryptography.fernet import Fernet


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line meant for the operator."""


def _int(raw: str) -> int:
    return int(raw)


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _str(raw: str) -> str:
    return raw


@dataclass(frozen=True)
class Setting:
    """One setting: Flask config key, default (a value or a function of the settings so far)."""

    name: str
    default: Any
    doc: str
    parse: Callable[[str], Any] = _str

    @property
    def env(self) -> str:
        return f"IDP_{self.name}"


MINUTE, HOUR, DAY = 60, 3600, 86400
# The default of IDP_KEYRING_CACHE_SECONDS (idp/keyring/service.py): a key takes up to this much
# longer to appear in or leave a web process's view than the database says.
KEYRING_CACHE_SECONDS = 5

SETTINGS: tuple[Setting, ...] = (
    # Identity and storage
    Setting("ISSUER", "http://localhost:8000", "Issuer URL; every token's `iss`. https, or http on a loopback host only."),
    Setting("INSTANCE_DIR", "instance", "Folder for the embedded SQLite database and broker (relative to the working directory)."),
    Setting("DATABASE_URL", lambda s: f"sqlite:///{Path(s['INSTANCE_DIR']).resolve()}/idp.sqlite3", "SQLAlchemy URL: `sqlite:///PATH` or `postgresql://...` (psycopg 3)."),
    Setting("KEYS_DIR", "keys", "Folder for embedded-default key material written by `idp init` (never committed)."),
    Setting("SECRET_KEY", None, "Flask secret key (signs CSRF tokens). Default: `KEYS_DIR/secret-key`, made by `idp init`."),
    Setting("KEY_ENCRYPTION_KEYS", None, "Comma-separated Fernet keys encrypting private signing keys; the first encrypts, all decrypt. Default: `KEYS_DIR/key-encryption-keys`.", _list),
    Setting("CELERY_BROKER_URL", lambda s: f"sqla+sqlite:///{Path(s['INSTANCE_DIR']).resolve()}/celery-broker.sqlite3", "Celery broker: `redis://...` in production; the default needs no server."),
    Setting("LOG_LEVEL", "INFO", "Python logging level of the web and worker processes."),
    Setting("DATABASE_CONNECT_TIMEOUT", 3, "PostgreSQL: seconds to wait for a connection, a free one in the pool, or the acknowledgement of sent data, before answering 503.", _int),
    Setting("DATABASE_STATEMENT_TIMEOUT", 5, "PostgreSQL: seconds a statement may run before it is cancelled (0 = no limit; migrations never have one).", _int),
    Setting("TRUSTED_PROXIES", 0, "Reverse-proxy hops in front of the web server whose `X-Forwarded-For`/`-Proto`/`-Host`/`-Port` are believed (0 = ignore those headers).", _int),
    # gunicorn's own FORWARDED_ALLOW_IPS is refused (see IGNORED_VARIABLES): it would apply the same trust a second time.
    Setting("MAX_CONTENT_LENGTH", 1024 * 1024, "Largest request body in bytes; a larger one is refused with 413 before it is read.", _int),
    # Observability
    Setting("METRICS", lambda s: is_loopback_host(urlsplit(s["ISSUER"]).hostname), "Serve Prometheus metrics at `/metrics` (default: on for a loopback issuer, off otherwise).", _bool),
    Setting("METRICS_ALLOWED_NETWORKS", lambda s: ["127.0.0.0/8", "::1/128"], "Comma-separated networks (CIDR) whose clients may read `/metrics`; others get 403.", _list),
    # Tokens (lifetimes in seconds)
    Setting("ACCESS_TOKEN_TTL", 5 * MINUTE, "Lifetime of JWT access tokens (RFC 9068).", _int),
    Setting("ID_TOKEN_TTL", HOUR, "Lifetime of ID tokens.", _int),
    Setting("AUTHORIZATION_CODE_TTL", 10 * MINUTE, "Lifetime of authorization codes (at most 600, RFC 6749 4.1.2).", _int),
    Setting("REFRESH_TOKEN_IDLE_TTL", 14 * DAY, "A refresh token unused this long expires.", _int),
    Setting("REFRESH_TOKEN_ABSOLUTE_TTL", 90 * DAY, "A refresh-token family expires this long after the grant, however used.", _int),
    Setting("REFRESH_TOKEN_REUSE_GRACE", 0, "Seconds after its rotation a refresh token may be redeemed again while its successor is unused; the unused successor is then spent (0 = strict: any replay revokes the family).", _int),
    Setting("CLOCK_SKEW", MINUTE, "Leeway allowed for clock differences when checking `exp`/`iat`.", _int),
    # Sessions (lifetimes in seconds)
    Setting("SSO_SESSION_IDLE_TTL", 8 * HOUR, "An end-user SSO session unused this long ends.", _int),
    Setting("SSO_SESSION_ABSOLUTE_TTL", 7 * DAY, "An end-user SSO session ends this long after sign-in, however used.", _int),
    Setting("ADMIN_SESSION_IDLE_TTL", 30 * MINUTE, "An admin UI session unused this long ends.", _int),
    Setting("ADMIN_SESSION_ABSOLUTE_TTL", 12 * HOUR, "An admin UI session ends this long after sign-in, however used.", _int),
    Setting("CSRF_TOKEN_TTL", lambda s: s["SSO_SESSION_IDLE_TTL"], "Seconds a form's CSRF token stays valid (default: the SSO session's idle lifetime; the admin UI checks its own, shorter one).", _int),
    # Back-channel logout
    Setting("BACKCHANNEL_RETRY_BASE_SECONDS", 5, "First retry delay of a failed back-channel logout delivery; doubles each retry.", _int),
    # Keys
    Setting("JWKS_MAX_AGE", 5 * MINUTE, "`Cache-Control: max-age` of the JWKS; a new key is published at least this long before it signs.", _int),
    Setting("DISCOVERY_MAX_AGE", 5 * MINUTE, "`Cache-Control: max-age` of the discovery documents (`/.well-known/...`).", _int),
    Setting("KEYRING_CACHE_SECONDS", KEYRING_CACHE_SECONDS, "How long each web process trusts its in-memory view of the keyring; a rotation reaches every replica within this many seconds.", _int),
    # Password hashing: argon2id. The defaults are OWASP's stated minimum for argon2id (Password
    # Storage Cheat Sheet: 19 MiB, 2 iterations, 1 lane). Raising them rehashes each password at its
    # next successful sign-in.
    Setting("ARGON2_TIME_COST", 2, "argon2id iterations (t) per password hash.", _int),
    Setting("ARGON2_MEMORY_COST", 19456, "argon2id memory (m) per password hash, in KiB (19456 = 19 MiB); at least 8 x ARGON2_PARALLELISM.", _int),
    Setting("ARGON2_PARALLELISM", 1, "argon2id lanes (p) per password hash.", _int),
    # Sign-in (authorization endpoint, login, token endpoint)
    Setting("REFRESH_TOKENS_FOR_CONFIDENTIAL_CLIENTS", False, "Also give confidential clients a refresh token without `offline_access` (bound to the SSO session).", _bool),
    Setting("LOGIN_THROTTLE_WINDOW", 15 * MINUTE, "A throttle bucket forgets its failures this many seconds after the last one, once no back-off is running.", _int),
    Setting("LOGIN_THROTTLE_PER_ACCOUNT", 5, "Wrong passwords for one account from one IP address before that address is backed off for that account.", _int),
    Setting("LOGIN_THROTTLE_PER_IP", 20, "Wrong passwords from one IP address, whatever the account, before that address is backed off.", _int),
    Setting("LOGIN_THROTTLE_PER_ACCOUNT_NEW_IPS", 10, "Wrong passwords for one account from addresses that never signed in to it before every such address is backed off for it (known addresses are exempt).", _int),
    Setting("LOGIN_THROTTLE_BACKOFF_BASE", 30, "First back-off (seconds) once a limit is reached; every further wrong password doubles it.", _int),
    Setting("LOGIN_THROTTLE_BACKOFF_CAP", 15 * MINUTE, "Longest back-off (seconds).", _int),
    Setting("LOGIN_THROTTLE_KNOWN_IP_TTL", 90 * DAY, "An address that signed in to an account stays exempt from that account's new-address limit this long.", _int),
    Setting("MFA_POLICY", "optional", "`optional`: users may add a second factor; `required`: every user must have one and use it at sign-in."),
    Setting("MFA_PENDING_TTL", 5 * MINUTE, "Seconds a correct password waits for its second factor before the sign-in starts over.", _int),
    Setting("WEBAUTHN_CHALLENGE_TTL", 2 * MINUTE, "Seconds a WebAuthn challenge stays valid (each is single use).", _int),
    # Key rotation and background jobs (seconds)
    Setting("KEY_ROTATION_PERIOD", 30 * DAY, "How long a key signs before the scheduled rotation replaces it (0 = rotate only by hand).", _int),
    Setting("KEY_ROTATION_LEAD_TIME", lambda s: max(HOUR, minimum_lead_time(s)), "How long a `next` key is published before it may sign; at least JWKS_MAX_AGE + CLOCK_SKEW + KEYRING_CACHE_SECONDS.", _int),
    Setting("ID_TOKEN_HINT_TTL", lambda s: s["SSO_SESSION_ABSOLUTE_TTL"], "How long after issue an ID token is still accepted as `id_token_hint`, at logout or authorization (default: the SSO session's absolute lifetime).", _int),
    Setting("KEY_RETIREMENT_GRACE", lambda s: minimum_retirement_grace(s), "How long a retired key stays published; at least the longest token lifetime (access, ID, id_token_hint) + CLOCK_SKEW.", _int),
    Setting("AUDIT_RETENTION", 365 * DAY, "Audit events older than this are purged (0 = keep forever).", _int),
    Setting("JOB_RUN_RETENTION", 30 * DAY, "Job-run records older than this are purged (the last run of each job is always kept).", _int),
    Setting("OUTBOX_RETENTION", 7 * DAY, "Handled outbox messages (delivered, or given up after the last retry) older than this are purged.", _int),
    Setting("PURGE_BATCH_SIZE", 5000, "Rows deleted per transaction by the purge job (bounds its memory and lock time).", _int),
    # Mail, account recovery, verification, invitations and sign-up
    Setting("SMTP_URL", None, "Outgoing mail server: `smtp://user:pass@host:587` (STARTTLS), `smtps://user:pass@host:465` (implicit TLS). Empty: mail is written as `.eml` files to `INSTANCE_DIR/mail` (development)."),
    Setting("SMTP_ALLOW_PLAIN", False, "Let `smtp://` to a non-loopback host send without STARTTLS when the server offers none (a loopback host may always).", _bool),
    Setting("SMTP_CA_FILE", None, "PEM file of the CAs trusted for the mail server's certificate (empty: the system's)."),
    Setting("MAIL_FROM", lambda s: f"no-reply@{urlsplit(s['ISSUER']).hostname}", "The `From:` address of every mail the IdP sends."),
    Setting("MAIL_RETRY_BASE_SECONDS", 30, "First retry delay of a mail the server did not accept; doubles each retry, 6 attempts in all.", _int),
    Setting("PASSWORD_RESET_TTL", 30 * MINUTE, "Seconds a password-reset link stays valid (single use; a newer link replaces it).", _int),
    Setting("EMAIL_VERIFICATION_TTL", DAY, "Seconds an email-verification link stays valid.", _int),
    Setting("INVITATION_TTL", 7 * DAY, "Seconds an invitation link stays valid.", _int),
    Setting("SIGNUP", "off", "Self-service sign-up: `off`, `open`, or a comma-separated list of email domains allowed to sign up."),
    Setting("SIGNUP_REQUIRE_VERIFIED", True, "A signed-up account can sign in only once its email address is verified.", _bool),
    # admin UI
    Setting("ADMIN_REAUTH_MAX_AGE", 5 * MINUTE, "Sensitive admin actions (keys, client secrets, admin rights) need the password entered within this many seconds.", _int),
    Setting("ADMIN_PAGE_SIZE", 50, "Rows per page on the admin UI's lists (1 to 500).", _int),
    # Branding of every page (end-user and admin)
    Setting("BRAND_NAME", "idp", "Product name shown in every page's header and title."),
    Setting("BRAND_LOGO_URL", None, "Logo shown before the name: a same-origin path (`/brand/logo.svg`, served by your proxy) or an `https://` URL (empty = none)."),
    Setting("BRAND_COLOR", "#0b5cad", "Primary colour of buttons and links, `#rrggbb`; the text on it is black or white, whichever reads better."),
)


def minimum_lead_time(values: Mapping[str, Any]) -> int:
    """A next key must outlive every cached JWKS that lacks it: HTTP cache + clock skew + process cache."""
    return values["JWKS_MAX_AGE"] + values["CLOCK_SKEW"] + values["KEYRING_CACHE_SECONDS"]


def minimum_retirement_grace(values: Mapping[str, Any]) -> int:
    """A retired key must verify every token it signed until the longest-lived one expires."""
    return max(values["ACCESS_TOKEN_TTL"], values["ID_TOKEN_TTL"], values["ID_TOKEN_HINT_TTL"]) + values["CLOCK_SKEW"]

# The test suite's and the benchmarks' own variables (IDP_TEST_DATABASE_URL, IDP_BENCH_DATABASE_URL)
# configure those tools, not the IdP.
TOOL_PREFIXES = ("IDP_TEST_", "IDP_BENCH_")

SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}

# Variables other programs would read in our processes, each overridden by a setting of ours: refused
# rather than silently ignored. gunicorn reads FORWARDED_ALLOW_IPS, but `idp serve` has it believe no
# forwarded header, so IDP_TRUSTED_PROXIES (idp/proxies.py) is the one place that trust is decided.
IGNORED_VARIABLES = {"FORWARDED_ALLOW_IPS": "TRUSTED_PROXIES"}

_DATABASE_SCHEMES = {"sqlite", "postgresql", "postgresql+psycopg", "postgres"}


def load(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Resolve every setting (default, then environment, then overrides) and validate the result."""
    environ = os.environ if environ is None else environ
    refuse_unknown_variables(environ)
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in overrides:
            values[setting.name] = overrides.pop(setting.name)
        elif setting.env in environ:
            raw = environ[setting.env]
            try:
                values[setting.name] = setting.parse(raw)
            except ValueError:
                raise ConfigError(f"{setting.env}={raw!r} is not valid") from None
        elif callable(setting.default):
            values[setting.name] = setting.default(values)
        else:
            values[setting.name] = setting.default
    _validate(values)
    # Keys the settings table does not know (TESTING, Flask or extension options) pass through.
    values.update(overrides)
    return values


def refuse_unknown_variables(environ: Mapping[str, str]) -> None:
    """An ``IDP_*`` variable the table lacks is a typo or a removed setting: say so, never ignore it."""
    known = [setting.env for setting in SETTINGS]
    for name, instead in IGNORED_VARIABLES.items():
        if name in environ:
            raise ConfigError(f"{name} is not read: set IDP_{instead} instead")
    for name in sorted(environ):
        if name.startswith("IDP_") and name not in known and not name.startswith(TOOL_PREFIXES):
            closest = difflib.get_close_matches(name, known, n=1, cutoff=0) or known[:1]
            raise ConfigError(f"{name} is not a setting (did you mean {closest[0]}?)")


def _validate(values: dict[str, Any]) -> None:
    values["ISSUER"] = validate_issuer(values["ISSUER"])
    values["INSTANCE_DIR"] = str(Path(values["INSTANCE_DIR"]).resolve())
    values["KEYS_DIR"] = str(Path(values["KEYS_DIR"]).resolve())
    values["DATABASE_URL"] = normalize_database_url(values["DATABASE_URL"])
    if not 0 < values["AUTHORIZATION_CODE_TTL"] <= 600:
        raise ConfigError("IDP_AUTHORIZATION_CODE_TTL must be between 1 and 600 seconds (RFC 6749 4.1.2)")
    for setting in SETTINGS:
        if setting.parse is _int and values[setting.name] < 0:
            raise ConfigError(f"{setting.env} must not be negative")
    if values["KEY_ROTATION_LEAD_TIME"] < minimum_lead_time(values):
        raise ConfigError(f"IDP_KEY_ROTATION_LEAD_TIME must be at least JWKS_MAX_AGE + CLOCK_SKEW + {values['KEYRING_CACHE_SECONDS']} = {minimum_lead_time(values)} seconds")
    if values["KEY_RETIREMENT_GRACE"] < minimum_retirement_grace(values):
        raise ConfigError(
            "IDP_KEY_RETIREMENT_GRACE must be at least the longest of ACCESS_TOKEN_TTL, ID_TOKEN_TTL and "
            f"ID_TOKEN_HINT_TTL plus CLOCK_SKEW = {minimum_retirement_grace(values)} seconds"
        )
    if values["DATABASE_CONNECT_TIMEOUT"] < 2:
        # libpq and psycopg treat anything shorter as 2 seconds.
        raise ConfigError("IDP_DATABASE_CONNECT_TIMEOUT must be at least 2 seconds")
    for name in ("LOGIN_THROTTLE_PER_ACCOUNT", "LOGIN_THROTTLE_PER_IP", "LOGIN_THROTTLE_PER_ACCOUNT_NEW_IPS", "LOGIN_THROTTLE_BACKOFF_BASE"):
        if values[name] < 1:
            raise ConfigError(f"IDP_{name} must be at least 1")
    if values["LOGIN_THROTTLE_BACKOFF_CAP"] < values["LOGIN_THROTTLE_BACKOFF_BASE"]:
        raise ConfigError("IDP_LOGIN_THROTTLE_BACKOFF_CAP must be at least IDP_LOGIN_THROTTLE_BACKOFF_BASE")
    for name in ("ARGON2_TIME_COST", "ARGON2_PARALLELISM"):
        if values[name] < 1:
            raise ConfigError(f"IDP_{name} must be at least 1")
    if values["ARGON2_MEMORY_COST"] < 8 * values["ARGON2_PARALLELISM"]:
        raise ConfigError("IDP_ARGON2_MEMORY_COST must be at least 8 KiB per lane (8 x IDP_ARGON2_PARALLELISM)")
    if values["MAX_CONTENT_LENGTH"] < 1024:
        raise ConfigError("IDP_MAX_CONTENT_LENGTH must be at least 1024 bytes")
    if values["PURGE_BATCH_SIZE"] < 1:
        raise ConfigError("IDP_PURGE_BATCH_SIZE must be at least 1")
    if not 1 <= values["ADMIN_PAGE_SIZE"] <= 500:
        raise ConfigError("IDP_ADMIN_PAGE_SIZE must be between 1 and 500")
    for name in ("MFA_PENDING_TTL", "WEBAUTHN_CHALLENGE_TTL"):
        if values[name] < 1:
            raise ConfigError(f"IDP_{name} must be at least 1 second")
    if values["MFA_POLICY"] not in {"optional", "required"}:
        raise ConfigError(f"IDP_MFA_POLICY={values['MFA_POLICY']!r} must be optional or required")
    values["SMTP_URL"] = validate_smtp_url(values["SMTP_URL"])
    values["SIGNUP"] = validate_signup(values["SIGNUP"])
    for name in ("PASSWORD_RESET_TTL", "EMAIL_VERIFICATION_TTL", "INVITATION_TTL", "MAIL_RETRY_BASE_SECONDS"):
        if values[name] < 1:
            raise ConfigError(f"IDP_{name} must be at least 1 second")
    if "@" not in values["MAIL_FROM"]:
        raise ConfigError(f"IDP_MAIL_FROM={values['MAIL_FROM']!r} is not an email address")
    if values["LOG_LEVEL"].upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"IDP_LOG_LEVEL={values['LOG_LEVEL']!r} is not a logging level")
    for network in values["METRICS_ALLOWED_NETWORKS"]:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"IDP_METRICS_ALLOWED_NETWORKS holds {network!r}, which is not a network") from None
    validate_branding(values)
    for key in values["KEY_ENCRYPTION_KEYS"] or []:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError("IDP_KEY_ENCRYPTION_KEYS holds a value that is not a Fernet key") from None


def validate_branding(values: dict[str, Any]) -> None:
    """The brand name is one short line, the colour `#rrggbb`, the logo a local path or an https URL."""
    name = values["BRAND_NAME"].strip()
    if not name or len(name) > 64 or any(ord(char) < 0x20 for char in name):
        raise ConfigError("IDP_BRAND_NAME must be one line of 1 to 64 characters")
    values["BRAND_NAME"] = name
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", values["BRAND_COLOR"]):
        raise ConfigError(f"IDP_BRAND_COLOR={values['BRAND_COLOR']!r} is not a colour of the form #rrggbb")
    values["BRAND_COLOR"] = values["BRAND_COLOR"].lower()
    logo = (values["BRAND_LOGO_URL"] or "").strip()
    parts = urlsplit(logo)
    local = logo.startswith("/") and not logo.startswith("//") and not parts.scheme and not parts.netloc
    unsafe = any(char in logo for char in "\"\\'<>;, \t\n")  # it lands in an attribute and a CSP header
    if logo and (unsafe or not (local or (parts.scheme == "https" and parts.hostname))):
        raise ConfigError(f"IDP_BRAND_LOGO_URL={logo!r} must be a path on this server (/...) or an https:// URL")
    values["BRAND_LOGO_URL"] = logo


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback IP literals (RFC 8252 7.3)."""
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_issuer(issuer: str) -> str:
    """An issuer is an absolute https URL without query or fragment (OIDC Discovery 3); http only on loopback."""
    parts = urlsplit(issuer)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"IDP_ISSUER={issuer!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"IDP_ISSUER={issuer!r} must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(f"IDP_ISSUER={issuer!r} uses http on a non-loopback host; use https")
    return issuer.rstrip("/")


def validate_smtp_url(url: str | None) -> str | None:
    """None (the mail folder), or smtp:// / smtps:// with a host; the password never appears in the error."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise ConfigError("IDP_SMTP_URL must look like smtp://user:pass@host:587 or smtps://user:pass@host:465")
    try:
        parts.port
    except ValueError:
        raise ConfigError("IDP_SMTP_URL has a port that is not a number") from None
    return url


def validate_signup(value: str) -> str:
    """`off`, `open`, or a comma-separated list of domains (lower-cased, spaces dropped)."""
    value = value.strip().lower()
    if value in {"off", "open"}:
        return value
    domains = _list(value)
    if not domains or any("@" in domain or "." not in domain for domain in domains):
        raise ConfigError(f"IDP_SIGNUP={value!r} must be off, open, or a comma-separated list of email domains")
    return ",".join(domains)


def normalize_database_url(url: str) -> str:
    """Accept sqlite and PostgreSQL URLs; PostgreSQL always goes through psycopg 3."""
    scheme = url.split(":", 1)[0] if ":" in url else ""
    if scheme not in _DATABASE_SCHEMES:
        raise ConfigError(f"IDP_DATABASE_URL has unknown scheme {scheme!r}; use sqlite or postgresql")
    if scheme in {"postgresql", "postgres"}:
        return "postgresql+psycopg" + url[len(scheme):]
    return url


def generate_key_encryption_key() -> str:
    """A fresh Fernet key for the key-encryption-key list."""
    return Fernet.generate_key().decode()
