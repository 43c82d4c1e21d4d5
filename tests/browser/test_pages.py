"""Every page, end-user and admin, in a real headless Chromium against a real `idp serve`.

Each page passes `assert_good_page` (tests/pages.py): no serious or critical axe-core violation and
no sideways scroll, at 1280 and at 390 px, with a screenshot of both. Sign-in is done with the
keyboard only. Two screenshots of this run are committed as docs/screenshots/*.png for the README.

The tests share the test process's Chromium and one `idp serve` (tests/browser_support.py); each
has a clean database and fresh browser contexts. The long walks through the pages are split into
cases so pytest-xdist can spread them over its workers.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

import pyotp
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, REDIRECT_URI
from tests.browser.crashing_idp import FAILING_PATH
from tests.conftest import SQLITE_ONLY
from tests.oidc.flow import pkce_pair
from tests.pages import assert_good_page, document_width

# How a page looks and reads does not depend on the database: the pages run on SQLite here,
# and every flow behind them runs on both backends over HTTP (tests/oidc, tests/account, tests/mail).

pytestmark = [pytest.mark.browser, pytest.mark.slow, SQLITE_ONLY]


def authorization_url(base: str, client_id: str, scope: str = "openid profile email") -> str:
    _, challenge = pkce_pair()
    return base + "/authorize?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "scope": scope,
        "state": "s-1", "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256",
    })


def sign_in_with_the_keyboard(page, email: str) -> None:
    """Type the email (the field has focus on arrival), Tab to the password, Enter to send: no mouse."""
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")


def sign_in(page, email: str) -> None:
    """Fill and send the sign-in form the page shows."""
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def allow(page) -> None:
    """Press Allow on the consent page and wait for the browser to reach the application's callback."""
    with page.expect_request(lambda request: request.url.startswith(REDIRECT_URI)):
        page.get_by_role("button", name="Allow").click()
    # The callback is reached through redirects (POST /consent, then /authorize), which the headless
    # shell does not hand to Playwright's routes: no RP listens there, so the navigation may end on
    # Chromium's error page. Waiting for either means no late navigation can race the next page.goto.
    page.wait_for_url(lambda url: url.startswith((REDIRECT_URI, "chrome-error://")))


def test_keyboard_only_sign_in_reaches_the_application(shared_server, new_page, rp, user):
    base = shared_server.base
    page = new_page()
    page.goto(authorization_url(base, rp.client_id))
    page.wait_for_url(re.compile(r"/login\?"))
    sign_in_with_the_keyboard(page, user.email)
    page.wait_for_url(re.compile(r"/consent\?"))
    # Allow is the first button of the consent form: Tab until it has focus, then Enter.
    for _ in range(10):
        if page.evaluate("document.activeElement && document.activeElement.value") == "allow":
            break
        page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Allow")).to_be_focused()
    with page.expect_request(lambda request: request.url.startswith(REDIRECT_URI)) as back:
        page.keyboard.press("Enter")
    assert "code=" in back.value.url and "state=s-1" in back.value.url


def test_landing_sign_in_and_consent_pages(shared_server, new_page, rp, user):
    base = shared_server.base
    page = new_page()

    page.goto(base + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("idp")
    expect(page.get_by_role("link", name="Your account")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("openid-configuration"))).to_be_visible()
    assert page.get_by_role("link", name="Admin UI").count() == 0  # not for an anonymous visitor
    assert_good_page(page, "landing")
    favicon = page.request.get(base + "/favicon.ico")
    assert favicon.status == 200 and favicon.headers["content-type"].startswith("image/svg+xml")

    # Sign-in and consent, scopes in words.
    page.goto(authorization_url(base, rp.client_id))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert_good_page(page, "sign-in")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_label("Email").fill(user.email)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert_good_page(page, "sign-in-refused")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_text("See your email address and whether it is verified")).to_be_visible()
    assert_good_page(page, "consent")
    allow(page)


def test_account_pages(shared_server, new_page, rp, user):
    base = shared_server.base
    page = new_page()
    page.goto(authorization_url(base, rp.client_id))
    sign_in(page, user.email)
    expect(page.get_by_text("See your email address and whether it is verified")).to_be_visible()
    allow(page)

    # The account page: devices in words, allowed scopes in words, sign-out-everywhere asks first.
    page.goto(base + "/account")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.get_by_text("Chrome on Linux")).to_be_visible()
    expect(page.locator(".apps").get_by_text("See your name and profile details")).to_be_visible()
    assert "email openid profile" not in page.content()
    assert_good_page(page, "account")
    page.get_by_role("link", name="Sign out everywhere…").click()
    expect(page.get_by_role("heading", name="Sign out everywhere?")).to_be_visible()
    assert_good_page(page, "account-sign-out-everywhere-confirm")
    page.get_by_role("link", name="Cancel, keep me signed in").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()


def test_security_sign_out_and_second_factor_pages(shared_server, new_page, user):
    base = shared_server.base
    page = new_page()
    page.goto(base + "/account")
    sign_in(page, user.email)
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()

    # Security: authenticator app set-up, recovery codes.
    page.get_by_role("link", name="Passkeys and second factors").click()
    expect(page.get_by_role("heading", name="Sign-in security")).to_be_visible()
    assert_good_page(page, "security")
    page.get_by_role("button", name="Set up an authenticator app").click()
    key = page.locator("#totp-key").inner_text()
    assert_good_page(page, "totp-setup")
    page.get_by_label("The six-digit code the app shows now").fill(pyotp.TOTP(key).now())
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    assert_good_page(page, "recovery-codes")

    # Sign-out: confirmation, then the result.
    page.goto(base + "/logout")
    expect(page.get_by_role("heading", name="Sign out?")).to_be_visible()
    assert_good_page(page, "logout-confirm")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    assert_good_page(page, "logout-result")

    # Signing in again asks for the second factor.
    page.goto(base + "/account")
    sign_in(page, user.email)
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    assert_good_page(page, "second-factor")


ERROR_PAGES = {
    "error-404": ("/no-such-page", 404, "Page not found"),
    "error-405": ("/account/password", 405, "That doesn't work here"),  # a form's POST-only address
    "error-500": (FAILING_PATH, 500, "Something went wrong"),
}


def test_protocol_error_page(shared_server, new_page):
    page = new_page()
    response = page.goto(authorization_url(shared_server.base, "no-such-client"))
    assert response.status == 400
    expect(page.get_by_text("This application isn't registered here")).to_be_visible()
    expect(page.locator(".error-details")).to_contain_text("invalid_client")
    assert_good_page(page, "error-protocol")


@pytest.mark.parametrize("name", ERROR_PAGES)
def test_error_pages(shared_server, new_page, name):
    path, status, heading = ERROR_PAGES[name]
    page = new_page()
    response = page.goto(shared_server.base + path)
    assert response.status == status
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    assert "RuntimeError" not in page.content() and "Traceback" not in page.content()
    assert_good_page(page, name)


CONDITIONAL_MEDIATION = """async () => !!(window.PublicKeyCredential && PublicKeyCredential.isConditionalMediationAvailable
                                          && await PublicKeyCredential.isConditionalMediationAvailable())"""


def test_a_stale_sign_in_form_explains_itself(shared_server, new_page):
    """The session (and the CSRF token it signed) is gone when the sign-in form is sent."""
    base = shared_server.base
    page = new_page()
    options = []
    page.on("response", lambda answer: options.append(answer) if urlsplit(answer.url).path == "/login/passkey/options" else None)
    page.goto(base + "/login")
    # Where the browser offers passkeys in the email field's autofill, the passkey script asks for
    # options at once; that answer must arrive first, or it would set the session cookie again
    # after it is cleared.
    if page.evaluate(CONDITIONAL_MEDIATION):
        for _ in range(150):
            if options:
                break
            page.wait_for_timeout(100)  # lets Playwright deliver events, unlike a sleep
        assert options, "the passkey script never asked for its options"
    page.context.clear_cookies()
    page.get_by_label("Email").fill("someone@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_response(lambda answer: urlsplit(answer.url).path == "/login" and answer.request.method == "POST") as sent:
        page.get_by_role("button", name="Sign in", exact=True).click()
    assert sent.value.status == 400
    expect(page.get_by_text("This sign-in page expired; start again.")).to_be_visible()
    assert_good_page(page, "error-csrf-expired")
    page.get_by_role("link", name="Sign in again").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def admin_sign_in(page, base: str, email: str) -> None:
    page.goto(base + "/admin/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/admin/")


# Every admin page, in groups of a few: each group signs in once; xdist spreads the groups.
ADMIN_PAGES = {
    "dashboard-and-users": [
        ("/admin/", "admin-dashboard"),
        ("/admin/users", "admin-users"),
        ("/admin/users/{person}", "admin-user"),
        ("/admin/users/new", "admin-user-new"),
    ],
    "user-forms": [
        ("/admin/users/{person}/edit", "admin-user-edit"),
        ("/admin/users/{person}/password", "admin-user-password"),
        ("/admin/users/{person}/sign-out", "admin-user-sign-out-confirm"),
        ("/admin/users/{person}/disable", "admin-user-disable-confirm"),
    ],
    "user-confirmations": [
        ("/admin/users/{person}/delete", "admin-user-delete-confirm"),
        ("/admin/users/{person}/grant-admin", "admin-user-grant-admin-confirm"),
        ("/admin/users/{person}/mfa/require", "admin-user-mfa-require"),
        ("/admin/reauth", "admin-reauth"),
    ],
    "clients": [
        ("/admin/clients", "admin-clients"),
        ("/admin/clients/new", "admin-client-new"),
        ("/admin/clients/{client}/edit", "admin-client-edit"),
        ("/admin/clients/{client}/rotate-secret", "admin-client-rotate-secret-confirm"),
    ],
    "client-confirmations": [
        ("/admin/clients/{client}/delete", "admin-client-delete-confirm"),
        ("/admin/clients/{client}/mfa/require", "admin-client-mfa-require"),
        ("/admin/no-such-page", "admin-error-404"),
        ("/admin/sessions", "admin-sessions"),
    ],
    "operations": [
        ("/admin/throttles", "admin-throttles"),
        ("/admin/keys", "admin-keys"),
        ("/admin/keys/rotate", "admin-keys-rotate"),
        ("/admin/jobs", "admin-jobs"),
        ("/admin/audit", "admin-audit"),
    ],
}


@pytest.fixture
def admin_data(make_user, make_client) -> dict:
    """The client and the user the admin pages show, as the page paths' placeholders."""
    existing, _ = make_client(name="Existing RP")
    person = make_user(email="a.person.with.a.rather.long.address@example.com")
    return {"client": existing.client_id, "person": person.id}


def test_admin_sign_in_page(shared_server, new_page):
    page = new_page()
    page.goto(shared_server.base + "/admin/login")
    assert_good_page(page, "admin-login")


@pytest.mark.parametrize("group", ADMIN_PAGES)
def test_admin_pages(shared_server, new_page, admin, admin_data, group):
    base = shared_server.base
    page = new_page()
    admin_sign_in(page, base, admin.email)
    for path, name in ADMIN_PAGES[group]:
        page.goto(base + path.format(**admin_data))
        assert_good_page(page, name)


def test_the_sessions_page_fits_a_phone(shared_server, new_page, admin):
    # The sessions page names browsers in words (headless Chromium on Linux), and fits a phone (it was 953 px wide).
    base = shared_server.base
    page = new_page()
    admin_sign_in(page, base, admin.email)
    page.goto(base + "/admin/sessions")
    expect(page.locator("td.ua").first).to_have_text("Chrome on Linux")
    page.set_viewport_size({"width": 390, "height": 844})
    assert document_width(page) <= 390


def test_a_new_clients_secret_and_connection_details_copy_whole(shared_server, new_page, admin):
    base = shared_server.base
    page = new_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    admin_sign_in(page, base, admin.email)

    # A new confidential client: the secret page keeps every character and copies it.
    page.goto(base + "/admin/clients/new")
    page.get_by_role("textbox", name="Name", exact=True).fill("Photo App")
    page.get_by_role("textbox", name="Redirect URIs", exact=True).fill("https://photos.example.com/callback")
    page.get_by_role("button", name="Register client").click()
    secret = page.locator("#client-secret")
    expect(secret).to_be_visible()
    text = secret.inner_text()
    assert text.startswith("idp_cs_")
    assert page.evaluate("getComputedStyle(document.getElementById('client-secret')).wordBreak") == "break-all"
    assert_good_page(page, "admin-client-secret")
    page.get_by_role("button", name="Copy client secret").click()
    assert page.evaluate("navigator.clipboard.readText()") == text
    page.get_by_role("link", name=re.compile("I have stored it")).click()

    # The client page: issuer, discovery URL and client id, each with a copy button.
    expect(page.get_by_role("heading", name="Connect your app")).to_be_visible()
    expect(page.locator("#issuer")).to_have_text(base)
    expect(page.locator("#discovery-url")).to_have_text(base + "/.well-known/openid-configuration")
    page.get_by_role("button", name="Copy discovery URL").click()
    assert page.evaluate("navigator.clipboard.readText()") == base + "/.well-known/openid-configuration"
    assert_good_page(page, "admin-client")
