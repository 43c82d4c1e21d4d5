"""idp: a self-hosted OAuth 2.0 / OpenID Connect provider."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Mapping

from flask import Flask

from idp import config as settings
from idp.config import ConfigError
from idp.outages import IdpFlask, init_outages
from idp.csrf import OriginCheckingCSRF
from idp.routing import check_methods

csrf = OriginCheckingCSRF()


def create_app(config: Mapping[str, Any] | None = None, *, require_secrets: bool = True) -> Flask:
    """Build the app: defaults -> environment -> `config` mapping -> extensions -> blueprints."""
    values = settings.load(config)
    app = IdpFlask(__name__, instance_path=values["INSTANCE_DIR"])
    app.config.update(values)
    configure_secrets(app, required=require_secrets)
    configure_logging(app)
    configure_input_guard(app)
    configure_extensions(app)
    configure_blueprints(app)
    configure_proxies(app)
    from idp.errors import register_error_handlers

    register_error_handlers(app)
    check_methods(app)
    return app


def read_key_file(keys_dir: str, name: str) -> list[str]:
    """Non-empty lines of a file under KEYS_DIR, or [] if it does not exist."""
    path = Path(keys_dir) / name
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def configure_secrets(app: Flask, *, required: bool) -> None:
    """Take SECRET_KEY and the key-encryption keys from the environment or, failing that, KEYS_DIR."""
    from idp.security import KeyEncryptor

    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = next(iter(read_key_file(app.config["KEYS_DIR"], "secret-key")), None)
    if not app.config["KEY_ENCRYPTION_KEYS"]:
        app.config["KEY_ENCRYPTION_KEYS"] = read_key_file(app.config["KEYS_DIR"], "key-encryption-keys")
        settings.load({"KEY_ENCRYPTION_KEYS": app.config["KEY_ENCRYPTION_KEYS"]}, environ={})
    if required and not (app.config["SECRET_KEY"] and app.config["KEY_ENCRYPTION_KEYS"]):
        raise ConfigError(
            f"no secret key or key-encryption keys: run `idp init`, or set IDP_SECRET_KEY and IDP_KEY_ENCRYPTION_KEYS"
        )
    app.extensions["idp.key_encryptor"] = KeyEncryptor(app.config["KEY_ENCRYPTION_KEYS"]) if app.config["KEY_ENCRYPTION_KEYS"] else None


def configure_logging(app: Flask) -> None:
    """JSON lines on stderr at the configured level, each request's id in them (idp/logs.py)."""
    from idp.logs import configure_logging as configure_json_logging, init_request_ids

    configure_json_logging(app.config["LOG_LEVEL"])
    init_request_ids(app)


def configure_input_guard(app: Flask) -> None:
    """Bounded route integers and the check refusing unstorable text, before anything else runs."""
    from idp.input_guard import init_input_guard

    init_input_guard(app)


def configure_extensions(app: Flask) -> None:
    """Database, server-side sessions, CSRF, the keyring cache and Celery."""
    from idp import models  # noqa: F401  (registers every model on the metadata)
    from idp.oidc import backchannel  # noqa: F401  (connects its session_ended receiver)
    from idp.tasks import outbox  # noqa: F401  (publishes queued tasks after commit)
    from idp.onboarding import mails  # noqa: F401  (the outbox handler of queued mail)
    from idp.db import db, engine_options
    from idp.keyring.service import _KeyringCache
    from idp.sessions.interface import ServerSessionInterface
    from idp.tasks import celery_init_app
    from idp.cors import init_cors

    app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]
    if app.config["DATABASE_URL"].startswith("sqlite"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config))
    db.init_app(app)
    init_outages(app)
    app.session_interface = ServerSessionInterface()
    # A CSRF token expires with the session's idle timeout (the admin UI checks its own, shorter one).
    app.config.update(SESSION_COOKIE_HTTPONLY=True, WTF_CSRF_TIME_LIMIT=app.config["SSO_SESSION_IDLE_TTL"], MAX_CONTENT_LENGTH=1024 * 1024)
    csrf.init_app(app)
    init_cors(app)
    app.extensions["idp.keyring_cache"] = _KeyringCache()
    celery_init_app(app)
    configure_oauth(app)
    from idp.oidc.discovery import add_metadata

    add_metadata(app, backchannel.backchannel_metadata)


def configure_proxies(app: Flask) -> None:
    """Client address, scheme and host from X-Forwarded-* of IDP_TRUSTED_PROXIES hops only."""
    from idp.proxies import init_proxies

    init_proxies(app)


# The server is module-level, shared by every app of a process: its endpoints are registered once.
_servers_with_endpoints: weakref.WeakSet = weakref.WeakSet()


def configure_oauth(app: Flask) -> None:
    """The authorization server on `app`, with every resource-facing endpoint (revocation,
    introspection, userinfo, end-session) registered on it, mounted, and advertised in discovery."""
    from idp.oauth.endpoints import IntrospectionEndpoint, RevocationEndpoint, token_endpoints_metadata
    from idp.oauth.endpoints import bp as token_endpoints_bp
    from idp.oauth.server import authorization, init_oauth
    from idp.oidc.discovery import add_metadata
    from idp.oidc.logout import EndSessionEndpoint, end_session_metadata
    from idp.oidc.logout import bp as logout_bp
    from idp.oidc.userinfo import UserInfoEndpoint, userinfo_metadata
    from idp.oidc.userinfo import bp as userinfo_bp

    if authorization not in _servers_with_endpoints:
        authorization.register_endpoint(RevocationEndpoint)
        authorization.register_endpoint(IntrospectionEndpoint)
        authorization.register_endpoint(UserInfoEndpoint.create())
        authorization.register_endpoint(EndSessionEndpoint)
        _servers_with_endpoints.add(authorization)
    for blueprint in (token_endpoints_bp, userinfo_bp, logout_bp):
        app.register_blueprint(blueprint)
    for contributor in (token_endpoints_metadata, userinfo_metadata, end_session_metadata):
        add_metadata(app, contributor)
    init_oauth(app)


def configure_blueprints(app: Flask) -> None:
    """Mount every feature's blueprint."""
    from idp.account.views import bp as account_bp
    from idp.auth.views import bp as auth_bp
    from idp.health import bp as health_bp
    from idp.keyring.views import bp as keyring_bp
    from idp.mfa.views import bp as mfa_bp
    from idp.oauth.views import bp as oauth_bp
    from idp.oidc.discovery import bp as discovery_bp
    from idp.onboarding.views import bp as onboarding_bp
    from admin_ui import bp as admin_bp

    for blueprint in (health_bp, keyring_bp, discovery_bp, admin_bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(oauth_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(mfa_bp)
    app.register_blueprint(onboarding_bp)
    from idp.metrics.views import init_metrics

    init_metrics(app)
