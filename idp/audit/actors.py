"""Who did something, as audit events name them: one constructor per kind of actor.

An actor is stored as text ("user:7", "client:abc", "system", "cli", "anonymous"), so `Actor` is a
`str`: every place that reads the audit log keeps working, and no place formats one by hand.
"""

from __future__ import annotations


class Actor(str):
    """An audit event's actor; build one with the constructor for its kind."""

    SYSTEM: Actor
    CLI: Actor
    ANONYMOUS: Actor

    @classmethod
    def user(cls, user_id: int) -> Actor:
        """A signed-in user acting for themselves."""
        return cls(f"user:{user_id}")

    @classmethod
    def admin(cls, user_id: int) -> Actor:
        """An admin in the admin UI; named by their user id, as the audit log always has."""
        return cls.user(user_id)

    @classmethod
    def client(cls, client_id: str) -> Actor:
        """A relying party acting with its own credentials (revocation, for instance)."""
        return cls(f"client:{client_id}")


Actor.SYSTEM = Actor("system")  # a background job or a rule of the server itself
Actor.CLI = Actor("cli")  # an operator at the `idp` command line
Actor.ANONYMOUS = Actor("anonymous")  # a visitor not signed in (a failed sign-in, for instance)
