"""What the account page shows and does, for one user (the applications it lists and revokes: idp/grants/)."""

from __future__ import annotations


from idp.audit.actors import Actor
from idp.auth.service import throttled_check
from idp.errors import NotFoundError, ValidationError
from idp.sessions.models import SessionKind, UserSession
from idp.sessions.service import end_session, find_session_of_user, list_sessions_for_user
from idp.signout import change_password
from idp.users.models import User



def sso_sessions(user_id: int) -> list[UserSession]:
    """The user's signed-in browser sessions, newest first."""
    return list_sessions_for_user(user_id, kind=SessionKind.SSO)


def end_own_session(user_id: int, sid: str) -> None:
    """Sign one of the user's own sessions out; raise NotFoundError for any other id."""
    row = find_session_of_user(user_id, sid, kind=SessionKind.SSO)
    if row is None:
        raise NotFoundError("no such session")
    end_session(row, reason="user_signed_out_session", actor=Actor.user(user_id))


def change_own_password(user: User, current: str, new: str, *, ip: str | None) -> int:
    """The user's own password change behind the password throttle.

    Returns 0 when changed; raises ValidationError when the current password is wrong; returns the
    seconds to wait when the throttle refused to check it (a stolen cookie is no password oracle).
    """
    def verify() -> bool:
        try:
            change_password(user, current, new, actor=Actor.user(user.id), ip=ip)
        except ValidationError as error:
            if error.field == "current_password":
                return False
            raise
        return True

    checked = throttled_check(f"user:{user.id}", ip, verify, form="password", actor=Actor.user(user.id))
    if checked.value is False:
        raise ValidationError("current password is wrong", field="current_password")
    return checked.retry_after
