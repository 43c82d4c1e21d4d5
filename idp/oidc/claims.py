"""Claims about a user, released per scope (OpenID Connect Core 1.0 section 5.4).

One mapping serves userinfo and ID tokens alike, so both always release the same claims for the
same scopes. A claim we have no value for is omitted rather than sent as null (Core 5.3.2).
"""

from __future__ import annotations

from authlib.oidc.core import UserInfo

from idp.users.models import User

# Core 5.4: which claims each scope asks for; `sub` is released whenever `openid` is granted.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "profile": ("name", "preferred_username", "updated_at"),
    "email": ("email", "email_verified"),
}
CLAIMS_SUPPORTED: list[str] = [claim for claims in SCOPE_CLAIMS.values() for claim in claims]


def user_claims(user: User) -> dict:
    """Every claim we can state about `user`, before any filtering by scope."""
    claims = {
        "sub": user.subject,
        "name": user.name or None,
        # The sign-in name is the email address, so that is what the user prefers to be called by.
        "preferred_username": user.email,
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
        "email": user.email,
        # True once the owner opened a link mailed to this very address (idp/onboarding).
        "email_verified": user.email_verified,
    }
    return {name: value for name, value in claims.items() if value is not None}


def claims_for(user: User, scope: str) -> UserInfo:
    """The claims `scope` releases about `user`: `sub` always, then profile and email claims."""
    granted = set((scope or "").split()) | {"openid"}
    wanted = {claim for name in granted for claim in SCOPE_CLAIMS.get(name, ())}
    return UserInfo({name: value for name, value in user_claims(user).items() if name in wanted})
