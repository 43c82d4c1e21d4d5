"""OpenID Connect RP-Initiated Logout 1.0 (`end_session_endpoint`) on Authlib's EndSessionEndpoint.

What a logout request must satisfy (section 2, 3, 4):
- `id_token_hint`, when given, is an ID token we signed (expired ones accepted); its `aud` names the
  client, and a `client_id` given alongside must be that audience.
- `client_id`, when given, is a registered client.
- `post_logout_redirect_uri` needs a client (from the hint or `client_id`) and must exactly match one
  of that client's registered `post_logout_redirect_uris`; `state` then rides back on the redirect.
- Anything else wrong is an error page (400, escaped): nothing is ended and nobody is redirected.

A valid hint for the browser's own session (same `sub` and `sid`) signs out at once; otherwise
(no hint, or a hint for another session) the user confirms on a CSRF-protected page first
(section 6: a logout without a valid hint is a denial-of-service vector). A POSTed hint never
moves into a URL: a cross-site POST (which carries no SameSite=Lax cookie) is redirected to the
confirmation page without it.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from authlib.oidc.rpinitiated import EndSessionEndpoint as _EndSessionEndpoint
from flask import Blueprint, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField, SubmitField

from idp.audit.actors import Actor
from idp.extensions import csrf
from idp.audit.service import record
from idp.db import db
from idp.errors import render_error_page, render_protocol_error
from idp.oauth.server import authorization_server
from idp.routing import spec_defined_methods
from idp.sessions.service import current_session_row, end_current_session
from idp.tokens.access import InvalidTokenError
from idp.tokens.hints import hinted_client_id, verify_id_token_hint
from idp.users.models import User
from idp.web import headers
from idp.web.params import LOGOUT as LOGOUT_RULE, LOGOUT_PARAMS

LOGOUT_PATH = "/logout"

bp = Blueprint("logout", __name__, template_folder="templates")
# An RP may send its logout request as a cross-site form POST (section 2), which cannot carry our
# CSRF token; such a request only ever signs out at once with a valid hint for this very session.
# The confirmation form, which can sign out anyone's browser session, checks its own CSRF token.
csrf.exempt(bp)


class LogoutForm(FlaskForm):
    """The confirmation page: the logout request rides along in hidden fields and is validated again."""

    id_token_hint = HiddenField()
    client_id = HiddenField()
    post_logout_redirect_uri = HiddenField()
    state = HiddenField()
    confirm = SubmitField("Sign out")

    carried = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")


class EndSessionEndpoint(_EndSessionEndpoint):
    """Authlib's end-session flow with our ID token checks and stricter request validation."""

    def validate_request(self, request):
        LOGOUT_RULE.enforce(request.payload.datalist)
        data = request.payload.data
        client_id = data.get("client_id")
        if client_id and self.server.query_client(client_id) is None:
            raise InvalidRequestError("unknown client_id")
        validated = super().validate_request(request)
        if data.get("post_logout_redirect_uri"):
            # Section 3: never redirect to a URI we cannot tie to a client's registration.
            if validated.client is None:
                raise InvalidRequestError("post_logout_redirect_uri needs id_token_hint or client_id")
            if validated.redirect_uri is None:
                raise InvalidRequestError("post_logout_redirect_uri is not registered for this client")
        return validated

    def _validate_id_token_hint(self, id_token_hint):
        # Section 2: the OP MUST validate that it issued the hint. Our strict verifier (our keys
        # only, alg allow-list, typ JWT, iss) replaces the generic JWKS check.
        try:
            return verify_id_token_hint(id_token_hint)
        except InvalidTokenError:
            raise InvalidRequestError("id_token_hint is not an ID token issued here, or is too old") from None

    def resolve_client_from_id_token_claims(self, id_token_claims):
        client_id = hinted_client_id(id_token_claims)
        return self.server.query_client(client_id) if client_id else None

    def is_post_logout_redirect_uri_legitimate(self, request, post_logout_redirect_uri, client, logout_hint):
        # Without a hint the view acts only after the user confirmed on our own page, and the URI
        # is already an exact match of the named client's registration (section 3).
        return True

    def end_session(self, end_session_request):
        """Delete this browser's SSO session row (the cookie goes with it) and audit the logout."""
        row = current_session_row()
        if row is not None and row.user_id is not None:
            client = end_session_request.client
            record(
                "logout.rp_initiated",
                actor=Actor.user(row.user_id),
                target=f"session:{row.sid}",
                ip=request.remote_addr,
                client=client.get_client_id() if client else None,
                confirmed=bool(getattr(end_session_request, "confirmed", False)),
            )
        end_current_session(reason="logout")


def hint_matches_session(claims: dict) -> bool:
    """Whether the hint names this browser's session (or there is no signed-in session to protect)."""
    row = current_session_row()
    if row is None or row.user_id is None:
        return True
    user = db.session.get(User, row.user_id)
    if user is None or user.subject != claims.get("sub"):
        return False
    return claims.get("sid") in (None, row.sid)


# Sign-out pages are never cached, framed (clickjacking the button) or leaked by Referer off-site.
headers.protect(bp, headers.LOGOUT_PAGES)


@bp.route(LOGOUT_PATH, methods=["GET", "POST"])
@spec_defined_methods("OIDC RP-Initiated Logout 1.0 section 2: GET and POST")
def end_session():
    """RP-Initiated Logout 1.0 section 2: sign out at once with a matching hint, else after confirming."""
    try:
        logout = authorization_server().validate_endpoint_request(EndSessionEndpoint.ENDPOINT_NAME)
    except OAuth2Error as error:
        # Section 4: on an error, no redirect; the reason is shown (escaped) for the RP's developer.
        return render_protocol_error(400, error.error, f"The sign-out request is invalid: {error.description or error.error}.", title="Sign-out request refused")
    params = {name: value for name in LOGOUT_PARAMS if (value := logout.request.payload.data.get(name))}
    if request.method == "POST":
        if "confirm" not in request.form:
            if current_session_row() is not None and logout.id_token_claims is not None and hint_matches_session(logout.id_token_claims):
                return finish(logout)
            # The RP's own POST: SameSite=Lax keeps our session cookie off a cross-site POST, so
            # answer with a top-level GET, which the cookie does come with. The ID token stays out
            # of that URL (and so out of history and access logs): the hint is replaced by the
            # client it names, and without a hint the user confirms (section 2).
            return redirect(url_for(".end_session", **without_hint(params, logout.client)), 303)
        if not LogoutForm().validate_on_submit():
            return render_error_page(400, "Sign-out not confirmed", "The sign-out form has expired. Go back and try again.",
                                     details="HTTP 400: the form's CSRF token is missing or expired", action=("Sign out again", request.full_path.rstrip("?")))
        logout.confirmed = True
        return finish(logout)
    if logout.id_token_claims is not None and hint_matches_session(logout.id_token_claims):
        return finish(logout)
    form = LogoutForm(formdata=None, data={name: params.get(name, "") for name in LogoutForm.carried})
    return render_template("logout/confirm.html", form=form, client=logout.client)


def without_hint(params: dict, client) -> dict:
    """The logout parameters with `id_token_hint` replaced by the `client_id` it named."""
    kept = {name: value for name, value in params.items() if name != "id_token_hint"}
    if client is not None:
        kept["client_id"] = client.get_client_id()
    return kept


def finish(logout):
    """End the session, then redirect to the registered URI or show the signed-out page."""
    response = authorization_server().create_endpoint_response(EndSessionEndpoint.ENDPOINT_NAME, logout)
    return response if response is not None else render_template("logout/signed_out.html")


def end_session_metadata(issuer: str) -> dict:
    """RP-Initiated Logout 1.0 section 2.1."""
    return {"end_session_endpoint": issuer + LOGOUT_PATH}
