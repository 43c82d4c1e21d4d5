"""Fixtures for the sign-in flow over Flask's test client: users, clients and an actions helper."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.browser_support import chromium  # noqa: F401  (a fixture: one Chromium per module)
from tests.oidc.flow import csrf_token, pkce_pair

PASSWORD = "correct horse battery"
REDIRECT_URI = "http://127.0.0.1:9999/callback"


@dataclass
class Registered:
    """A registered client as the tests use it."""

    client_id: str
    secret: str | None
    redirect_uri: str = REDIRECT_URI
    row: object = None


@dataclass
class Authorization:
    """What one run through /authorize produced."""

    code: str | None
    verifier: str
    params: dict
    location: str
    query: dict = field(default_factory=dict)


def query_of(location: str) -> dict:
    """The query parameters of a redirect, one value each."""
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def claims_of(jwt: str) -> dict:
    """The payload of a JWT, unverified (the tests verify signatures separately where it matters)."""
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def header_of(jwt: str) -> dict:
    """The JOSE header of a JWT."""
    header = jwt.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))


class OidcActions:
    """Drives /authorize, /login, /consent and /token the way a browser and a client would."""

    def __init__(self, client):
        self.client = client

    def authorize(self, registered: Registered, *, method: str = "GET", verifier: str | None = None, **overrides):
        """Send an authorization request; parameters default to a valid code + PKCE request."""
        verifier, challenge = pkce_pair() if verifier is None else (verifier, None)
        params = {
            "response_type": "code",
            "client_id": registered.client_id,
            "redirect_uri": registered.redirect_uri,
            "scope": "openid profile email",
            "state": "state-123",
            "nonce": "nonce-456",
            "code_challenge": challenge or pkce_pair(verifier)[1],
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        params = {key: value for key, value in params.items() if value is not None}
        if method == "POST":
            response = self.client.post("/authorize", data=params)
        else:
            response = self.client.get("/authorize?" + urlencode(params, doseq=True))
        return response, params, verifier

    def login(self, location: str, email: str, password: str = PASSWORD, **extra):
        """Fill the sign-in form found at `location` (a /login URL) and submit it."""
        page = self.client.get(location)
        assert page.status_code == 200, page.data
        form = {"username": email, "password": password, "csrf_token": csrf_token(page.get_data(as_text=True))}
        rid = query_of(location).get("rid")
        if rid:
            form["rid"] = rid
        form.update(extra)
        return self.client.post(location, data=form)

    def decide(self, location: str, decision: str = "allow"):
        """Press Allow (or Deny) on the consent page at `location`."""
        page = self.client.get(location)
        assert page.status_code == 200, page.data
        form = {"decision": decision, "rid": query_of(location)["rid"], "csrf_token": csrf_token(page.get_data(as_text=True))}
        return self.client.post(location, data=form)

    def follow(self, response):
        """Follow redirects inside the IdP; stop at the first one that leaves it (to the client)."""
        while response.status_code in (302, 303) and response.location.startswith("/"):
            response = self.client.get(response.location)
        return response

    def sign_in_and_authorize(self, registered: Registered, email: str, *, consent: str | None = "allow", **overrides) -> Authorization:
        """The whole front channel: authorize, sign in if asked, consent if asked; return the code."""
        response, params, verifier = self.authorize(registered, **overrides)
        response = self.follow(response)
        if response.status_code == 200 and b'name="password"' in response.data:
            response = self.follow(self.login(_path(response.request), email))
        if response.status_code == 200 and b">Allow</button>" in response.data and consent:
            response = self.follow(self.decide(_path(response.request), consent))
        assert response.status_code == 302, response.get_data(as_text=True)
        query = query_of(response.location)
        return Authorization(code=query.get("code"), verifier=verifier, params=params, location=response.location, query=query)

    def token(self, registered: Registered | None = None, *, auth: str = "basic", headers: dict | None = None, **form):
        """POST to /token, authenticating as `registered` with client_secret_basic, _post or none."""
        headers = dict(headers or {})
        if registered is not None:
            if auth == "basic" and registered.secret:
                headers["Authorization"] = basic(registered.client_id, registered.secret)
            elif auth == "post" and registered.secret:
                form.setdefault("client_id", registered.client_id)
                form.setdefault("client_secret", registered.secret)
            elif auth == "none":
                form.setdefault("client_id", registered.client_id)
        return self.client.post("/token", data=form, headers=headers)

    def redeem(self, registered: Registered, authorization: Authorization, **form):
        """Exchange a code for tokens."""
        form = {"grant_type": "authorization_code", "code": authorization.code, "redirect_uri": registered.redirect_uri, "code_verifier": authorization.verifier, **form}
        form = {key: value for key, value in form.items() if value is not None}
        return self.token(registered, auth="basic" if registered.secret else "none", **form)

    def tokens_for(self, registered: Registered, email: str, **overrides) -> dict:
        """Sign in, consent and redeem: the token response body."""
        response = self.redeem(registered, self.sign_in_and_authorize(registered, email, **overrides))
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()


def _path(request) -> str:
    return request.full_path.rstrip("?")


def basic(client_id: str, secret: str) -> str:
    """An HTTP Basic header for client_secret_basic (RFC 6749 2.3.1)."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture
def oidc(client) -> OidcActions:
    return OidcActions(client)


@pytest.fixture
def user(make_user):
    return make_user(email="alice@example.com", name="Alice Liddell")


@pytest.fixture
def register(make_client):
    """Register a client and get it back as `Registered`."""

    def make(**kwargs) -> Registered:
        kwargs.setdefault("redirect_uris", [REDIRECT_URI])
        row, secret = make_client(**kwargs)
        return Registered(client_id=row.client_id, secret=secret, redirect_uri=next(iter(kwargs["redirect_uris"]), ""), row=row)

    return make


@pytest.fixture
def rp(register) -> Registered:
    """A confidential client (client_secret_basic) with code + refresh grants."""
    return register()


@pytest.fixture
def public_rp(register) -> Registered:
    """A public (native or SPA) client: no secret, PKCE mandatory."""
    return register(name="Public RP", public=True)


@pytest.fixture
def browser_context(chromium):
    """A fresh context of the module's headless Chromium (Debian's binary, never a downloaded one)."""
    context = chromium.new_context()
    yield context
    context.close()
