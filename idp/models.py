"""Imports every domain's models: the one metadata Alembic and the tests see."""

from idp.audit.models import AuditEvent
from idp.auth.models import LoginThrottle
from idp.clients.models import Client
from idp.db import Base, db
from idp.jobs.models import JobRun
from idp.keyring.models import KeyState, SigningKey
from idp.mfa.models import ClientMfaRequirement, MfaRequirement, Passkey, RecoveryCode, TotpFactor
from idp.oauth.models import AuthorizationCode, Consent
from idp.onboarding.models import OneTimeLink
from idp.sessions.models import UserSession
from idp.tasks.models import OutboxMessage
from idp.tokens.models import RefreshFamily, RefreshToken, RevokedAccessToken
from idp.users.models import User

__all__ = [
    "AuditEvent", "AuthorizationCode", "Base", "Client", "ClientMfaRequirement", "Consent", "JobRun", "KeyState", "LoginThrottle",
    "MfaRequirement", "OneTimeLink", "OutboxMessage", "Passkey", "RecoveryCode", "RefreshFamily", "RefreshToken", "RevokedAccessToken", "SigningKey",
    "TotpFactor", "User", "UserSession", "db",
]
