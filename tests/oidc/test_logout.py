"""RP-Initiated Logout 1.0: hints, exact post-logout redirects, state, confirmation with CSRF, errors."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from idp.clock import utcnow
from tests.browser_support import server_pool, shared_server  # noqa: F401 (fixtures of the browser test)
from tests.oidc.resource_support import (  # noqa: F401 (fixtures)
    POST_LOGOUT_URI,
    access_token,
    audit_actions,
    b64,
    decode_part,
    id_token,
    other_rp,
    rp,
    session_exists,
    sign,
    start_sso_session,
    user,
)


def logout_url(**params) -> str:
    return "/logout?" + urlencode(params)


def csrf_token(page: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def hidden_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input id="(\w+)" name="\1" type="hidden" value="([^"]*)"', page))


def assert_confirmation_page(response) -> str:
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert '<input id="confirm" name="confirm" type="submit" value="Sign out">' in page
    assert "Location" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    return page


def assert_refused(response, *words: str) -> None:
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers
    for word in words:
        assert word in page


def cookie_cleared(response) -> bool:
    return any(header.startswith("idp_session=;") for header in response.headers.getlist("Set-Cookie"))


# --- with a valid hint for this browser's session: at once ---------------------------------------


def test_valid_hint_for_this_session_signs_out_at_once_and_redirects_with_state(app, client, user, rp):
    sid = start_sso_session(app, client, user)
    hint = id_token(app, user, rp[0].client_id, sid=sid)
    response = client.get(logout_url(id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT_URI, state="xyz 123", ui_locales="fr"))
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == POST_LOGOUT_URI
    assert parse_qs(location.query) == {"state": ["xyz 123"]}
    assert not session_exists(app, sid)
    assert cookie_cleared(response)
    actions = audit_actions(app)
    assert "logout.rp_initiated" in actions and "session.ended" in actions


def test_the_ended_session_is_gone_for_the_browser(app, client, user, rp):
    sid = start_sso_session(app, client, user)
    client.get(logout_url(id_token_hint=id_token(app, user, rp[0].client_id, sid=sid)))
    # The old cookie (if a browser kept it) no longer maps to any session row.
    assert not session_exists(app, sid)
    again = client.get(logout_url(client_id=rp[0].client_id))
    assert_confirmation_page(again)


def test_an_expired_hint_is_accepted(app, client, user, rp):
    """Section 2: the OP SHOULD accept an ID token whose exp has passed."""
    sid = start_sso_session(app, client, user)
    hint = id_token(app, user, rp[0].client_id, sid=sid, now=utcnow() - timedelta(days=2))
    response = client.get(logout_url(id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT_URI))
    assert response.status_code == 302 and not session_exists(app, sid)


def test_a_hint_is_accepted_for_the_hint_lifetime_and_no_longer(app, client, user, rp):
    """IDP_ID_TOKEN_HINT_TTL bounds a hint's age (plus the clock skew), however long ago it expired."""
    sid = start_sso_session(app, client, user)
    lifetime = timedelta(seconds=app.config["ID_TOKEN_HINT_TTL"] + app.config["CLOCK_SKEW"])
    too_old = id_token(app, user, rp[0].client_id, sid=sid, now=utcnow() - lifetime - timedelta(minutes=1))
    assert_refused(client.get(logout_url(id_token_hint=too_old, post_logout_redirect_uri=POST_LOGOUT_URI)), "too old")
    assert session_exists(app, sid)
    old_enough = id_token(app, user, rp[0].client_id, sid=sid, now=utcnow() - lifetime + timedelta(minutes=1))
    response = client.get(logout_url(id_token_hint=old_enough, post_logout_redirect_uri=POST_LOGOUT_URI))
    assert response.status_code == 302 and not session_exists(app, sid)


def test_hint_without_redirect_uri_shows_the_signed_out_page(app, client, user, rp):
    sid = start_sso_session(app, client, user)
    response = client.get(logout_url(id_token_hint=id_token(app, user, rp[0].client_id, sid=sid), state="s"))
    assert response.status_code == 200 and "You are signed out" in response.get_data(as_text=True)
    assert "Location" not in response.headers and not session_exists(app, sid)


def test_hint_with_matching_client_id(app, client, user, rp):
    sid = start_sso_session(app, client, user)
    hint = id_token(app, user, rp[0].client_id, sid=sid)
    response = client.get(logout_url(id_token_hint=hint, client_id=rp[0].client_id, post_logout_redirect_uri=POST_LOGOUT_URI))
    assert response.status_code == 302 and not session_exists(app, sid)


def test_valid_hint_without_a_session_just_redirects(app, client, user, rp):
    response = client.get(logout_url(id_token_hint=id_token(app, user, rp[0].client_id, sid="gone"), post_logout_redirect_uri=POST_LOGOUT_URI, state="s"))
    assert response.status_code == 302 and response.headers["Location"] == POST_LOGOUT_URI + "?state=s"


def test_rp_post_with_the_cookie_signs_out_at_once(app, client, user, rp):
    sid = start_sso_session(app, client, user)
    hint = id_token(app, user, rp[0].client_id, sid=sid)
    response = client.post("/logout", data={"id_token_hint": hint, "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "abc"})
    assert response.status_code == 302 and response.headers["Location"] == POST_LOGOUT_URI + "?state=abc"
    assert not session_exists(app, sid)


def test_rp_post_without_the_cookie_becomes_a_get_without_the_id_token(app, client, user, rp):
    """A cross-site POST carries no SameSite=Lax cookie; a 303 turns it into a top-level GET, which
    the cookie comes with, but the ID token stays out of that URL: the user confirms instead."""
    sid = start_sso_session(app, client, user)
    hint = id_token(app, user, rp[0].client_id, sid=sid)
    params = {"id_token_hint": hint, "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "abc"}
    response = app.test_client(use_cookies=False).post("/logout", data=params)
    assert response.status_code == 303 and hint not in response.headers["Location"]
    assert session_exists(app, sid)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/logout" and parse_qs(location.query) == {
        "client_id": [rp[0].client_id], "post_logout_redirect_uri": [POST_LOGOUT_URI], "state": ["abc"]}
    page = assert_confirmation_page(client.get(response.headers["Location"]))
    assert session_exists(app, sid)
    confirmed = client.post("/logout", data={**hidden_fields(page), "confirm": "Sign out"})
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == POST_LOGOUT_URI + "?state=abc"
    assert not session_exists(app, sid)


# --- without a valid hint for this session: the user confirms --------------------------------------


def test_no_hint_asks_first_and_ends_nothing_until_confirmed(app, client, user, rp):
    sid = start_sso_session(app, client, user)
    response = client.get(logout_url(client_id=rp[0].client_id, post_logout_redirect_uri=POST_LOGOUT_URI, state="st"))
    page = assert_confirmation_page(response)
    assert "Relying Party" in page
    assert session_exists(app, sid)
    fields = hidden_fields(page)
    assert fields["client_id"] == rp[0].client_id and fields["state"] == "st" and fields["post_logout_redirect_uri"] == POST_LOGOUT_URI

    confirmed = client.post("/logout", data={**fields, "confirm": "Sign out"})
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == POST_LOGOUT_URI + "?state=st"
    assert not session_exists(app, sid) and cookie_cleared(confirmed)


def test_confirmation_without_client_shows_signed_out_page(app, client, user):
    sid = start_sso_session(app, client, user)
    fields = hidden_fields(assert_confirmation_page(client.get("/logout")))
    confirmed = client.post("/logout", data={**fields, "confirm": "Sign out"})
    assert confirmed.status_code == 200 and "You are signed out" in confirmed.get_data(as_text=True)
    assert not session_exists(app, sid)


def test_hint_for_another_session_asks_first(app, client, user, rp, make_user):
    sid = start_sso_session(app, client, user)
    someone_else = make_user(email="mallory@example.com")
    for hint in (id_token(app, user, rp[0].client_id, sid="an-older-session"), id_token(app, someone_else, rp[0].client_id)):
        page = assert_confirmation_page(client.get(logout_url(id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT_URI)))
        assert session_exists(app, sid)
    confirmed = client.post("/logout", data={**hidden_fields(page), "confirm": "Sign out"})
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == POST_LOGOUT_URI
    assert not session_exists(app, sid)


@pytest.mark.parametrize("csrf", ["missing", "wrong"])
def test_confirmation_needs_its_csrf_token(app, client, user, rp, csrf):
    sid = start_sso_session(app, client, user)
    fields = hidden_fields(assert_confirmation_page(client.get(logout_url(client_id=rp[0].client_id))))
    fields["csrf_token"] = "forged" if csrf == "wrong" else ""
    response = client.post("/logout", data={**fields, "confirm": "Sign out"})
    assert_refused(response, "expired")
    assert session_exists(app, sid)


def test_confirmation_is_validated_again(app, client, user, rp):
    """Tampering with the hidden fields cannot smuggle in an unregistered redirect."""
    sid = start_sso_session(app, client, user)
    fields = hidden_fields(assert_confirmation_page(client.get(logout_url(client_id=rp[0].client_id))))
    fields["post_logout_redirect_uri"] = "https://evil.example.com/"
    assert_refused(client.post("/logout", data={**fields, "confirm": "Sign out"}), "not registered")
    assert session_exists(app, sid)


# --- refused requests: an error page, nothing ended, no redirect ------------------------------------


def hostile_hints(app, user, rp_client) -> dict[str, str]:
    from jwcrypto import jwk

    good = id_token(app, user, rp_client.client_id, sid="s")
    claims = decode_part(good, 1)
    return {
        "garbage": "garbage",
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        "foreign key": sign(app, {"typ": "JWT"}, claims, key=jwk.JWK.generate(kty="RSA", size=2048)),
        "access token": access_token(app, user, rp_client),
        "wrong issuer": id_token(app, user, rp_client.client_id, iss="https://evil.example.com"),
        "jku header": id_token(app, user, rp_client.client_id, header={"jku": "http://127.0.0.1:1/jwks"}),
        "no sub": sign(app, {"typ": "JWT"}, {k: v for k, v in claims.items() if k != "sub"}),
        "no iat": sign(app, {"typ": "JWT"}, {k: v for k, v in claims.items() if k != "iat"}),
        "issued in the future": id_token(app, user, rp_client.client_id, now=utcnow() + timedelta(hours=1)),
        "tampered": f"{good.split('.')[0]}.{b64({**claims, 'sub': 'someone-else'})}.{good.split('.')[2]}",
        "oversized": "a" * 9000,
    }


def test_hints_we_did_not_issue_are_refused(app, client, user, rp):
    sid = start_sso_session(app, client, user)
    for name, hint in hostile_hints(app, user, rp[0]).items():
        response = client.get(logout_url(id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT_URI))
        assert response.status_code == 400, name
        assert "Location" not in response.headers, name
    assert session_exists(app, sid)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unregistered redirect", "not registered"),
        ("redirect without client", "needs id_token_hint or client_id"),
        ("client_id not the hint audience", "does not match"),
        ("unknown client_id", "unknown client_id"),
        ("repeated state", "repeated"),
        ("another client's registered uri", "not registered"),
        ("prefix of the registered uri", "not registered"),
    ],
)
def test_bad_requests_show_an_error_and_end_nothing(app, client, user, rp, other_rp, case, expected):
    sid = start_sso_session(app, client, user)
    hint = id_token(app, user, rp[0].client_id, sid=sid)
    query = {
        "unregistered redirect": {"id_token_hint": hint, "post_logout_redirect_uri": "https://evil.example.com/"},
        "redirect without client": {"post_logout_redirect_uri": POST_LOGOUT_URI},
        "client_id not the hint audience": {"id_token_hint": hint, "client_id": other_rp[0].client_id},
        "unknown client_id": {"client_id": "nobody"},
        "repeated state": [("id_token_hint", hint), ("state", "a"), ("state", "b")],
        "another client's registered uri": {"client_id": other_rp[0].client_id, "post_logout_redirect_uri": POST_LOGOUT_URI},
        "prefix of the registered uri": {"id_token_hint": hint, "post_logout_redirect_uri": POST_LOGOUT_URI + "/more"},
    }[case]
    assert_refused(client.get("/logout?" + urlencode(query)), expected)
    assert session_exists(app, sid)


def test_error_and_confirmation_pages_escape_input(app, client, user, rp):
    script = '"><script>alert(1)</script>'
    refused = client.get(logout_url(client_id=rp[0].client_id, post_logout_redirect_uri=script))
    assert_refused(refused)
    assert "<script>" not in refused.get_data(as_text=True)
    page = assert_confirmation_page(client.get(logout_url(client_id=rp[0].client_id, state=script)))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_oversized_parameter_is_refused(client):
    assert_refused(client.get(logout_url(state="s" * 9000)), "too long")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_unknown_methods_are_405(client, method):
    response = client.open("/logout", method=method)
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


# --- in a real browser ------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_logout_in_a_real_browser_from_a_cross_site_relying_party(app, shared_server, make_client, user, browser_context):
    """The RP (on `localhost`) posts its logout form to the IdP (on `127.0.0.1`, another site): the
    SameSite=Lax cookie stays off that POST, and the 303 to a GET (without the ID token) brings it
    back to the confirmation page, so the session really ends. Then a hint-less logout likewise."""
    from idp.db import db
    from idp.models import User
    from idp.sessions.service import new_row
    from tests.oidc.resource_support import RecordingServer

    base = shared_server.base  # its readiness check survives a loaded machine (tests/browser_support.py)
    with RecordingServer() as rp_site:
        rp_origin = f"http://localhost:{rp_site.port}"
        signed_out = rp_origin + "/signed-out"
        registered, _ = make_client("Cross-site RP", redirect_uris=[rp_origin + "/cb"], post_logout_redirect_uris=[signed_out])

        def sign_in() -> str:
            with app.app_context():
                value, row = new_row(app, "sso", db.session.get(User, user.id))
                db.session.commit()
                sid = row.sid
            browser_context.add_cookies([{"name": "idp_session", "value": value, "url": base, "httpOnly": True, "sameSite": "Lax"}])
            return sid

        sid = sign_in()
        hint = id_token(app, user, registered.client_id, sid=sid, iss=base)
        rp_site.pages["/start"] = (
            f'<form method="post" action="{base}/logout">'
            f'<input type="hidden" name="id_token_hint" value="{hint}">'
            f'<input type="hidden" name="post_logout_redirect_uri" value="{signed_out}">'
            '<input type="hidden" name="state" value="from-the-rp">'
            '<button id="logout">Log out</button></form>'
        )
        rp_site.pages["/signed-out"] = "<p>bye</p>"
        page = browser_context.new_page()
        page.goto(rp_origin + "/start")
        page.click("#logout")
        # The hint does not travel into the GET's URL, so the user confirms.
        assert page.locator("h1").inner_text() == "Sign out?" and hint not in page.url
        assert session_exists(app, sid)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(signed_out + "?state=from-the-rp")
        assert not session_exists(app, sid)

        sid = sign_in()
        page.goto(f"{base}/logout?" + urlencode({"client_id": registered.client_id, "post_logout_redirect_uri": signed_out, "state": "confirmed"}))
        assert page.locator("h1").inner_text() == "Sign out?"
        assert session_exists(app, sid)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(signed_out + "?state=confirmed")
        assert not session_exists(app, sid)
