"""The authorization endpoint: validation, redirects and error pages, PKCE, prompt, max_age, hints."""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, update

from idp.clock import utcnow
from idp.db import db
from idp.models import AuthorizationCode, UserSession
from tests.admin_ui.conftest import make_session
from tests.oidc.conftest import REDIRECT_URI, claims_of, query_of
from tests.oidc.flow import pkce_pair
from tests.oidc.resource_support import sign

ISSUER = "http://localhost"


def assert_error_page(response, *fragments):
    """An HTML error page: 400, no redirect, nothing reflected unescaped."""
    assert response.status_code == 400, response.data
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "<script" not in body
    for fragment in fragments:
        assert fragment in body
    return body


def assert_redirected_error(response, error, state="state-123", redirect_uri=REDIRECT_URI):
    """An error sent back to the client's registered redirect_uri with state and iss (RFC 9207)."""
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.location.startswith(redirect_uri + "?")
    query = query_of(response.location)
    assert query["error"] == error, query
    assert query["iss"] == ISSUER
    if state is not None:
        assert query["state"] == state
    assert "code" not in query
    return query


def codes(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuthorizationCode))


# --- the happy path ---------------------------------------------------------------------------------


def test_signed_out_user_is_sent_to_login_then_consent_then_back_with_code_state_and_iss(oidc, rp, user, app):
    response, params, _ = oidc.authorize(rp)
    assert response.status_code == 302 and response.location.startswith("/login?rid=")
    result = oidc.sign_in_and_authorize(rp, user.email)
    assert result.location.startswith(REDIRECT_URI + "?")
    assert result.query["state"] == "state-123"
    assert result.query["iss"] == ISSUER
    assert len(result.code) >= 43
    assert codes(app) == 1


def test_state_round_trips_exactly(oidc, rp, user):
    state = "a b&c=d/é?#%20+"
    result = oidc.sign_in_and_authorize(rp, user.email, state=state)
    assert result.query["state"] == state


def test_the_request_may_be_posted(oidc, rp, user):
    oidc.sign_in_and_authorize(rp, user.email)  # signed in and consented
    response, _, _ = oidc.authorize(rp, method="POST")
    assert response.status_code == 302 and "code" in query_of(response.location)


def test_an_existing_session_is_reused_without_a_password(oidc, rp, register, user):
    oidc.sign_in_and_authorize(rp, user.email)
    other = register(name="Second RP", skip_consent=True)
    response, _, _ = oidc.authorize(other)
    assert response.status_code == 302 and "code" in query_of(response.location)


def test_omitted_redirect_uri_uses_the_single_registered_one(oidc, rp, user):
    result = oidc.sign_in_and_authorize(rp, user.email, redirect_uri=None)
    assert result.location.startswith(REDIRECT_URI + "?")
    # RFC 6749 4.1.3: omitted in the request, so omitted at the token endpoint too.
    assert oidc.redeem(rp, result, redirect_uri=None).status_code == 200


def test_loopback_redirect_uri_may_use_any_port(oidc, register, user):
    native = register(public=True, redirect_uris=["http://127.0.0.1/callback"])
    result = oidc.sign_in_and_authorize(native, user.email, redirect_uri="http://127.0.0.1:51234/callback")
    assert result.location.startswith("http://127.0.0.1:51234/callback?")


def test_unknown_parameters_are_ignored(oidc, rp, user):
    result = oidc.sign_in_and_authorize(rp, user.email, foo="bar", ui_locales="fr", acr_values="urn:x")
    assert result.code


# --- never redirect to an unvalidated place ---------------------------------------------------------


@pytest.mark.parametrize("client_id", [None, "", "no-such-client", "x" * 500, "abc\x00def"])
def test_unknown_or_missing_client_gets_a_page_not_a_redirect(oidc, rp, client_id, app):
    rp.client_id = client_id
    response, _, _ = oidc.authorize(rp)
    assert_error_page(response)
    assert codes(app) == 0


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/callback",
        REDIRECT_URI + "/extra",
        REDIRECT_URI + "?x=1",
        REDIRECT_URI + "#frag",
        "http://127.0.0.1:9999/CALLBACK",
        "http://localhost:9999/callback",
        'http://127.0.0.1:9999/callback"><script>alert(1)</script>',
        "javascript:alert(1)",
    ],
)
def test_unregistered_or_mismatched_redirect_uri_gets_a_page(oidc, rp, redirect_uri):
    response, _, _ = oidc.authorize(rp, redirect_uri=redirect_uri)
    assert_error_page(response, "invalid_request")


def test_missing_redirect_uri_with_several_registered_gets_a_page(oidc, register):
    several = register(redirect_uris=["https://rp.example.com/a", "https://rp.example.com/b"])
    response, _, _ = oidc.authorize(several, redirect_uri=None)
    assert_error_page(response, "redirect_uri")


def test_error_pages_escape_what_they_show(oidc, rp):
    response, _, _ = oidc.authorize(rp, client_id="<script>alert(1)</script>", response_type="<b>x</b>")
    body = assert_error_page(response)
    assert "<b>" not in body


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "response_type"])
def test_repeated_client_or_redirect_parameters_get_a_page(oidc, rp, name, app):
    response, params, _ = oidc.authorize(rp)
    params[name] = [params[name], params[name]]
    response = oidc.client.get("/authorize?" + urlencode(params, doseq=True))
    assert_error_page(response, "invalid_request")


def test_control_characters_get_a_page(oidc, rp):
    response, _, _ = oidc.authorize(rp, state="a\x01b")
    assert_error_page(response, "invalid_request")
    # A NUL byte is refused before any view, like everywhere else (idp.input_guard).
    response, _, _ = oidc.authorize(rp, state="a\x00b")
    assert_error_page(response, "400 Invalid Request")


# --- errors that go back to the client --------------------------------------------------------------


@pytest.fixture
def signed_in(app, oidc, user):
    """The browser already has an SSO session, so errors go straight back to the client.

    (An anonymous browser signs in first, RFC 9700 4.11.2: see the tests after these.)
    """
    cookie, _ = make_session(app, user.id)
    oidc.client.set_cookie("idp_session", cookie)


@pytest.mark.parametrize("name", ["state", "scope", "nonce", "prompt", "code_challenge", "max_age", "id_token_hint"])
def test_repeated_parameters_are_refused(oidc, rp, name, signed_in):
    response, params, _ = oidc.authorize(rp, max_age="60", prompt="login", id_token_hint="x")
    params[name] = [params[name], params[name]]
    response = oidc.client.get("/authorize?" + urlencode(params, doseq=True))
    if name in ("state", "scope"):
        # Authlib checks these before it knows the redirect_uri is sound: a page, not a redirect.
        assert_error_page(response, "invalid_request")
    else:
        assert_redirected_error(response, "invalid_request")


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "code token", None])
def test_only_response_type_code(oidc, rp, response_type, signed_in):
    response, _, _ = oidc.authorize(rp, response_type=response_type)
    assert_redirected_error(response, "unsupported_response_type")


def test_hostile_response_type_never_fails(oidc, rp, signed_in):
    response, _, _ = oidc.authorize(rp, response_type='co"de\\')
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert_redirected_error(response, "unsupported_response_type")


def test_client_without_the_code_grant_is_unauthorized(oidc, register, signed_in):
    machine = register(grant_types=["client_credentials"], redirect_uris=[REDIRECT_URI])
    response, _, _ = oidc.authorize(machine)
    assert_redirected_error(response, "unauthorized_client")


def test_unknown_scope_is_invalid_scope(oidc, rp, signed_in):
    response, _, _ = oidc.authorize(rp, scope="openid admin")
    assert_redirected_error(response, "invalid_scope")


def test_scopes_the_client_did_not_register_are_dropped(oidc, register, user, app):
    narrow = register(scope="openid email")
    result = oidc.sign_in_and_authorize(narrow, user.email, scope="openid email profile")
    with app.app_context():
        assert db.session.scalar(select(AuthorizationCode.scope)) == "openid email"


@pytest.mark.parametrize(
    "name, error",
    [("request", "request_not_supported"), ("request_uri", "request_uri_not_supported"), ("registration", "registration_not_supported")],
)
def test_request_objects_are_not_supported(oidc, rp, name, error, signed_in):
    response, _, _ = oidc.authorize(rp, **{name: "eyJhbGciOiJub25lIn0.e30."})
    assert_redirected_error(response, error)


@pytest.mark.parametrize("mode", ["fragment", "form_post", "web_message"])
def test_only_the_query_response_mode(oidc, rp, mode, signed_in):
    response, _, _ = oidc.authorize(rp, response_mode=mode)
    assert_redirected_error(response, "invalid_request")


def test_oversized_parameter_is_refused(oidc, rp, signed_in):
    response, _, _ = oidc.authorize(rp, nonce="n" * 5000)
    assert_redirected_error(response, "invalid_request")


@pytest.mark.parametrize("prompt", ["select_account", "bogus", "none login", "none consent"])
def test_unsupported_or_contradictory_prompts_are_refused(oidc, rp, prompt, signed_in):
    response, _, _ = oidc.authorize(rp, prompt=prompt)
    assert_redirected_error(response, "invalid_request")


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5", "", "99999999999999999999"])
def test_malformed_max_age_is_refused(oidc, rp, max_age, signed_in):
    response, _, _ = oidc.authorize(rp, max_age=max_age)
    assert_redirected_error(response, "invalid_request")


def test_an_anonymous_request_with_bad_parameters_signs_in_before_the_error_goes_back(oidc, rp, public_rp, user, app):
    """RFC 9700 4.11.2: a sound client and redirect_uri with a bad scope or plain PKCE do not bounce a stranger back."""
    verifier, _ = pkce_pair()
    for registered, bad, error in ((rp, {"scope": "openid admin"}, "invalid_scope"),
                                   (public_rp, {"code_challenge": verifier, "code_challenge_method": "plain"}, "invalid_request")):
        oidc.client.delete_cookie("idp_session")
        response, _, _ = oidc.authorize(registered, **bad)
        assert response.status_code == 302 and response.location.startswith("/login?rid="), response.location
        assert_redirected_error(oidc.follow(oidc.login(response.location, user.email)), error,
                                redirect_uri=registered.redirect_uri)
    assert codes(app) == 0


def test_with_prompt_none_the_error_of_an_anonymous_request_is_redirected_at_once(oidc, rp):
    """OIDC Core 3.1.2.6: prompt=none shows nothing, so the error goes back to the client without a sign-in."""
    response, _, _ = oidc.authorize(rp, prompt="none", scope="openid admin")
    assert_redirected_error(response, "invalid_scope")


# --- PKCE (RFC 7636, S256 only) ---------------------------------------------------------------------


def test_public_client_must_send_a_code_challenge(oidc, public_rp, signed_in):
    response, _, _ = oidc.authorize(public_rp, code_challenge=None, code_challenge_method=None)
    assert_redirected_error(response, "invalid_request")


def test_confidential_client_must_send_a_code_challenge_by_default(oidc, rp, signed_in):
    response, _, _ = oidc.authorize(rp, code_challenge=None, code_challenge_method=None)
    assert_redirected_error(response, "invalid_request")


def test_a_relaxed_confidential_client_may_omit_pkce(oidc, register, user):
    relaxed = register(require_pkce=False)
    result = oidc.sign_in_and_authorize(relaxed, user.email, code_challenge=None, code_challenge_method=None)
    assert oidc.redeem(relaxed, result, code_verifier=None).status_code == 200


def test_plain_is_refused(oidc, public_rp, signed_in):
    verifier, _ = pkce_pair()
    response, _, _ = oidc.authorize(public_rp, code_challenge=verifier, code_challenge_method="plain")
    assert_redirected_error(response, "invalid_request")


def test_a_challenge_without_method_is_refused_as_it_would_mean_plain(oidc, public_rp, signed_in):
    response, _, _ = oidc.authorize(public_rp, code_challenge_method=None)
    assert_redirected_error(response, "invalid_request")


@pytest.mark.parametrize("challenge", ["short", "x" * 129, "a" * 42 + "!", ""])
def test_malformed_challenge_is_refused(oidc, public_rp, challenge, signed_in):
    response, _, _ = oidc.authorize(public_rp, code_challenge=challenge)
    assert_redirected_error(response, "invalid_request")


# --- prompt, max_age, login_hint, id_token_hint -----------------------------------------------------


def test_prompt_none_without_session_is_login_required(oidc, rp):
    response, _, _ = oidc.authorize(rp, prompt="none")
    assert_redirected_error(response, "login_required")


def test_prompt_none_without_consent_is_consent_required(oidc, rp, register, user):
    oidc.sign_in_and_authorize(rp, user.email)
    other = register(name="Not yet allowed")
    response, _, _ = oidc.authorize(other, prompt="none")
    assert_redirected_error(response, "consent_required")


def test_prompt_none_with_session_and_consent_issues_a_code_silently(oidc, rp, user):
    oidc.sign_in_and_authorize(rp, user.email)
    response, _, _ = oidc.authorize(rp, prompt="none")
    assert response.status_code == 302 and query_of(response.location)["code"]


def test_prompt_login_asks_again_and_then_issues_a_code(oidc, rp, user):
    oidc.sign_in_and_authorize(rp, user.email)
    response, _, _ = oidc.authorize(rp, prompt="login")
    assert response.location.startswith("/login")
    result = oidc.sign_in_and_authorize(rp, user.email, prompt="login")
    assert result.code
    tokens = oidc.redeem(rp, result).get_json()
    assert claims_of(tokens["id_token"])["acr"] == "1"


def test_a_sign_in_for_prompt_login_is_spent_with_its_code(oidc, rp, user):
    verifier = "v" * 43
    assert oidc.sign_in_and_authorize(rp, user.email, prompt="login", verifier=verifier).code
    # Replaying the very same URL does not reuse that sign-in: prompt=login asks again.
    response, _, _ = oidc.authorize(rp, prompt="login", verifier=verifier)
    assert response.location.startswith("/login")


def test_a_browser_keeps_only_a_few_requests_waiting(oidc, rp, app):
    from idp.oauth.pending import MAX_PENDING, SESSION_KEY

    for n in range(MAX_PENDING + 3):
        oidc.authorize(rp, state=f"s{n}")
    with app.app_context():
        data = db.session.scalar(select(UserSession.data))
    kept = data[SESSION_KEY]
    assert len(kept) == MAX_PENDING
    states = {dict(map(tuple, entry["params"]))["state"] for entry in kept.values()}
    assert states == {f"s{n}" for n in range(3, MAX_PENDING + 3)}


def test_prompt_consent_asks_again_even_when_remembered(oidc, rp, user):
    oidc.sign_in_and_authorize(rp, user.email)
    response = oidc.follow(oidc.authorize(rp, prompt="consent")[0])
    assert response.status_code == 200 and b">Allow</button>" in response.data
    assert oidc.sign_in_and_authorize(rp, user.email, prompt="consent").code


def age_sessions(app, seconds: int) -> None:
    """Pretend the sign-in happened `seconds` ago."""
    with app.app_context():
        db.session.execute(update(UserSession).values(auth_time=utcnow() - timedelta(seconds=seconds)))
        db.session.commit()


def test_max_age_forces_a_new_sign_in_when_the_last_one_is_older(oidc, rp, user, app):
    oidc.sign_in_and_authorize(rp, user.email)
    age_sessions(app, 3600)
    response, _, _ = oidc.authorize(rp, max_age="600")
    assert response.location.startswith("/login")
    response, _, _ = oidc.authorize(rp, max_age="7200")
    assert "code" in query_of(response.location)


def test_max_age_zero_signs_in_once_then_issues(oidc, rp, user):
    oidc.sign_in_and_authorize(rp, user.email)
    result = oidc.sign_in_and_authorize(rp, user.email, max_age="0")
    assert result.code


def test_max_age_with_prompt_none_and_old_session_is_login_required(oidc, rp, user, app):
    oidc.sign_in_and_authorize(rp, user.email)
    age_sessions(app, 3600)
    response, _, _ = oidc.authorize(rp, max_age="60", prompt="none")
    assert_redirected_error(response, "login_required")


def test_login_hint_prefills_the_form_escaped(oidc, rp):
    response = oidc.follow(oidc.authorize(rp, login_hint='bob@example.com"><script>x</script>')[0])
    body = response.get_data(as_text=True)
    assert 'value="bob@example.com&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in body or "bob@example.com&#34;" in body
    assert "<script>x" not in body


def test_id_token_hint_of_the_signed_in_user_passes_prompt_none(oidc, rp, user):
    id_token = oidc.tokens_for(rp, user.email)["id_token"]
    response, _, _ = oidc.authorize(rp, prompt="none", id_token_hint=id_token)
    assert "code" in query_of(response.location)


def test_id_token_hint_of_another_user_is_login_required_with_prompt_none(oidc, rp, user, make_user):
    id_token = oidc.tokens_for(rp, user.email)["id_token"]
    other = make_user(email="bob@example.com")
    oidc.client.delete_cookie("idp_session")
    oidc.sign_in_and_authorize(rp, other.email)
    response, _, _ = oidc.authorize(rp, prompt="none", id_token_hint=id_token)
    assert_redirected_error(response, "login_required")
    # Without prompt=none, the hinted user is asked to sign in.
    response, _, _ = oidc.authorize(rp, id_token_hint=id_token)
    assert response.location.startswith("/login")


def test_id_token_hint_must_be_our_id_token_for_this_client(oidc, rp, register, user):
    tokens = oidc.tokens_for(rp, user.email)
    other = register(name="Other RP", skip_consent=True)
    for hint in ("not-a-jwt", tokens["access_token"], tokens["id_token"][:-4] + "AAAA", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."):
        response, _, _ = oidc.authorize(rp, id_token_hint=hint)
        assert_redirected_error(response, "invalid_request")
    response, _, _ = oidc.authorize(other, id_token_hint=tokens["id_token"])
    assert_redirected_error(response, "invalid_request")


def test_an_id_token_hint_older_than_the_hint_lifetime_is_refused(oidc, rp, user, app):
    subject = oidc.tokens_for(rp, user.email)  # signed in: only the hint's age can refuse it
    claims = claims_of(subject["id_token"])
    lifetime = app.config["ID_TOKEN_HINT_TTL"] + app.config["CLOCK_SKEW"]
    too_old = sign(app, {"typ": "JWT"}, {**claims, "iat": claims["iat"] - lifetime - 60, "exp": claims["iat"] - lifetime})
    response, _, _ = oidc.authorize(rp, prompt="none", id_token_hint=too_old)
    assert_redirected_error(response, "invalid_request")
    response, _, _ = oidc.authorize(rp, prompt="none", id_token_hint=subject["id_token"])
    assert "code" in query_of(response.location)


# --- the SSO session ---------------------------------------------------------------------------------


def test_deleting_the_session_row_asks_to_sign_in_again(oidc, rp, user, app):
    oidc.sign_in_and_authorize(rp, user.email)
    with app.app_context():
        db.session.execute(UserSession.__table__.delete())
        db.session.commit()
    response, _, _ = oidc.authorize(rp)
    assert response.location.startswith("/login")
    response, _, _ = oidc.authorize(rp, prompt="none")
    assert_redirected_error(response, "login_required")


def test_signing_in_replaces_the_session_id(oidc, rp, user):
    oidc.authorize(rp)  # an anonymous session holds the pending request
    before = oidc.client.get_cookie("idp_session").value
    oidc.sign_in_and_authorize(rp, user.email)
    assert oidc.client.get_cookie("idp_session").value != before


def test_a_disabled_user_is_signed_out(oidc, rp, user, app):
    from idp.signout import disable_user
    from idp.users.service import require_user

    oidc.sign_in_and_authorize(rp, user.email)
    with app.app_context():
        disable_user(require_user(user.email))
    response, _, _ = oidc.authorize(rp, prompt="none")
    assert_redirected_error(response, "login_required")
