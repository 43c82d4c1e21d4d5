"""Recovery, verification, invitation and sign-up over HTTP (Flask's test client), with the mail read
from the loopback SMTP server; bad links of every kind change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from idp.clock import utcnow
from idp.db import db
from idp.models import AuditEvent, OneTimeLink, OutboxMessage, User, UserSession
from idp.oidc.claims import claims_for
from tests.admin_ui.conftest import PASSWORD, AdminBrowser
from tests.functional.test_state_changes import changed_tables, snapshot
from tests.mail.conftest import deliver_outbox, link_in
from tests.oidc.flow import csrf_token
from tests.support import invoke_idp

NEW_PASSWORD = "a-fresh-password-42"


def post_form(client, page: str, data: dict, url: str | None = None):
    token = csrf_token(client.get(page).get_data(as_text=True))
    return client.post(url or page, data={**data, "csrf_token": token})


def mailed_link(app, inbox, address: str, count: int = 1) -> str:
    deliver_outbox(app)
    return link_in(inbox.to(address)[count - 1])


def local(url: str) -> str:
    return url.removeprefix("http://localhost")


def user_row(app, email: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        db.session.expunge(user)
        return user


def actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def sign_in(client, email: str, password: str):
    return post_form(client, "/login", {"username": email, "password": password})


# --- recovery -----------------------------------------------------------------------------------------


def test_the_sign_in_page_offers_recovery_and_sign_up(client):
    page = client.get("/login").get_data(as_text=True)
    assert 'href="/password/forgot"' in page and "Forgot your password?" in page
    assert 'href="/signup"' in page and "Create an account" in page


def test_the_answer_is_the_same_whether_or_not_the_account_exists(app, client, make_user, inbox):
    make_user(email="known@example.com")
    known = post_form(client, "/password/forgot", {"email": "known@example.com"})
    unknown = post_form(client, "/password/forgot", {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.get_data(as_text=True).replace("known@", "X@") == unknown.get_data(as_text=True).replace("nobody@", "X@")
    with app.app_context():  # the same work, too: one outbox row each, no link yet
        assert [m.payload["to"] for m in db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))] == ["known@example.com", "nobody@example.com"]
        assert db.session.query(OneTimeLink).count() == 0
    assert deliver_outbox(app) == ["delivered", "delivered"]
    assert [m["To"] for m in inbox.messages] == ["known@example.com"]


def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(app, client, make_user, inbox):
    user = make_user(email="reset@example.com", password=PASSWORD)
    assert sign_in(client, user.email, PASSWORD).status_code in (200, 302)
    other = app.test_client()
    assert post_form(other, "/password/forgot", {"email": user.email}).status_code == 200
    link = mailed_link(app, inbox, user.email)

    opened = other.get(local(link))
    assert opened.status_code == 303 and opened.headers["Location"] == "/password/reset"  # the token leaves the URL
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    form = other.get("/password/reset")
    assert form.status_code == 200 and "Choose a new password" in form.get_data(as_text=True)
    done = post_form(other, "/password/reset", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 200 and "Password changed" in done.get_data(as_text=True)

    after = user_row(app, user.email)
    assert after.token_version == user.token_version + 1 and after.email_verified
    with app.app_context():
        assert db.session.scalar(select(UserSession.id).where(UserSession.user_id == user.id)) is None
    assert client.get("/account").status_code == 302  # the signed-in browser is signed out
    assert "user.password_reset" in actions(app)
    assert sign_in(app.test_client(), user.email, PASSWORD).status_code == 401
    assert sign_in(app.test_client(), user.email, NEW_PASSWORD).status_code in (200, 302)
    # Used: the same link again is a clear page, and the form is gone.
    assert app.test_client().get(local(link)).status_code == 400
    assert "This link does not work" in other.get("/password/reset").get_data(as_text=True)


def test_a_newer_link_replaces_the_older_one(app, make_user, inbox):
    user = make_user(email="twice@example.com")
    client = app.test_client()
    post_form(client, "/password/forgot", {"email": user.email})
    first = mailed_link(app, inbox, user.email)
    post_form(client, "/password/forgot", {"email": user.email})
    second = mailed_link(app, inbox, user.email, count=2)
    assert client.get(local(first)).status_code == 400
    assert client.get(local(second)).status_code == 303


@pytest.mark.parametrize("spoil", ["expired", "tampered", "other_kind", "email_changed"])
def test_a_bad_link_is_a_clear_page_and_changes_nothing(app, make_user, inbox, spoil):
    user = make_user(email="victim@example.com")
    client = app.test_client()
    post_form(client, "/password/forgot", {"email": user.email})
    link = local(mailed_link(app, inbox, user.email))
    with app.app_context():
        if spoil == "expired":
            db.session.execute(OneTimeLink.__table__.update().values(expires_at=utcnow() - timedelta(seconds=1)))
        if spoil == "email_changed":
            db.session.execute(User.__table__.update().values(email="moved@example.com"))
        db.session.commit()
    if spoil == "tampered":
        link = link[:-2] + ("AA" if not link.endswith("AA") else "BB")
    if spoil == "other_kind":
        link = link.replace("/password/reset", "/email/verify")
    before = snapshot(app)
    page = client.get(link)
    assert page.status_code == 400 and "This link does not work" in page.get_data(as_text=True)
    assert "Nothing has been changed" in page.get_data(as_text=True)
    response = post_form(client, "/password/forgot", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, url="/password/reset")
    assert response.status_code == 400
    assert changed_tables(before, snapshot(app)) == []


def test_reset_requests_are_throttled_per_account_and_alike_for_unknown_addresses(app, make_user):
    make_user(email="busy@example.com")
    for email in ("busy@example.com", "ghost@example.com"):
        client = app.test_client()
        statuses = [post_form(client, "/password/forgot", {"email": email}).status_code for _ in range(7)]
        # LOGIN_THROTTLE_PER_ACCOUNT (5) requests per account and address, then the back-off.
        assert statuses == [200] * 5 + [429, 429], email
    deliver_outbox(app)
    with app.app_context():
        assert db.session.query(OneTimeLink).count() == 5  # the known account's five; nothing for the unknown one


# --- sign-up and verification -------------------------------------------------------------------------


def test_sign_up_mails_a_verification_and_signs_in_only_once_verified(app, client, inbox):
    response = post_form(client, "/signup", {"email": "New@Example.com", "name": "Newcomer", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 200 and "Check your email" in response.get_data(as_text=True)
    refused = sign_in(app.test_client(), "new@example.com", NEW_PASSWORD)
    assert refused.status_code == 403 and "Confirm your email address first" in refused.get_data(as_text=True)
    user = user_row(app, "new@example.com")
    assert claims_for(user, "openid email")["email_verified"] is False

    link = mailed_link(app, inbox, "new@example.com")
    browser = app.test_client()
    assert browser.get(local(link)).status_code == 303
    assert "Confirm my address" in browser.get("/email/verify").get_data(as_text=True)
    confirmed = post_form(browser, "/email/verify", {})
    assert confirmed.status_code == 200 and "Email address confirmed" in confirmed.get_data(as_text=True)
    assert claims_for(user_row(app, "new@example.com"), "openid email")["email_verified"] is True
    assert sign_in(app.test_client(), "new@example.com", NEW_PASSWORD).status_code in (200, 302)


def test_sign_up_with_a_taken_address_answers_alike_and_tells_the_owner(app, client, make_user, inbox):
    make_user(email="owner@example.com", password=PASSWORD)
    taken = post_form(client, "/signup", {"email": "owner@example.com", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    fresh = post_form(client, "/signup", {"email": "fresh@example.com", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert taken.status_code == fresh.status_code == 200
    assert taken.get_data(as_text=True).replace("owner@", "X@") == fresh.get_data(as_text=True).replace("fresh@", "X@")
    deliver_outbox(app)
    [notice] = inbox.to("owner@example.com")
    assert notice["Subject"] == "Someone tried to create a idp account with your address"
    assert "?token=" not in notice.get_body("plain").get_content()
    assert sign_in(app.test_client(), "owner@example.com", PASSWORD).status_code in (200, 302)  # unchanged
    assert sign_in(app.test_client(), "owner@example.com", NEW_PASSWORD).status_code == 401


def test_sign_up_off_and_by_domain(make_app):
    closed = make_app(SIGNUP="off").test_client()
    assert closed.get("/signup").status_code == 404
    assert "Create an account" not in closed.get("/login").get_data(as_text=True)
    domains = make_app(SIGNUP="example.org, example.net").test_client()
    refused = post_form(domains, "/signup", {"email": "a@example.com", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert refused.status_code == 400 and "only to addresses of some domains" in refused.get_data(as_text=True)
    assert post_form(domains, "/signup", {"email": "a@example.net", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 200


def test_an_email_change_waits_for_the_new_address_to_be_verified(app, client, make_user, inbox):
    user = make_user(email="old@example.com", password=PASSWORD)
    sign_in(client, user.email, PASSWORD)
    wrong = post_form(client, "/account/email", {"email": "new-address@example.com", "password": "wrong password"})
    assert wrong.status_code == 400 and user_row(app, "old@example.com").pending_email is None
    asked = post_form(client, "/account/email", {"email": "new-address@example.com", "password": PASSWORD})
    assert asked.status_code == 302
    pending = user_row(app, "old@example.com")
    assert pending.pending_email == "new-address@example.com"  # the old address stays until then
    link = mailed_link(app, inbox, "new-address@example.com")
    assert client.get(local(link)).status_code == 303
    assert post_form(client, "/email/verify", {}).status_code == 200
    moved = user_row(app, "new-address@example.com")
    assert moved.id == user.id and moved.pending_email is None and moved.email_verified
    assert "user.email_changed" in actions(app)


# --- invitations ---------------------------------------------------------------------------------------


def test_an_admin_invites_from_the_admin_ui_and_the_invitee_chooses_a_password(app, make_user, inbox):
    admin = make_user(email="admin@example.com", password=PASSWORD, is_admin=True)
    browser = AdminBrowser(app.test_client())
    assert browser.sign_in(admin.email).status_code == 303
    response = browser.post("/admin/users/invite", {"email": "invitee@example.com", "name": "Invitee"})
    assert response.status_code == 303
    assert "no password chosen yet" in browser.get(response.headers["Location"]).get_data(as_text=True)
    link = mailed_link(app, inbox, "invitee@example.com")
    invitee = app.test_client()
    assert invitee.get(local(link)).status_code == 303
    short = post_form(invitee, "/invitation", {"password": "short", "confirm": "short"})
    assert short.status_code == 400 and user_row(app, "invitee@example.com").password_hash is None
    assert post_form(invitee, "/invitation", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 200
    assert user_row(app, "invitee@example.com").email_verified
    assert sign_in(app.test_client(), "invitee@example.com", NEW_PASSWORD).status_code in (200, 302)
    assert app.test_client().get(local(link)).status_code == 400  # single use


def test_the_cli_invites_and_an_admin_resends_a_verification(app, idp_env, make_user, inbox):
    result = invoke_idp(["users", "invite", "cli-invitee@example.com"], idp_env)
    assert result.returncode == 0, result.stderr
    assert "cli-invitee@example.com" in link_in_first(app, inbox, "cli-invitee@example.com")
    again = invoke_idp(["users", "invite", "cli-invitee@example.com"], idp_env)
    assert again.returncode == 2 and "already exists" in again.stderr

    admin = make_user(email="admin@example.com", password=PASSWORD, is_admin=True)
    target = make_user(email="unverified@example.com")
    browser = AdminBrowser(app.test_client())
    browser.sign_in(admin.email)
    page = browser.get(f"/admin/users/{target.id}").get_data(as_text=True)
    assert "Email verified" in page and "Resend verification mail" in page
    assert browser.post(f"/admin/users/{target.id}/resend-verification", page=f"/admin/users/{target.id}").status_code == 303
    assert "/email/verify?token=" in mailed_link(app, inbox, "unverified@example.com")


def link_in_first(app, inbox, address: str) -> str:
    deliver_outbox(app)
    message = inbox.to(address)[0]
    return message.get_body("plain").get_content()


@pytest.mark.parametrize(("page", "form", "fields"), [
    ("/password/forgot", "reset", {"email": "busy@example.com"}),
    ("/signup", "signup", {"email": "busy@example.com", "name": "Busy", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}),
])
def test_a_throttled_mail_form_keeps_the_refusals_audit_event(app, make_user, page, form, fields):
    """The 429 rolls the request back; the throttle's refusal is still audited, as at sign-in."""
    make_user(email="busy@example.com")
    client = app.test_client()
    statuses = [post_form(client, page, fields).status_code for _ in range(6)]
    assert statuses[-1] == 429
    with app.app_context():
        refused = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.throttled")).all()
    assert [event.details["form"] for event in refused] == [form] * statuses.count(429)
