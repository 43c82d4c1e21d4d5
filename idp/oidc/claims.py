"""Claims about a user, released per scope (OpenID Connect Core 1.0 section 5.4).

One mapping (the scope vocabulary, idp/scopes.py) serves userinfo and ID tokens alike, so both
always release the same claims for the same scopes. A claim we have no value for is omitted rather
than sent as null (Core 5.3.2).
"""

from __future__ import annotations

from authlib.oidc.core import UserInfo

from idp.clients.models import Client
from idp.scopes import OPENID, claims_of
from idp.users.models import User

# Claims an ID token carries anyway (Core 2); the scope claims never override them.
ID_TOKEN_OWN_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "sid"})


def email_verified(user: User) -> bool:
    """Whether the user's email address has been verified: the one place `email_verified` is read from."""
    # True once the owner opened a link mailed to this very address (idp/onboarding).
    return user.email_verified


def user_claims(user: User) -> dict:
    """Every claim we can state about `user`, before any filtering by scope."""
    claims = {
        "sub": user.subject,
        "name": user.name or None,
        # The sign-in name is the email address, so that is what the user prefers to be called by.
        "preferred_username": user.email,
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
        "email": user.email,
        "email_verified": email_verified(user),
    }
    return {name: value for name, value in claims.items() if value is not None}


def claims_for(user: User, scope: str) -> UserInfo:
    """The claims `scope` releases about `user`: `sub` always, then profile and email claims."""
    wanted = claims_of(set((scope or "").split()) | {OPENID})
    return UserInfo({name: value for name, value in user_claims(user).items() if name in wanted})


def id_token_claims(client: Client, user: User, scope: str) -> dict:
    """The scope claims an ID token for `client` carries: those of `scope`, unless the client asked for minimal ID tokens.

    Core 5.4 sends scope claims from userinfo when an access token is issued, and Core 2 lets an ID
    token carry other claims too: most relying parties (Authlib's `token["userinfo"]`,
    express-openid-connect's `req.oidc.user`) read only the ID token, so by default it carries them.
    """
    if client.id_token_claims == "minimal":
        return {}
    return {name: value for name, value in claims_for(user, scope).items() if name not in ID_TOKEN_OWN_CLAIMS}
