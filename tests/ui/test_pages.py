"""The shared design over Flask's test client: layout and branding on every family of pages, error pages
in words, expired forms explained, the landing page and the favicon. (The browser checks are in tests/browser/.)"""

import re

import pytest
from sqlalchemy import select

from idp.db import db
from idp.models import User
from tests.oidc.flow import csrf_token

PASSWORD = "correct horse battery"
STYLESHEET = '<link rel="stylesheet" href="/assets/idp.css">'


def sign_in(client, email: str, next_path: str = "/account"):
    login = client.get("/login")
    return client.post("/login", data={"username": email, "password": PASSWORD, "csrf_token": csrf_token(login.get_data(as_text=True)), "next": next_path})


def test_every_family_of_pages_shares_the_layout_and_the_brand(make_app):
    app = make_app(BRAND_NAME="Acme <ID>", BRAND_COLOR="#aa0000")
    client = app.test_client()
    pages = {"/": 200, "/login": 200, "/logout": 200, "/no-such-page": 404, "/admin/login": 200,
             "/authorize?client_id=nobody&response_type=code": 400}
    for path, status in pages.items():
        response = client.get(path)
        html = response.get_data(as_text=True)
        assert response.status_code == status, path
        assert STYLESHEET in html and '<link rel="icon"' in html, path
        assert '<span class="brand-name">Acme &lt;ID&gt;</span>' in html and "Acme <ID>" not in html, path
    assert client.get("/theme.css").get_data(as_text=True).startswith(":root { --brand: #aa0000; --brand-text: #ffffff;")


def test_stylesheet_is_one_file_served_at_both_addresses(client):
    shared = client.get("/assets/idp.css")
    admin = client.get("/admin/static/admin.css")
    assert shared.status_code == 200 and shared.mimetype == "text/css" and b"body.signin main" in shared.data
    assert admin.data == shared.data  # the admin UI's old address is the same file
    shared.close(), admin.close()


def test_favicon_is_an_svg_in_the_brand_colour(make_app):
    response = make_app(BRAND_COLOR="#112233").test_client().get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert b'fill="#112233"' in response.data and b"<svg" in response.data


def test_landing_page_links_account_and_discovery_and_the_admin_ui_only_for_admins(client, make_user):
    html = client.get("/").get_data(as_text=True)
    assert 'href="/account"' in html and 'href="http://localhost/.well-known/openid-configuration"' in html
    assert "/admin/" not in html
    make_user(email="boss@example.com", is_admin=True)
    assert sign_in(client, "boss@example.com").status_code == 302
    assert 'href="/admin/"' in client.get("/").get_data(as_text=True)


def test_landing_page_for_a_signed_in_user_who_is_not_an_admin(client, make_user):
    make_user(email="pat@example.com")
    sign_in(client, "pat@example.com")
    html = client.get("/").get_data(as_text=True)
    assert "Signed in as <strong>pat@example.com</strong>" in html and "/admin/" not in html


def test_protocol_errors_are_explained_in_words_with_the_code_for_developers(client):
    response = client.get("/authorize?client_id=nobody&response_type=code")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "This application isn&#39;t registered here" in html
    assert re.search(r'class="error-details">Details for developers: <code>invalid_client: [^<]+</code>', html)


@pytest.mark.parametrize("path, method, status, heading", [
    ("/no-such-page", "get", 404, "Page not found"),
    ("/account/password", "get", 405, "That doesn&#39;t work here"),
])
def test_http_errors_are_styled_pages(client, path, method, status, heading):
    response = getattr(client, method)(path)
    html = response.get_data(as_text=True)
    assert response.status_code == status and f"<h1>{heading}</h1>" in html and STYLESHEET in html
    assert f"HTTP {status}" in html


def test_an_unexpected_error_is_a_styled_500_without_detail(app):
    @app.get("/test-only/fail")
    def fail():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/test-only/fail")
    html = response.get_data(as_text=True)
    assert response.status_code == 500 and "<h1>Something went wrong</h1>" in html and STYLESHEET in html
    assert "secret internals" not in html and "Traceback" not in html


def test_a_stale_sign_in_form_explains_itself_and_offers_the_page_again(client, make_user):
    make_user(email="sam@example.com")
    response = client.post("/login?rid=abc", data={"username": "sam@example.com", "password": PASSWORD, "csrf_token": "stale"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "This sign-in page expired; start again." in html
    assert '<a class="button button-primary" href="/login?rid=abc">Sign in again</a>' in html
    assert "Signed in" not in html


def test_a_stale_form_on_an_action_without_a_page_links_home(client, make_user):
    make_user(email="kim@example.com")
    sign_in(client, "kim@example.com")
    response = client.post("/account/password", data={"csrf_token": "stale"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "This page expired" in html and 'href="/">Start again</a>' in html


def test_an_api_keeps_json_errors(client):
    response = client.post("/token", data={"grant_type": "authorization_code"}, headers={"Accept": "application/json"})
    assert response.is_json


def test_sign_out_everywhere_asks_first_and_the_question_changes_nothing(app, client, make_user):
    user = make_user(email="lee@example.com")
    sign_in(client, "lee@example.com")
    assert 'href="/account/sign-out-everywhere"' in client.get("/account").get_data(as_text=True)
    for method in ("get", "head"):
        response = getattr(client, method)("/account/sign-out-everywhere")
        assert response.status_code == 200
    html = client.get("/account/sign-out-everywhere").get_data(as_text=True)
    assert "<h1>Sign out everywhere?</h1>" in html and 'method="post" action="/account/sign-out-everywhere"' in html
    with app.app_context():
        assert db.session.scalar(select(User.token_version).where(User.id == user.id)) == 1
    assert client.get("/account").status_code == 200  # still signed in
    done = client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(html)})
    assert done.status_code == 200 and b"Signed out everywhere" in done.data


def test_account_page_shows_granted_scopes_in_words(app, client, make_user, make_client):
    from idp.models import Consent

    user = make_user(email="max@example.com")
    rp, _ = make_client(name="Notes")
    with app.app_context():
        db.session.add(Consent(user_id=user.id, client_id=rp.id, scope="openid email"))
        db.session.commit()
    sign_in(client, "max@example.com")
    html = client.get("/account").get_data(as_text=True)
    assert '<li data-scope="email">See your email address and whether it is verified</li>' in html
    assert "openid email" not in html


def test_branded_logo_is_escaped_and_allowed_by_every_csp(make_app):
    app = make_app(BRAND_LOGO_URL="https://cdn.example.com/acme.svg")
    client = app.test_client()
    for path in ("/", "/logout", "/admin/login"):
        response = client.get(path)
        assert '<img class="brand-logo" src="https://cdn.example.com/acme.svg" alt=""' in response.get_data(as_text=True), path
        policy = response.headers.get("Content-Security-Policy", "")
        assert "img-src" not in policy or "https://cdn.example.com" in policy, path
    assert "img-src 'self' https://cdn.example.com;" in client.get("/logout").headers["Content-Security-Policy"]
    assert "style-src 'self'" in client.get("/logout").headers["Content-Security-Policy"]
