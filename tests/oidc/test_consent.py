"""The consent page: names client and scopes, Allow and deny, remembered per user, client and scopes."""

from sqlalchemy import select

from idp.db import db
from idp.models import AuditEvent, AuthorizationCode, Consent
from tests.oidc.conftest import REDIRECT_URI, query_of
from tests.oidc.flow import csrf_token, page_form


def consent_page(oidc, rp, user, **overrides):
    """Sign in and stop at the consent page; return the response."""
    response, _, _ = oidc.authorize(rp, **overrides)
    response = oidc.follow(oidc.login(response.location, user.email))
    assert response.status_code == 200 and b">Allow</button>" in response.data, response.data
    return response


def consent_rows(app):
    with app.app_context():
        return [(row.user_id, row.client_id, row.scope) for row in db.session.scalars(select(Consent))]


def test_the_page_names_the_client_and_the_scopes_in_words(oidc, rp, user):
    page = consent_page(oidc, rp, user, scope="openid profile email offline_access")
    body = page.get_data(as_text=True)
    assert "Test RP" in body and user.email in body
    for words in ("See your name", "See your email address", "Keep access while you are away"):
        assert words in body
    form = page_form(body)
    assert form["buttons"]["Allow"] == ("decision", "allow")
    assert form["buttons"]["Deny"] == ("decision", "deny")
    assert "csrf_token" in form["fields"]


def test_names_are_escaped(oidc, register, user):
    hostile = register(name='<img src=x onerror="alert(1)">')
    body = consent_page(oidc, hostile, user).get_data(as_text=True)
    assert "<img" not in body and "&lt;img" in body


def test_allow_issues_a_code_and_remembers(oidc, rp, user, app):
    page = consent_page(oidc, rp, user)
    result = oidc.follow(oidc.decide(page.request.full_path))
    assert result.status_code == 302 and query_of(result.location)["code"]
    assert consent_rows(app) == [(user.id, rp.row.id, "email openid profile")]
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "consent.granted")).target == f"client:{rp.client_id}"
    # Remembered: the same request goes straight back with a code.
    response, _, _ = oidc.authorize(rp)
    assert "code" in query_of(response.location)


def test_deny_returns_access_denied_with_state_and_iss(oidc, rp, user, app):
    page = consent_page(oidc, rp, user)
    result = oidc.follow(oidc.decide(page.request.full_path, "deny"))
    assert result.location.startswith(REDIRECT_URI + "?")
    query = query_of(result.location)
    assert query["error"] == "access_denied" and query["state"] == "state-123" and query["iss"] == "http://localhost"
    assert "code" not in query
    assert consent_rows(app) == []
    with app.app_context():
        assert db.session.scalar(select(AuthorizationCode)) is None
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "consent.denied")) is not None
    # A denial is not remembered: the next request asks again.
    assert oidc.follow(oidc.authorize(rp)[0]).status_code == 200


def test_a_new_scope_asks_again_and_adds_to_what_was_granted(oidc, rp, user, app):
    oidc.sign_in_and_authorize(rp, user.email, scope="openid email")
    response = oidc.follow(oidc.authorize(rp, scope="openid email offline_access")[0])
    assert response.status_code == 200 and b"Keep access while you are away" in response.data
    oidc.follow(oidc.decide(response.request.full_path))
    assert consent_rows(app) == [(user.id, rp.row.id, "email offline_access openid")]
    # A subset of what was granted needs no new consent.
    assert "code" in query_of(oidc.authorize(rp, scope="openid")[0].location)


def test_consent_is_per_user(oidc, rp, user, make_user):
    oidc.sign_in_and_authorize(rp, user.email)
    other = make_user(email="bob@example.com")
    oidc.client.delete_cookie("idp_session")
    response, _, _ = oidc.authorize(rp)
    response = oidc.follow(oidc.login(response.location, other.email))
    assert b">Allow</button>" in response.data


def test_a_first_party_client_skips_consent(oidc, register, user, app):
    first_party = register(name="First party", skip_consent=True)
    response, _, _ = oidc.authorize(first_party)
    response = oidc.follow(oidc.login(response.location, user.email))
    assert response.status_code == 302 and query_of(response.location)["code"]
    assert consent_rows(app) == []


def test_without_csrf_nothing_is_granted(oidc, rp, user, app):
    page = consent_page(oidc, rp, user)
    rid = query_of(page.request.full_path)["rid"]
    response = oidc.client.post(page.request.full_path, data={"decision": "allow", "rid": rid})
    assert response.status_code == 400
    assert consent_rows(app) == []


def test_a_bogus_decision_is_refused(oidc, rp, user, app):
    page = consent_page(oidc, rp, user)
    rid = query_of(page.request.full_path)["rid"]
    token = csrf_token(page.get_data(as_text=True))
    response = oidc.client.post(page.request.full_path, data={"decision": "maybe", "rid": rid, "csrf_token": token})
    assert response.status_code == 400
    assert consent_rows(app) == []


def test_the_page_needs_a_waiting_request_and_a_signed_in_user(oidc, rp, user, client):
    assert client.get("/consent").status_code == 400
    assert client.get("/consent?rid=nothing").status_code == 400
    page = consent_page(oidc, rp, user)
    client.delete_cookie("idp_session")
    assert client.get(page.request.full_path).status_code == 400


def test_a_decision_is_spent_with_its_answer(oidc, rp, user):
    oidc.sign_in_and_authorize(rp, user.email)
    verifier = "v" * 43
    result = oidc.sign_in_and_authorize(rp, user.email, prompt="consent", verifier=verifier)
    assert result.code
    # Replaying the very same URL does not reuse the earlier Allow: prompt=consent asks again.
    response = oidc.follow(oidc.authorize(rp, prompt="consent", verifier=verifier)[0])
    assert response.status_code == 200 and b">Allow</button>" in response.data


def test_sign_in_and_consent_pages_cannot_be_framed_or_cached(oidc, rp, user):
    page = consent_page(oidc, rp, user)
    login = oidc.client.get("/login")
    for response in (page, login):
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
