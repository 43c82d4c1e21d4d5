"""Second factors in the admin UI: a user's factors and their reset, the per-user and per-client requirements.

Each action is a GET confirmation page that only renders and a POST on the same URL that acts.
"""

from __future__ import annotations

from flask import flash, redirect, request, url_for

from admin_ui.blueprint import bp
from admin_ui.auth import recent_auth_required
from admin_ui.views.clients import client_or_404
from admin_ui.views.clients import confirm_page as confirm_client_page
from admin_ui.views.common import actor, get_or_404
from admin_ui.views.users import confirm_page, run_action
from idp.mfa import factors, policy
from idp.users.models import User

# The user and client pages show these (one small query each).
bp.add_app_template_global(factors.summary, "mfa_summary")
bp.add_app_template_global(policy.client_requires_mfa, "client_requires_mfa")


@bp.get("/users/<int:user_id>/mfa/reset")
@recent_auth_required
def user_mfa_reset_page(user_id: int):
    """Confirm removing every second factor of a user (recent password required)."""
    user = get_or_404(User, user_id)
    return confirm_page(user, title=f"Reset the second factors of {user.email}?", button="Reset second factors",
                        message="Their authenticator app, recovery codes and passkeys are removed. They sign in with their "
                                "password next time and, if a factor is required, set up a new one right away.")


@bp.post("/users/<int:user_id>/mfa/reset")
@recent_auth_required
def user_mfa_reset(user_id: int):
    """Remove every second factor of a user, e.g. after a lost phone (recent password required)."""
    user = get_or_404(User, user_id)

    def act():
        removed = factors.reset(user.id, actor=actor())
        return f"Removed {removed} second factor{'s' if removed != 1 else ''} and recovery codes of {user.email}."

    return run_action(user, act)


def _intended(current: bool) -> tuple[bool, str]:
    """(the requirement the action sets, its verb): what the confirmation page showed, else the opposite of now.

    The page names the state it asks for, so a form sent twice (or after another admin's change)
    sets that state again instead of flipping it back.
    """
    asked = request.form.get("required")
    required = asked == "1" if asked in ("0", "1") else not current
    return required, "Require" if required else "Stop requiring"


def _user_verb(user: User) -> tuple[bool, str]:
    """The requirement a user's action sets, and its verb."""
    return _intended(factors.summary(user.id).required)


@bp.get("/users/<int:user_id>/mfa/require")
def user_mfa_require_page(user_id: int):
    """Confirm requiring a second factor of this user, or no longer requiring it."""
    user = get_or_404(User, user_id)
    required, verb = _user_verb(user)
    return confirm_page(user, title=f"{verb} a second factor of {user.email}?", button=f"{verb} a second factor",
                        message="Without a factor they set one up right after their password at the next sign-in.",
                        fields={"required": int(required)})


@bp.post("/users/<int:user_id>/mfa/require")
def user_mfa_require(user_id: int):
    """Require a second factor of this user, or stop requiring it."""
    user = get_or_404(User, user_id)
    required, _ = _user_verb(user)

    def act():
        policy.set_user_requirement(user.id, required, actor=actor())
        return f"{user.email} {'must now use' if required else 'no longer has to use'} a second factor."

    return run_action(user, act)


def _client_verb(client) -> tuple[bool, str]:
    """The requirement a client's action sets, and its verb."""
    return _intended(policy.client_requires_mfa(client.id))


@bp.get("/clients/<client_id>/mfa/require")
def client_mfa_require_page(client_id: str):
    """Confirm making this client require two factors of its users, or stopping."""
    client = client_or_404(client_id)
    required, verb = _client_verb(client)
    return confirm_client_page(client, title=f"{verb} two factors for {client.name}?", button=f"{verb} two factors",
                               message="Users signing in to it with a password only are asked for their second factor (step-up).",
                               fields={"required": int(required)})


@bp.post("/clients/<client_id>/mfa/require")
def client_mfa_require(client_id: str):
    """Make this client require two factors of its users, or stop."""
    client = client_or_404(client_id)
    required, _ = _client_verb(client)
    policy.set_client_requirement(client.id, client.client_id, required, actor=actor())
    flash(f"{client.name} {'now requires' if required else 'no longer requires'} two factors.", "success")
    return redirect(url_for("admin.client_detail", client_id=client.client_id), 303)
