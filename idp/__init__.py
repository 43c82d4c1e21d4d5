"""idp: a self-hosted OAuth 2.0 / OpenID Connect provider.

`create_app` is the one composition root: it loads the settings, binds the shared extensions
(idp/extensions.py), builds this app's authorization server, mounts every blueprint and wires
every signal receiver. Importing a module of the package does none of this.
"""

from __future__ import annotations

import gc

# Importing the app makes about 150,000 objects that live as long as the process, and the cyclic
# collector would walk the growing heap hundreds of times while they are made: about 0.15 s of CPU
# in every `idp` process. It is paused until the imports below are done, and what they made is then
# frozen out of it (gc.freeze), so no later collection walks it either.
_COLLECTOR_WAS_ON = gc.isenabled()
gc.disable()

from pathlib import Path  # noqa: E402 (this and every import below: with the collector paused)
from typing import Any, Mapping

from flask import Flask

from admin_ui import bp as admin_bp
from idp import config as settings
from idp import models  # noqa: F401  (registers every model on the metadata)
from idp.account.views import bp as account_bp
from idp.auth.views import bp as auth_bp
from idp.config import ConfigError
from idp.clients.service import init_client_cache
from idp.cors import init_cors
from idp.db import db as database, engine_options  # not `db`: that name is the idp.db module (migrations read idp.db.UTCDateTime)
from idp import extensions
from idp.errors import register_error_handlers
from idp.health import bp as health_bp
from idp.input_guard import init_input_guard
from idp.keyring.service import _KeyringCache
from idp.keyring.views import bp as keyring_bp
from idp.logs import configure_logging as configure_json_logging, init_request_ids
from idp.metrics.views import init_metrics
from idp.mfa.views import bp as mfa_bp
from idp.oauth import session_binding
from idp.oauth.endpoints import IntrospectionEndpoint, RevocationEndpoint, token_endpoints_metadata
from idp.oauth.endpoints import bp as token_endpoints_bp
from idp.oauth.server import build_authorization_server
from idp.oauth.views import bp as oauth_bp
from idp.oidc import backchannel
from idp.oidc.discovery import add_metadata
from idp.oidc.discovery import bp as discovery_bp
from idp.oidc.logout import EndSessionEndpoint, end_session_metadata
from idp.oidc.logout import bp as logout_bp
from idp.oidc.userinfo import UserInfoEndpoint, userinfo_metadata
from idp.oidc.userinfo import bp as userinfo_bp
from idp.onboarding import mails
from idp.onboarding.views import bp as onboarding_bp
from idp.outages import IdpFlask, init_outages
from idp.proxies import init_proxies
from idp.routing import check_methods
from idp.security import KeyEncryptor
from idp.sessions.interface import ServerSessionInterface
from idp.ui.views import bp as ui_bp
from idp.tasks import celery_init_app, outbox

gc.freeze()
if _COLLECTOR_WAS_ON:
    gc.enable()

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None, *, require_secrets: bool = True) -> Flask:
    """Build the app: defaults -> environment -> `config` mapping -> extensions -> blueprints."""
    values = settings.load(config)
    app = IdpFlask(__name__, instance_path=values["INSTANCE_DIR"])
    app.config.update(values)
    configure_secrets(app, required=require_secrets)
    configure_logging(app)
    init_input_guard(app)  # bounded route integers and unstorable text refused before anything else runs
    configure_extensions(app)
    configure_blueprints(app)
    init_proxies(app)
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
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = next(iter(read_key_file(app.config["KEYS_DIR"], "secret-key")), None)
    if not app.config["KEY_ENCRYPTION_KEYS"]:
        app.config["KEY_ENCRYPTION_KEYS"] = read_key_file(app.config["KEYS_DIR"], "key-encryption-keys")
        settings.load({"KEY_ENCRYPTION_KEYS": app.config["KEY_ENCRYPTION_KEYS"]}, environ={})
    if required and not (app.config["SECRET_KEY"] and app.config["KEY_ENCRYPTION_KEYS"]):
        raise ConfigError(
            "no secret key or key-encryption keys: run `idp init`, or set IDP_SECRET_KEY and IDP_KEY_ENCRYPTION_KEYS"
        )
    app.extensions["idp.key_encryptor"] = KeyEncryptor(app.config["KEY_ENCRYPTION_KEYS"]) if app.config["KEY_ENCRYPTION_KEYS"] else None


def configure_logging(app: Flask) -> None:
    """JSON lines on stderr at the configured level, each request's id in them (idp/logs.py)."""
    configure_json_logging(app.config["LOG_LEVEL"])
    init_request_ids(app)


def configure_extensions(app: Flask) -> None:
    """Database, server-side sessions, CSRF, the keyring cache, the client cache, Celery, the authorization server."""
    app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]
    if app.config["DATABASE_URL"].startswith("sqlite"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config))
    database.init_app(app)
    init_outages(app)
    app.session_interface = ServerSessionInterface()
    # MAX_CONTENT_LENGTH is a setting under Flask's own name; Flask-WTF reads the CSRF lifetime here.
    app.config.update(SESSION_COOKIE_HTTPONLY=True, WTF_CSRF_TIME_LIMIT=app.config["CSRF_TOKEN_TTL"])
    extensions.csrf.init_app(app)
    init_cors(app)
    app.extensions["idp.keyring_cache"] = _KeyringCache(seconds=app.config["KEYRING_CACHE_SECONDS"])
    init_client_cache(app)
    celery_init_app(app)
    wire_receivers()
    configure_oauth(app)
    add_metadata(app, backchannel.backchannel_metadata)


def wire_receivers() -> None:
    """Connect the features that react to another's events (connecting twice is a no-op)."""
    # Ending an SSO session revokes the refresh families bound to it and tells relying parties.
    session_binding.connect()
    backchannel.connect()
    # Queued mail (resets, verifications, invitations) is delivered by the outbox.
    mails.connect()
    # Messages written to the outbox are published once their transaction commits.
    outbox.connect()


def configure_oauth(app: Flask) -> None:
    """This app's authorization server with every resource-facing endpoint (revocation,
    introspection, userinfo, end-session) registered on it, mounted, and advertised in discovery."""
    build_authorization_server(app, endpoints=(RevocationEndpoint, IntrospectionEndpoint, UserInfoEndpoint.create(), EndSessionEndpoint))
    for blueprint in (token_endpoints_bp, userinfo_bp, logout_bp):
        app.register_blueprint(blueprint)
    for contributor in (token_endpoints_metadata, userinfo_metadata, end_session_metadata):
        add_metadata(app, contributor)


def configure_blueprints(app: Flask) -> None:
    """Mount every feature's blueprint."""
    for blueprint in (ui_bp, health_bp, keyring_bp, discovery_bp, admin_bp, oauth_bp, auth_bp, account_bp, mfa_bp, onboarding_bp):
        app.register_blueprint(blueprint)
    init_metrics(app)
