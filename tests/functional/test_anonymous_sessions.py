"""Anonymous traffic writes no row; pending requests stay bounded; a session ending mid-request is a clean sign-out."""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from flask import request
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select

from idp.db import db
from idp.models import Base, UserSession
from idp.oauth import pending
from tests.admin_ui.conftest import make_session
from tests.oidc.flow import csrf_token, pkce_pair

PASSWORD = "correct horse battery"
REDIRECT_URI = "https://rp.example.com/cb"
ARGUMENTS = {"user_id": "1", "client_id": "some-client", "kid": "some-kid", "sid": "some-sid", "name": "purge", "filename": "admin.css"}


def row_counts(app) -> dict:
    with app.app_context():
        counts = {table.name: db.session.scalar(select(func.count()).select_from(table)) for table in Base.metadata.sorted_tables}
        db.session.remove()
        return counts


def public_pages(app) -> list[str]:
    """Every GET rule of the URL map, with placeholder arguments, plus the pages' usual query strings."""
    urls = [re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda match: ARGUMENTS[match.group(1)], rule.rule)
            for rule in app.url_map.iter_rules() if "GET" in rule.methods]
    return sorted(urls) + ["/login?rid=unknown&next=/account", "/consent?rid=unknown", "/admin/login?next=/admin/users"]


def authorize_query(client_id: str, **extra) -> dict:
    _, challenge = pkce_pair()
    return {"client_id": client_id, "redirect_uri": REDIRECT_URI, "response_type": "code", "scope": "openid",
            "code_challenge": challenge, "code_challenge_method": "S256", **extra}


def test_anonymous_gets_of_every_page_write_no_row(app):
    before = row_counts(app)
    pages = public_pages(app)
    browser = app.test_client()  # one that keeps (and sends back) the cookies it is given
    for _ in range(2):
        for url in pages:
            for visitor in (app.test_client(use_cookies=False), browser):
                with visitor.get(url) as response:
                    assert response.status_code < 500, url
    assert row_counts(app) == before
    assert browser.get_cookie("idp_session") is None and browser.get_cookie("idp_admin") is None
    assert browser.get_cookie("idp_session_anon").http_only and browser.get_cookie("idp_admin_anon").same_site == "Strict"


def test_on_https_the_anonymous_cookie_is_secure_and_host_prefixed(make_app, app):
    secure = make_app(ISSUER="https://idp.example.com").test_client()
    secure.get("/login", base_url="https://idp.example.com")
    cookie = secure.get_cookie("__Host-idp_session_anon", domain="idp.example.com")
    assert cookie.secure and cookie.http_only and cookie.same_site == "Lax" and cookie.path == "/"
    assert row_counts(app)["sessions"] == 0


def test_a_flood_of_pending_requests_keeps_one_bounded_session_row(app, client, make_client):
    registered, _ = make_client(redirect_uris=[REDIRECT_URI])
    rids = []
    for number in range(20):
        response = client.get("/authorize", query_string=authorize_query(registered.client_id, state=f"{number}-" + "s" * 4000, nonce="n" * 4000))
        assert response.status_code == 302 and "/login?rid=" in response.headers["Location"]
        rids.append(response.headers["Location"].partition("rid=")[2])
    with app.app_context():
        [row] = db.session.scalars(select(UserSession))
        kept = row.data[pending.SESSION_KEY]
    assert len(json.dumps(kept)) <= pending.MAX_PENDING_BYTES and 1 < len(kept) < pending.MAX_PENDING  # the size bound
    assert list(kept) == rids[-len(kept):]  # the newest are kept, the oldest dropped
    assert "Test RP" in client.get(f"/login?rid={rids[-1]}").get_data(as_text=True)

    huge = client.get("/authorize", query_string=authorize_query(registered.client_id, **{
        name: "x" * 4000 for name in ("state", "nonce", "login_hint", "acr_values", "ui_locales")}))
    assert huge.status_code == 400 and "too large" in huge.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(UserSession.data))[pending.SESSION_KEY] == kept


def signed_in_browser(app, user):
    browser = app.test_client()
    token = csrf_token(browser.get("/login").get_data(as_text=True))
    assert browser.post("/login", data={"username": user.email, "password": PASSWORD, "csrf_token": token}).status_code == 200
    return browser


def end_every_session_elsewhere(app) -> None:
    """End the sessions from another thread and database connection, as a concurrent logout would."""

    def end():
        from idp.sessions.service import end_session

        with app.app_context():
            for row in db.session.scalars(select(UserSession)):
                end_session(row, reason="logout")
            db.session.commit()
            db.session.remove()

    thread = threading.Thread(target=end)
    thread.start()
    thread.join()


def test_a_session_ended_while_a_request_writes_it_is_a_clean_sign_out(app, make_user, make_client):
    user = make_user(email="alice@example.com", password=PASSWORD)
    registered, _ = make_client(redirect_uris=[REDIRECT_URI])
    armed = threading.Event()

    # Deterministic: the session ends after the view ran and before the session is saved.
    @app.after_request
    def end_mid_request(response):
        if armed.is_set() and request.path == "/authorize":
            end_every_session_elsewhere(app)
        return response

    browser = signed_in_browser(app, user)
    armed.set()
    response = browser.get("/authorize", query_string=authorize_query(registered.client_id))  # remembers a pending request
    assert response.status_code == 302  # to /consent, not a 500
    assert browser.get_cookie("idp_session") is None  # the cookie is cleared: signed out
    assert row_counts(app)["sessions"] == 0


def test_raced_session_writes_and_a_logout_never_fail(app, make_user, make_client):
    user = make_user(email="alice@example.com", password=PASSWORD)
    registered, _ = make_client(redirect_uris=[REDIRECT_URI])
    browser = signed_in_browser(app, user)
    cookie = browser.get_cookie("idp_session").value
    logout_token = csrf_token(browser.get("/account").get_data(as_text=True))

    def write(number: int) -> int:
        raced = app.test_client()
        raced.set_cookie("idp_session", cookie)
        if number == 10:
            return raced.post("/account/sign-out-everywhere", data={"csrf_token": logout_token}).status_code
        return raced.get("/authorize", query_string=authorize_query(registered.client_id, state=str(number))).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(write, range(24)))
    assert all(status < 500 for status in statuses), statuses
    assert statuses[10] == 200
    with app.app_context():  # (requests after the logout start anonymous sessions of their own)
        assert db.session.scalar(select(func.count()).where(UserSession.user_id == user.id)) == 0


def aged_token(app, raw: str, age: int) -> str:
    """A Flask-WTF form token for the session's raw token, signed `age` seconds ago."""

    class Aged(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    return URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token", signer=Aged).dumps(raw)


def raw_csrf_token(app, kind: str) -> str:
    with app.app_context():
        return db.session.scalar(select(UserSession.data).where(UserSession.kind == kind))["csrf_token"]


def test_sign_in_carries_the_anonymous_csrf_token_and_tokens_expire_with_the_idle_timeout(app, make_user):
    user = make_user(email="alice@example.com", password=PASSWORD, is_admin=True)
    sso_idle, admin_idle = app.config["SSO_SESSION_IDLE_TTL"], app.config["ADMIN_SESSION_IDLE_TTL"]
    browser = app.test_client()
    token = csrf_token(browser.get("/login").get_data(as_text=True))
    assert row_counts(app)["sessions"] == 0
    signed_in = browser.post("/login", data={"username": user.email, "password": PASSWORD, "csrf_token": token})
    assert signed_in.status_code == 200 and "Signed in" in signed_in.get_data(as_text=True)
    sso_raw = raw_csrf_token(app, "sso")
    assert browser.get_cookie("idp_session_anon") is None
    _, other_sid = make_session(app, user.id)  # the same user on another device
    admin_page = browser.get("/admin/login").get_data(as_text=True)
    browser.post("/admin/login", data={"email": user.email, "password": PASSWORD, "csrf_token": csrf_token(admin_page)})

    admin_raw = raw_csrf_token(app, "admin")
    refused = browser.post(f"/admin/users/{user.id}/sign-out", data={"csrf_token": aged_token(app, admin_raw, admin_idle + 5)})
    assert refused.status_code == 400 and "expired" in refused.get_data(as_text=True)
    assert browser.post("/account/sign-out-everywhere", data={"csrf_token": aged_token(app, sso_raw, sso_idle + 5)}).status_code == 400
    assert row_counts(app)["sessions"] == 3  # nothing happened
    # The anonymous form's token was carried into the new session: it still posts.
    assert browser.post(f"/account/sessions/{other_sid}/sign-out", data={"csrf_token": token}).status_code == 302
    assert row_counts(app)["sessions"] == 2
    assert browser.post("/account/sign-out-everywhere", data={"csrf_token": aged_token(app, sso_raw, sso_idle - 60)}).status_code == 200
    assert row_counts(app)["sessions"] == 0

