"""Claims about a user, released per scope (OpenID Connect Core 1.0 section 5.4).

One mapping serves userinfo and ID tokens alike, so both always release the same claims for the
same scopes. A claim we have no value for is omitted rather than sent as null (Core 5.3.2).
"""

from __future__ import annotations

from authlib.oidc.core import UserInfo

from idp.oauth.scopes import OPENID, claims_of
from idp.users.models import User


def user_claims(user: User) -> dict:
    """Every claim we can state about `user`, before any filtering by scope."""
    claims = {
        "sub": user.subject,
        "name": user.name or None,
        # The sign-in name is the email address, so that is what the user prefers to be called by.
        "preferred_username": user.email,
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
        "email": user.email,
        # Nothing verifies addresses yet; Core 5.1 lets us say so rather than claim it.
        "email_verified": False,
    }
    return {name: value for name, value in claims.items() if value is not None}


def claims_for(user: User, scope: str) -> UserInfo:
    """The claims `scope` releases about `user`: `sub` always, then profile and email claims."""
    wanted = claims_of(set((scope or "").split()) | {OPENID})
    return UserInfo({name: value for name, value in user_claims(user).items() if name in wanted})
