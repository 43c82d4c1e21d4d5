"""Imports every domain's models: the one metadata Alembic and the tests see."""

from idp.audit.models import AuditEvent
from idp.auth.models import LoginThrottle
from idp.clients.models import Client
from idp.db import Base, db
from idp.jobs.models import JobRun
from idp.keyring.models import KeyState, SigningKey
from idp.oauth.models import AuthorizationCode, Consent
from idp.sessions.models import UserSession
from idp.tasks.models import OutboxMessage
from idp.tokens.models import RefreshFamily, RefreshToken, RevokedAccessToken
from idp.users.models import User

__all__ = [
    "AuditEvent", "AuthorizationCode", "Base", "Client", "Consent", "JobRun", "KeyState", "LoginThrottle", "OutboxMessage",
    "RefreshFamily", "RefreshToken", "RevokedAccessToken", "SigningKey", "User", "UserSession", "db",
]
