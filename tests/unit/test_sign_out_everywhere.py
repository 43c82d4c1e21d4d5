"""Token-version bumps: every trigger kills every old credential at its next use."""

import pytest
from sqlalchemy import select

from idp import signout
from idp.db import db
from idp.errors import ValidationError
from idp.models import AuditEvent, Client, RefreshFamily, User, UserSession
from idp.sessions.service import end_session, new_row
from idp.tokens.access import InvalidTokenError, issue_access_token, verify_access_token
from idp.tokens.refresh import InvalidRefreshToken, rotate, start_family
from idp.users import service


def hold_credentials(app, user_id: int, client_id: int):
    """An SSO session, an admin session, a session-bound and an offline family, and an access token."""
    user = db.session.get(User, user_id)
    client = db.session.get(Client, client_id)
    _, sso = new_row(app, "sso", user)
    _, admin = new_row(app, "admin", user)
    bound = start_family(client=client, user=user, scope="openid", sid=sso.sid)
    offline = start_family(client=client, user=user, scope="openid offline_access", sid=sso.sid, offline=True)
    access = issue_access_token(client_id=client.client_id, subject=user.subject, scope="openid", sid=sso.sid, token_version=user.token_version)
    db.session.commit()
    return {"bound": bound.token, "offline": offline.token, "access": access.token}


def assert_all_refused(user_id: int, client_id: int, held: dict) -> None:
    client = db.session.get(Client, client_id)
    for name in ("bound", "offline"):
        with pytest.raises(InvalidRefreshToken):
            rotate(held[name], client=client)
    with pytest.raises(InvalidTokenError):
        verify_access_token(held["access"])
    assert db.session.scalar(select(UserSession).where(UserSession.user_id == user_id)) is None


TRIGGERS = {
    "sign_out_everywhere": lambda user: signout.sign_out_everywhere(user, actor="test"),
    "set_password": lambda user: signout.set_password(user, "a brand new password", actor="test"),
    "change_password": lambda user: signout.change_password(user, "correct horse battery", "a brand new password", actor="test"),
    "disable": lambda user: signout.disable_user(user, actor="test"),
    "grant_admin": lambda user: signout.set_admin(user, True, actor="test"),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_every_trigger_refuses_every_old_credential(app, make_user, make_client, trigger):
    user, (client, _) = make_user(), make_client()
    with app.app_context():
        held = hold_credentials(app, user.id, client.id)
        TRIGGERS[trigger](db.session.get(User, user.id))
        assert db.session.get(User, user.id).token_version == 2
        assert_all_refused(user.id, client.id, held)


def test_delete_user_removes_everything(app, make_user, make_client):
    user, (client, _) = make_user(), make_client()
    with app.app_context():
        held = hold_credentials(app, user.id, client.id)
        signout.delete_user(db.session.get(User, user.id), actor="test")
        assert db.session.get(User, user.id) is None
        assert db.session.scalar(select(RefreshFamily)) is None  # cascaded
        assert_all_refused(user.id, client.id, held)


def test_wrong_current_password_changes_nothing_and_is_audited(app_ctx, make_user):
    user = make_user()
    with pytest.raises(ValidationError, match="current password is wrong"):
        signout.change_password(db.session.get(User, user.id), "wrong", "a brand new password", actor="test")
    assert db.session.get(User, user.id).token_version == 1
    assert service.authenticate(user.email, "correct horse battery") is not None
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.action == "user.password_change_failed"))


def test_ending_a_session_revokes_bound_families_but_not_offline_ones(app, make_user, make_client):
    user, (client, _) = make_user(), make_client()
    with app.app_context():
        held = hold_credentials(app, user.id, client.id)
        sso = db.session.scalar(select(UserSession).where(UserSession.kind == "sso"))
        end_session(sso, reason="logout")
        db.session.commit()
        with pytest.raises(InvalidRefreshToken):
            rotate(held["bound"], client=db.session.get(Client, client.id))
        assert rotate(held["offline"], client=db.session.get(Client, client.id)).token
        assert verify_access_token(held["access"])  # self-contained: dies at exp, or via sign-out-everywhere


def test_revoking_admin_rights_is_a_bump_too(app_ctx, make_user):
    user = make_user(is_admin=True)
    signout.set_admin(db.session.get(User, user.id), False, actor="test")
    signout.set_admin(db.session.get(User, user.id), False, actor="test")  # no change, no bump
    assert db.session.get(User, user.id).token_version == 2
