"""The admin UI: a user's factors, their reset (recent password, audited), requirements, dashboard counts."""

from __future__ import annotations

from sqlalchemy import select

from idp.db import db
from idp.mfa import recovery
from idp.models import AuditEvent, MfaRequirement, Passkey, RecoveryCode, TotpFactor
from tests.admin_ui.conftest import PASSWORD
from tests.admin_ui.conftest import admin, signed_in  # noqa: F401  (fixtures)
from tests.admin_ui.test_auth import age_authentication


def _give_factors(app, user_id: int) -> None:
    with app.app_context():
        encryptor = app.extensions["idp.key_encryptor"]
        db.session.add(TotpFactor(user_id=user_id, secret_encrypted=encryptor.encrypt(b"JBSWY3DPEHPK3PXP"), confirmed_at=db.func.now()))
        db.session.add(Passkey(user_id=user_id, credential_id=b"credential-1", public_key=b"cose", name="Work <laptop>"))
        recovery.regenerate(user_id, actor="test")
        db.session.commit()


def test_admin_sees_resets_and_requires_factors(app, signed_in, make_user, make_client):
    user = make_user(email="lost-phone@example.com")
    make_user(email="nothing@example.com")
    _give_factors(app, user.id)
    dashboard = signed_in.get("/admin/").get_data(as_text=True)
    assert '<span class="stat-value" id="users-with-passkey">1</span>' in dashboard
    assert '<span class="stat-value" id="users-with-second-factor">1</span>' in dashboard

    page = signed_in.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "Work &lt;laptop&gt; (device-bound)" in page and "Recovery codes left</dt><dd>10" in page

    # The reset needs a recent password: an old sign-in is sent to re-authenticate and nothing changes.
    url = f"/admin/users/{user.id}/mfa/reset"
    age_authentication(app, app.config["ADMIN_REAUTH_MAX_AGE"] + 1)
    stale = signed_in.post(url, page=f"/admin/users/{user.id}")
    assert stale.status_code == 303 and stale.headers["Location"] == f"/admin/reauth?next={url}"
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Passkey)) == 1
    assert signed_in.post(f"/admin/reauth?next={url}", {"password": PASSWORD}).status_code == 303
    assert signed_in.get(url).status_code == 200  # the confirmation page
    assert signed_in.client.post(url, data={}).status_code == 400  # no CSRF token: nothing happens
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Passkey)) == 1
    done = signed_in.post(url)
    assert done.status_code == 303
    with app.app_context():
        for model in (TotpFactor, Passkey, RecoveryCode):
            assert db.session.scalar(select(db.func.count()).select_from(model)) == 0
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "mfa.factors_reset"))
        assert event.target == f"user:{user.id}" and event.details["removed"] == 12

    # Require a factor of the user, and two factors of a client.
    assert signed_in.post(f"/admin/users/{user.id}/mfa/require").status_code == 303
    registered, _ = make_client(name="Strict")
    assert "per user and global policy" in signed_in.get(f"/admin/clients/{registered.client_id}").get_data(as_text=True)
    assert signed_in.post(f"/admin/clients/{registered.client_id}/mfa/require").status_code == 303
    assert "required (two factors)" in signed_in.get(f"/admin/clients/{registered.client_id}").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(MfaRequirement, user.id) is not None
        actions = set(db.session.scalars(select(AuditEvent.action)))
        assert {"mfa.user_requirement_set", "mfa.client_requirement_set"} <= actions


def test_a_confirmed_requirement_sent_twice_stays_set(app, signed_in, make_user, make_client):
    user = make_user(email="twice@example.com")
    url = f"/admin/users/{user.id}/mfa/require"
    page = signed_in.get(url).get_data(as_text=True)
    assert '<input type="hidden" name="required" value="1">' in page  # the page names the state it asks for
    for _ in range(2):  # a double submit, or a second admin confirming the same page
        assert signed_in.post(url, {"required": "1"}).status_code == 303
    with app.app_context():
        assert db.session.get(MfaRequirement, user.id) is not None
    registered, _ = make_client(name="Twice")
    for _ in range(2):
        assert signed_in.post(f"/admin/clients/{registered.client_id}/mfa/require", {"required": "1"}).status_code == 303
    assert "required (two factors)" in signed_in.get(f"/admin/clients/{registered.client_id}").get_data(as_text=True)
