"""End to end in headless Chromium against `idp serve` and a real worker: sign-up and verification,
recovery and invitation, each finished through a link read from the loopback SMTP server."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.admin_ui.test_browser import chromium, new_page  # noqa: F401  (fixtures)
from tests.mail.conftest import link_in
from tests.conftest import SQLITE_ONLY
from tests.pages import assert_good_page
from tests.admin_ui.conftest import PASSWORD

# The flows' database side runs on both backends over HTTP (tests/mail/test_flows.py); the browser
# run, the costliest part of the suite, proves the pages and the mail on SQLite.

pytestmark = [pytest.mark.browser, pytest.mark.slow, SQLITE_ONLY]
NEW_PASSWORD = "browser-chosen-password"


@pytest.fixture
def open_page(new_page):
    """new_page, minus the favicon request the end-user pages do not answer yet (the design branch adds one)."""

    def open_one():
        page = new_page()
        page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
        return page

    return open_one


def open_mailed_link(page, base: str, inbox, address: str, count: int = 1) -> None:
    """Open the link of the `count`th mail to `address` (sent by the worker) on the server under test."""
    link = link_in(inbox.wait_for(address, count))
    path = "/" + link.split("/", 3)[3]  # the worker's issuer is the test mapping's; the path and token are what count
    page.goto(base + path)
    assert "token=" not in page.url  # dropped from the address bar by the redirect


def choose_password(page, button: str) -> None:
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name=button).click()


def sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_sign_up_verify_recover_and_accept_an_invitation_by_mail(app, start_server, open_page, inbox, celery_worker, make_user):
    base = start_server()
    page = open_page()

    # Sign-up, from the sign-in page's link; signing in waits for the verified address.
    page.goto(base + "/login")
    assert_good_page(page, "mail-01-sign-in")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email").fill("browser-new@example.com")
    page.get_by_label("Name (optional)").fill("Browser Newcomer")
    assert_good_page(page, "mail-02-sign-up")
    choose_password(page, "Create the account")
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    assert_good_page(page, "mail-03-check-mail")
    sign_in(page, base, "browser-new@example.com", NEW_PASSWORD)
    expect(page.get_by_text("Confirm your email address first")).to_be_visible()
    open_mailed_link(page, base, inbox, "browser-new@example.com")
    assert_good_page(page, "mail-04-verify")
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_role("heading", name="Email address confirmed")).to_be_visible()
    assert_good_page(page, "mail-05-verified")
    sign_in(page, base, "browser-new@example.com", NEW_PASSWORD)
    expect(page.get_by_text("Confirm your email address first")).to_have_count(0)
    page.goto(base + "/account")
    expect(page.get_by_text("browser-new@example.com (verified")).to_be_visible()

    # Recovery of another account, in a fresh browser.
    make_user(email="forgetful@example.com", password="the-old-password")
    page = open_page()
    page.goto(base + "/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("forgetful@example.com")
    assert_good_page(page, "mail-06-forgot")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    open_mailed_link(page, base, inbox, "forgetful@example.com")
    assert_good_page(page, "mail-07-reset")
    choose_password(page, "Set the new password")
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    assert_good_page(page, "mail-08-reset-done")
    sign_in(page, base, "forgetful@example.com", "the-old-password")
    expect(page.get_by_text("Incorrect email or password.")).to_be_visible()
    sign_in(page, base, "forgetful@example.com", NEW_PASSWORD)
    page.goto(base + "/account")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()

    # An invitation from the admin UI, accepted in a fresh browser; the used link then shows a clear page.
    make_user(email="admin@example.com", password=PASSWORD, is_admin=True)
    admin = open_page()
    admin.goto(base + "/admin/login")
    admin.get_by_label("Email").fill("admin@example.com")
    admin.get_by_label("Password").fill(PASSWORD)
    admin.get_by_role("button", name="Sign in").click()
    admin.wait_for_url(base + "/admin/")
    admin.goto(base + "/admin/users")
    admin.get_by_role("link", name="Invite by email").click()
    admin.get_by_label("Email").fill("invited@example.com")
    assert_good_page(admin, "mail-09-admin-invite")
    admin.get_by_role("button", name="Send the invitation").click()
    expect(admin.get_by_text("Invited invited@example.com")).to_be_visible()
    expect(admin.get_by_text("no password chosen yet")).to_be_visible()
    page = open_page()
    open_mailed_link(page, base, inbox, "invited@example.com")
    assert_good_page(page, "mail-10-invitation")
    choose_password(page, "Set my password")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    sign_in(page, base, "invited@example.com", NEW_PASSWORD)
    page.goto(base + "/account")
    expect(page.get_by_text("invited@example.com (verified")).to_be_visible()
    link = link_in(inbox.wait_for("invited@example.com"))
    page.goto(base + "/" + link.split("/", 3)[3])
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    assert_good_page(page, "mail-11-used-link")
