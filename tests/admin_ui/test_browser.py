"""The admin UI in a real headless Chromium against a real `idp serve`, with a screenshot of every page.

Debian's Chromium (/usr/bin/chromium-headless-shell), driven by Playwright for Python (never a
downloaded browser). The screenshots land in tests/screenshots/ (git-ignored) for review. The tests of a backend share the
process's Chromium and one `idp serve` (tests/browser_support.py); each has a clean database and fresh contexts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from idp.db import db
from idp.models import Client, KeyState, SigningKey, User
from tests.admin_ui.conftest import PASSWORD
from tests.browser_support import chromium, open_pages, server_pool, shared_server  # noqa: F401  (fixtures)
from tests.support import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"


class Screens:
    """Takes full-page screenshots named after the test and the page."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{self.prefix}-{name}.png"), full_page=True)


@pytest.fixture
def new_page(chromium):
    """Open pages in fresh browser contexts (separate cookie jars); fail on any CSP violation, script error or missing file.

    Refused forms answer 400 and refused sign-ins 401/403 on purpose; anything else logged as an error (a CSP
    violation, a script error, a missing file) is a problem.
    """
    yield from open_pages(chromium, r"status of 40[013] ")


def nav(page, label: str):
    """A link of the main navigation."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=label, exact=True)


def sign_in(page, base: str, email: str, shot=None) -> None:
    page.goto(base + "/admin/")
    assert page.url.startswith(base + "/admin/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    if shot:
        shot(page, "01-login")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/admin/")


def test_admin_signs_in_manages_users_and_clients_and_reads_the_audit_log(app, shared_server, new_page, admin, make_user, make_client):
    make_client(name="Existing RP")
    base = shared_server.base
    shot = Screens("admin")
    page = new_page()

    # Sign in; a wrong password first.
    page.goto(base + "/admin/login")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()
    shot(page, "00-login-refused")
    sign_in(page, base, admin.email, shot)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text("Signed in as admin@example.com.")).to_be_visible()
    shot(page, "02-dashboard")

    # Create a user: first with bad input, then properly.
    nav(page, "Users").click()
    shot(page, "03-users")
    page.get_by_role("link", name="New user").click()
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_role("textbox", name="New password", exact=True).fill("short")
    page.get_by_label("Repeat the new password").fill("short")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text("already exists")).to_be_visible()
    expect(page.get_by_text("at least 8 characters")).to_be_visible()
    shot(page, "04-user-new-errors")
    page.get_by_label("Email").fill("carol@example.com")
    page.get_by_label("Display name").fill("Carol")
    page.get_by_role("textbox", name="New password", exact=True).fill("carol-password-1")
    page.get_by_label("Repeat the new password").fill("carol-password-1")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("heading", name="carol@example.com")).to_be_visible()
    expect(page.get_by_text("Created carol@example.com.")).to_be_visible()
    shot(page, "05-user-detail")
    with app.app_context():
        assert db.session.scalar(db.select(User).where(User.email == "carol@example.com")).name == "Carol"
    page.goto(base + "/admin/users?q=car")
    expect(page.get_by_role("link", name="carol@example.com")).to_be_visible()

    # Register a confidential client and see its secret once.
    nav(page, "Clients").click()
    shot(page, "06-clients")
    page.get_by_role("link", name="New client").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("Payroll")
    page.get_by_role("textbox", name="Redirect URIs", exact=True).fill("https://payroll.example.com/cb\nhttp://payroll.example.com/cb")
    page.get_by_role("button", name="Register client").click()
    expect(page.get_by_text("uses http on a non-loopback host")).to_be_visible()
    shot(page, "07-client-form-errors")
    page.get_by_role("textbox", name="Redirect URIs", exact=True).fill("https://payroll.example.com/cb")
    page.get_by_label("Back-channel logout URI").fill("https://payroll.example.com/logout")
    page.get_by_role("button", name="Register client").click()
    secret = page.locator("#client-secret").inner_text()
    assert secret.startswith("idp_cs_")
    expect(page.get_by_text("shown only this once")).to_be_visible()
    shot(page, "08-client-secret")
    with app.app_context():
        registered = db.session.scalar(db.select(Client).where(Client.name == "Payroll"))
        assert registered.secret_digest and registered.backchannel_logout_uri == "https://payroll.example.com/logout"
    page.get_by_role("link", name="I have stored it: go to the client").click()
    expect(page.get_by_role("heading", name="Payroll")).to_be_visible()
    assert secret not in page.content()
    shot(page, "09-client-detail")

    # The other pages.
    for name, label in (("10-sessions", "Sessions"), ("11-keys", "Keys"), ("12-jobs", "Jobs")):
        nav(page, label).click()
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        shot(page, name)

    # Read the audit log, filtered by action.
    nav(page, "Audit log").click()
    shot(page, "13-audit")
    page.get_by_label("Action").fill("client.created")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table tbody tr")).to_have_count(2)  # Existing RP (cli) and Payroll (this admin)
    expect(page.locator("table tbody tr").first.get_by_text(f"user:{admin.id}")).to_be_visible()
    shot(page, "14-audit-filtered")

    # Sign out.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto(base + "/admin/users")
    assert page.url.startswith(base + "/admin/login")


def test_revoking_a_session_signs_that_browser_out(app, shared_server, new_page, admin, make_user):
    other = make_user(email="second-admin@example.com", password=PASSWORD, is_admin=True)
    base = shared_server.base
    shot = Screens("sessions")
    first, second = new_page(), new_page()
    sign_in(first, base, admin.email)
    sign_in(second, base, other.email)
    second.goto(base + "/admin/users")
    expect(second.get_by_role("heading", name="Users")).to_be_visible()

    first.goto(base + "/admin/sessions?user=" + other.email)
    shot(first, "01-filtered")
    first.get_by_role("button", name=re.compile(r"^Revoke the session of second-admin@example\.com")).click()
    expect(first.get_by_text("Revoked 1 session; that browser is signed out.")).to_be_visible()
    shot(first, "02-revoked")

    second.reload()
    assert second.url.startswith(base + "/admin/login")
    expect(second.get_by_role("heading", name="Sign in to the admin UI")).to_be_visible()
    shot(second, "03-other-browser-signed-out")
    first.goto(base + "/admin/")
    expect(first.get_by_role("heading", name="Dashboard")).to_be_visible()  # the revoking admin stays signed in


def test_rotate_and_revoke_keys(app, shared_server, new_page, admin):
    with app.app_context():
        old = {key.alg: key.kid for key in db.session.scalars(db.select(SigningKey).where(SigningKey.state == KeyState.ACTIVE))}
        upcoming = {key.alg: key.kid for key in db.session.scalars(db.select(SigningKey).where(SigningKey.state == KeyState.NEXT))}
    base = shared_server.base
    shot = Screens("keys")
    page = new_page()
    sign_in(page, base, admin.email)
    nav(page, "Keys").click()
    expect(page.get_by_role("heading", name="RS256")).to_be_visible()
    shot(page, "01-timeline")
    page.get_by_role("link", name="Rotate now").click()
    page.get_by_label("Algorithm").select_option("RS256")
    page.get_by_role("button", name="Rotate now").click()
    expect(page.get_by_text("relying parties that cache the JWKS may not have it")).to_be_visible()  # published too recently
    shot(page, "02-rotate-refused")
    page.get_by_label("Rotate even if the next key was published less than the lead time ago").check()
    page.get_by_role("button", name="Rotate now").click()
    expect(page.get_by_text("RS256 now signs with")).to_be_visible()
    shot(page, "03-rotated")
    with app.app_context():
        assert db.session.scalar(db.select(SigningKey).where(SigningKey.kid == upcoming["RS256"])).state is KeyState.ACTIVE
        assert db.session.scalar(db.select(SigningKey).where(SigningKey.kid == old["RS256"])).state is KeyState.RETIRED

    page.get_by_role("link", name=f"Revoke ES256 key {old['ES256']}").click()
    expect(page.get_by_text("The next key takes over signing immediately")).to_be_visible()
    shot(page, "04-revoke-confirm")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_text(f"Revoked ES256 key {old['ES256']}")).to_be_visible()
    shot(page, "05-revoked")
    # Each web process trusts its keyring cache for a few seconds; then the key is gone from the JWKS.
    published = lambda: {key["kid"] for key in page.request.get(base + "/.well-known/jwks.json").json()["keys"]}  # noqa: E731
    wait_until(lambda: old["ES256"] not in published(), timeout=15, what="the revoked key to leave the JWKS")
    with app.app_context():
        assert db.session.scalar(db.select(SigningKey).where(SigningKey.kid == old["ES256"])).state is KeyState.REVOKED


def test_keyboard_users_reach_the_content_and_every_field(shared_server, new_page, admin):
    base = shared_server.base
    page = new_page()
    page.goto(base + "/admin/login")
    # The email field has the focus from the start (autofocus, applied when the page is first
    # rendered: on a loaded machine that can come after the load event, so wait for it, not type into nothing).
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(admin.email)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/admin/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")  # the skip link moves the focus past the navigation
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null")


ATTACK_PAGE = """<!doctype html><title>cat pictures</title><script>
const base = %(base)r, user = %(user)d, blind = {mode: 'no-cors', credentials: 'include'};
const form = () => new URLSearchParams({confirmed: 'yes'});
Promise.allSettled([
  fetch(`${base}/admin/users/${user}/delete`, {...blind, method: 'HEAD'}),
  fetch(`${base}/admin/users/${user}/disable`, {...blind, method: 'HEAD'}),
  fetch(`${base}/admin/users/${user}/sign-out`, {...blind, method: 'HEAD'}),
  fetch(`${base}/admin/users/${user}/delete`, {...blind, method: 'GET'}),
  fetch(`${base}/admin/users/${user}/delete`, {...blind, method: 'POST', body: form()}),
]).then(() => { document.title = 'done'; });
</script>"""


def test_a_same_site_page_cannot_act_with_the_admin_cookie_by_head_get_or_post(app, shared_server, new_page, admin, make_user):
    """The issue's attack: a page on another port of the same host fetches the admin actions blind, with credentials."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    victim = make_user(email="victim@example.com")
    base = shared_server.base
    log_start = shared_server.log_size()  # the server is shared: only this test's share of its log counts
    page = new_page()
    sign_in(page, base, admin.email)

    class Attacker(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (ATTACK_PAGE % {"base": base, "user": victim.id}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    attacker = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{attacker.server_port}/")
        page.wait_for_function("document.title === 'done'")
    finally:
        attacker.shutdown()
        attacker.server_close()

    # The admin cookie went along (SameSite=Strict does not stop a same-site page): the HEAD reached the
    # confirmation page as the admin (200, not a redirect to sign in), and only rendered it.
    log = shared_server.log_since(log_start)
    assert f'"message": "HEAD /admin/users/{victim.id}/delete 200"' in log, log  # the JSON access log (idp/logs.py)
    assert f'"message": "POST /admin/users/{victim.id}/delete 400"' in log, log  # no CSRF token
    with app.app_context():
        user = db.session.get(User, victim.id)
        assert user is not None and user.disabled_at is None and user.token_version == victim.token_version
    page.goto(base + "/admin/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()  # and the admin is still signed in
