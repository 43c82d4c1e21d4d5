"""The scope vocabulary: every scope this server knows, the claims it releases and what it means to a person.

Discovery (`scopes_supported`, `claims_supported`), the claims released in userinfo and ID tokens,
client registration, and the consent and account pages all read this one table, so a scope cannot
be offered in one place and unknown in another. The claims are those of OpenID Connect Core 1.0
section 5.4; `offline_access` is Core 11; `sub` is released whenever `openid` is granted (Core 5.3.2).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """One scope: its name, the claims it releases, and a description a user can read on the consent page."""

    name: str
    claims: tuple[str, ...]
    description: str


OPENID = "openid"
PROFILE = "profile"
EMAIL = "email"
OFFLINE_ACCESS = "offline_access"

VOCABULARY: dict[str, Scope] = {
    scope.name: scope
    for scope in (
        Scope(OPENID, ("sub",), "Sign you in with your account identifier"),
        # Core 5.4 lists more profile claims (given_name, picture, ...); these are the ones a user has here.
        Scope(PROFILE, ("name", "preferred_username", "updated_at"), "See your name and profile details"),
        Scope(EMAIL, ("email", "email_verified"), "See your email address and whether it is verified"),
        Scope(OFFLINE_ACCESS, (), "Keep access while you are away (stay signed in: offline access)"),
    )
}

SCOPES: tuple[str, ...] = tuple(VOCABULARY)
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {scope.name: scope.claims for scope in VOCABULARY.values() if scope.claims}
CLAIMS_SUPPORTED: list[str] = list(dict.fromkeys(claim for claims in SCOPE_CLAIMS.values() for claim in claims))
# Scopes that only mean something when a user signed in (not for client_credentials).
USER_SCOPES = frozenset({OPENID, OFFLINE_ACCESS})


def describe(scope: str) -> str:
    """What granting `scope` means, in words for the person asked; an unknown scope is shown by its name."""
    known = VOCABULARY.get(scope)
    return known.description if known else scope


def claims_of(scopes: str | list[str] | tuple[str, ...] | set[str] | None) -> set[str]:
    """The claim names a set of granted scopes releases (space-separated string or a collection)."""
    names = scopes.split() if isinstance(scopes, str) else (scopes or ())
    return {claim for name in names for claim in SCOPE_CLAIMS.get(name, ())}
