"""The authorization endpoint (RFC 6749 4.1.1, OIDC Core 3.1.2) and the token endpoint (RFC 6749 3.2).

/authorize validates through Authlib, then decides: sign in first (/login), ask for consent
(/consent), refuse (`prompt=none`, a denial) or issue a code. The pages come back to
/authorize with the same parameters; see `idp.oauth.pending`. Errors go back to the client
only once its redirect_uri is known to be registered; before that they are an HTML page.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Blueprint, Response, redirect, request, url_for
from sqlalchemy.exc import IntegrityError

from idp.extensions import csrf
from idp.clients.service import AUTH_METHODS, GRANT_TYPES, deleted_elsewhere
from idp.clock import utcnow
from idp.cors import client_origins
from idp.db import db
from idp.errors import render_protocol_error
from idp.keyring.service import ALGORITHMS
from idp.mfa import flow as mfa_flow, policy
from idp.oauth import pending
from idp.oauth.consents import has_consent
from idp.oauth.grants import (
    PROMPTS, Principal, issuer_parameter, requested_max_age, requested_prompts,
)
from idp.scopes import CLAIMS_SUPPORTED as USER_CLAIMS, SCOPES
from idp.oauth.server import authorization_server
from idp.metrics import TOKENS_ISSUED
from idp.oidc.discovery import add_metadata
from idp.routing import spec_defined_methods
from idp.tokens.hints import verify_id_token_hint
from idp.sessions.models import SessionKind
from idp.sessions.service import current_session_row
from idp.tokens.access import InvalidTokenError
from idp.users.models import User
from idp.web import params
from idp.web.errors import json_errors
from idp.web.headers import TOKEN_RESPONSE, secure

bp = Blueprint("oauth", __name__)

AUTHORIZE_PATH = "/authorize"
TOKEN_PATH = "/token"
# Claims this provider can state about a user: in ID tokens, and per scope from userinfo
# (profile: name; email: email, email_verified).
CLAIMS_SUPPORTED = (
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "sid",
    *(claim for claim in USER_CLAIMS if claim != "sub"),
)


def sign_in_metadata(issuer: str) -> dict:
    """The discovery members of sign-in: exactly what these endpoints and grants implement."""
    return {
        "authorization_endpoint": issuer + AUTHORIZE_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "scopes_supported": list(SCOPES),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "prompt_values_supported": list(PROMPTS),
        "acr_values_supported": list(policy.ACR_VALUES),
        "authorization_response_iss_parameter_supported": True,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


bp.record_once(lambda state: add_metadata(state.app, sign_in_metadata))


def signed_in_principal() -> Principal | None:
    """The user of this browser's SSO session, with its sign-in facts; None when signed out."""
    row = current_session_row()
    if row is None or row.user_id is None or row.kind != SessionKind.SSO:
        return None
    user = db.session.get(User, row.user_id)
    if user is None or user.is_disabled:
        return None
    amr = mfa_flow.session_amr()
    return Principal(user=user, token_version=row.token_version, sid=row.sid, auth_time=row.auth_time, acr=policy.acr_for(amr, fresh=False), amr=amr)


@bp.route(AUTHORIZE_PATH, methods=["GET", "POST"])
@spec_defined_methods("RFC 6749 4.1.1, OIDC Core 3.1.2.1: GET and POST")
@csrf.exempt  # a relying party's form may POST here (OIDC Core 3.1.2.1); nothing changes state without a signed-in user
def authorize():
    """The authorization endpoint: code flow with PKCE, prompt, max_age, id_token_hint (OIDC Core 3.1.2)."""
    parameters = pending.known_parameters(request.values)
    if any(_has_control_characters(value) for _, value in parameters):
        return _error_page("invalid_request", "A parameter contains control characters.")
    if pending.too_large(parameters):
        return _error_page("invalid_request", "The authorization request is too large.")
    rid = pending.request_id(parameters)
    entry = pending.get(rid) or {}
    principal = signed_in_principal()
    # A sign-in made for this very request (and still the session's) satisfies prompt=login and max_age.
    fresh = principal is not None and entry.get("login_sid") == principal.sid
    if fresh:
        principal = replace(principal, acr=policy.acr_for(principal.amr, fresh=True))
    try:
        grant = authorization_server().get_consent_grant(end_user=principal)
    except OAuth2Error as error:
        return _refuse(error, principal, parameters)
    except ValueError:
        # Authlib refuses to put some characters of hostile input into an error description.
        return _error_page("invalid_request", "The authorization request is malformed.")

    client_id = grant.client.client_id  # read now: a rollback below expires the row
    try:
        return _answer(grant, principal, parameters, rid, entry, fresh)
    except OAuth2Error as error:
        error.redirect_uri = grant.redirect_uri
        error.state = grant.request.payload.state
        return _refuse(error, principal, parameters)
    except IntegrityError:
        # The code's row refers to a client another replica deleted (still cached here, see
        # idp/clients/service.py): answered as for an unknown client, never redirected, nothing kept.
        db.session.rollback()
        if not deleted_elsewhere(client_id):
            raise
        return client_gone_page()


def client_gone_page():
    """The page for a request whose client was deleted meanwhile (RFC 6749 4.1.2.1: never redirect)."""
    return _error_page("invalid_client", "The client does not exist on this server.")


def _answer(grant, principal: Principal | None, parameters, rid: str, entry: dict, fresh: bool) -> Response:
    data = grant.request.payload.data
    prompts = requested_prompts(data)
    hinted_subject = _hinted_subject(data.get("id_token_hint"), grant.client.client_id)

    weaker = principal is not None and not fresh and _wanted_level(data, grant.client) > policy.level(principal.amr)
    if principal is None or weaker or _needs_sign_in(principal, prompts, requested_max_age(data), hinted_subject, fresh):
        if "none" in prompts:
            raise LoginRequiredError()
        if fresh:
            # Signed in for this request, but not as the user the id_token_hint names (Core 3.1.2.1).
            raise LoginRequiredError("The signed-in user is not the one id_token_hint names.")
        return redirect(url_for("auth.login", rid=pending.remember(parameters)))

    decided_here = entry.get("consent_sid") == principal.sid
    if decided_here and entry.get("consent") == "deny":
        pending.forget(rid)
        return authorization_server().create_authorization_response(grant=grant, grant_user=None)
    allowed_here = decided_here and entry.get("consent") == "allow"
    client = grant.client
    asks_again = "consent" in prompts or not (client.skip_consent or has_consent(principal.user.id, client.id, grant.request.scope))
    if asks_again and not allowed_here:
        if "none" in prompts:
            raise ConsentRequiredError()
        return redirect(url_for("auth.consent", rid=pending.remember(parameters)))

    pending.forget(rid)
    response = authorization_server().create_authorization_response(grant=grant, grant_user=principal)
    db.session.flush()  # a foreign key refusing the code's row fails here, not at the edge
    return response


def _needs_sign_in(principal: Principal, prompts: set[str], max_age: int | None, hinted_subject: str | None, fresh: bool) -> bool:
    if hinted_subject is not None and hinted_subject != principal.user.subject:
        return True
    if fresh:
        return False
    if "login" in prompts:
        return True
    if max_age is not None:
        # Core 3.1.2.1: re-authenticate when the last sign-in is older than max_age seconds.
        return principal.auth_time is None or utcnow() - principal.auth_time > timedelta(seconds=max_age)
    return False


def _wanted_level(data, client) -> int:
    """The level the request asks for (acr_values, OIDC Core 3.1.2.1) or the client requires (two factors)."""
    asked = policy.requested_level(data.get("acr_values")) or 1
    return max(asked, 2) if policy.client_requires_mfa(client.id) else asked


def _hinted_subject(id_token_hint: str | None, client_id: str) -> str | None:
    """The `sub` of an id_token_hint, which must be an ID token we issued to this client."""
    if not id_token_hint:
        return None
    try:
        return verify_id_token_hint(id_token_hint, client_id=client_id)["sub"]
    except InvalidTokenError:
        raise InvalidRequestError("id_token_hint is not an ID token this provider issued to this client, or is too old.") from None


def _refuse(error: OAuth2Error, principal: Principal | None, parameters: list[tuple[str, str]]) -> Response:
    """Answer a refused request; an anonymous browser signs in before its error goes to the client.

    RFC 9700 4.11.2: a request with a sound client and redirect_uri but bad other parameters may
    be an attacker's, who would have the server bounce the victim to the redirect_uri unasked; so
    the user authenticates first, and the request, validated again afterwards, is then refused.
    With prompt=none there is no one to ask: the error is redirected at once (OIDC Core 3.1.2.6).
    """
    if error.redirect_uri and principal is None and "none" not in requested_prompts(request.values):
        return redirect(url_for("auth.login", rid=pending.remember(parameters)))
    if error.redirect_uri:
        pending.forget(pending.request_id(parameters))
    return _authorization_error(error)


def _authorization_error(error: OAuth2Error) -> Response:
    """Redirect an error to a validated redirect_uri with state and iss (RFC 6749 4.1.2.1, RFC 9207); else a page."""
    if error.redirect_uri:
        response = authorization_server().handle_error_response(None, error)
        issuer_parameter.add_issuer_parameter(authorization_server(), response)
        return response
    return _error_page(error.error, error.get_error_description() or "")


def _error_page(code: str, description: str):
    # RFC 6749 4.1.2.1: with an unknown client or a bad redirect_uri, never redirect.
    return render_protocol_error(400, code, description)


def _has_control_characters(value: str) -> bool:
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in value)


@bp.post(TOKEN_PATH)
@json_errors  # RFC 6749 5.2: error responses are JSON
@csrf.exempt  # clients authenticate here with their credentials, never with a cookie
@client_origins
def token():
    """The token endpoint: authorization_code, refresh_token, client_credentials (RFC 6749 3.2, 5)."""
    problem = params.TOKEN.violation(params.multi(request.values))
    if problem:
        response = authorization_server().handle_error_response(None, InvalidRequestError(problem))
    else:
        response = _token_response()
        if response.status_code == 200:
            TOKENS_ISSUED.labels(request.form.get("grant_type", "")).inc()
    return secure(response, TOKEN_RESPONSE)


def _token_response() -> Response:
    """Authlib's token response; a client another replica deleted (still cached here) is invalid_client.

    Within CLIENT_CACHE_SECONDS (idp/clients/service.py) this process may authenticate a client
    that is gone: its code or refresh family went with it (an invalid_grant), or a row written for
    it fails its foreign key. Then nothing is kept and the request is answered again with the
    client read afresh, exactly as for any unknown client (RFC 6749 5.2: invalid_client, 401 when
    it authenticated with HTTP Basic). Only a failing request pays that second read.
    """
    server = authorization_server()
    try:
        response = server.create_token_response()
        if response.status_code == 200:
            db.session.flush()  # a foreign key refusing the issued rows fails here, not at the edge
            return response
    except IntegrityError:
        db.session.rollback()  # keep nothing; the fresh read below needs a live transaction
        if deleted_elsewhere(_presented_client_id()):
            return server.create_token_response()
        raise
    if (response.get_json(silent=True) or {}).get("error") == "invalid_client":
        return response
    db.session.rollback()  # an error answer keeps nothing anyway (idp/db.py); durable records are committed
    return server.create_token_response() if deleted_elsewhere(_presented_client_id()) else response


def _presented_client_id() -> str | None:
    """The client_id the token request authenticated with: HTTP Basic's, else the form's (RFC 6749 2.3.1)."""
    try:
        basic_id, _ = extract_basic_authorization(request.headers)
    except ValueError:  # undecodable credentials: authenticated as nobody
        return None
    return basic_id or request.form.get("client_id")
