"""The code + PKCE flow against a running IdP, as a relying party and a browser would drive it.

The relying party is requests-oauthlib (oauthlib), independent of the Authlib code under test;
the "browser" is a `requests.Session` that fills the sign-in and consent forms, taking the CSRF
token from the HTML. Reusable by any end-to-end test: `sign_in()` returns the tokens together
with the RP session (for refresh, userinfo, revocation) and the browser (for logout).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from requests_oauthlib import OAuth2Session

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The Flask-WTF CSRF token of the (first) form on a page."""
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def pkce_pair(verifier: str | None = None) -> tuple[str, str]:
    """An RFC 7636 (code_verifier, S256 code_challenge) pair."""
    verifier = verifier or secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class _Forms(HTMLParser):
    """Collects each form's action, its inputs and its submit buttons."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "fields": {}, "buttons": {}})
        elif self.forms and tag == "input" and attrs.get("name"):
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""
        elif self.forms and tag == "button" and attrs.get("name"):
            self._button = (attrs["name"], attrs.get("value") or "")

    def handle_data(self, data):
        button = getattr(self, "_button", None)
        if button and data.strip():
            self.forms[-1]["buttons"][data.strip()] = button
            self._button = None


def page_form(html: str) -> dict:
    """The first form of a page: {"action", "fields", "buttons": {label: (name, value)}}."""
    parser = _Forms()
    parser.feed(html)
    assert parser.forms, "no form on the page"
    return parser.forms[0]


def follow_to_client(browser: requests.Session, url: str, *, redirect_uri: str, email: str, password: str) -> str:
    """Drive a browser from an authorization URL through sign-in and consent (Allow) to the
    client's redirect_uri; return that final location (carrying code or error, state, iss)."""
    response = browser.get(url, allow_redirects=False, timeout=30)
    for _ in range(10):
        if response.status_code in (302, 303):
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(redirect_uri):
                break
            response = browser.get(location, allow_redirects=False, timeout=30)
            continue
        assert response.status_code == 200, f"{response.status_code}: {response.text[:500]}"
        form = page_form(response.text)
        fields = dict(form["fields"])
        if "password" in fields:
            fields.update(username=email, password=password)
        else:
            name, value = form["buttons"]["Allow"]
            fields[name] = value
        response = browser.post(urljoin(response.url, form["action"]), data=fields, allow_redirects=False, timeout=30)
    else:
        raise AssertionError("the IdP never redirected back to the client")
    return location


@dataclass
class SignIn:
    """The outcome of a completed code flow."""

    tokens: dict  # the token response (access_token, id_token, refresh_token, ...)
    callback: dict  # the query the IdP redirected back with (code, state, iss)
    nonce: str  # sent in the authorization request; the ID token must carry it
    rp: OAuth2Session  # the relying party's OAuth session, holding the tokens
    browser: requests.Session  # the user's browser, signed in at the IdP


def sign_in(
    base_url: str,
    *,
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    email: str,
    password: str,
    scope: str = "openid profile email offline_access",
    browser: requests.Session | None = None,
) -> SignIn:
    """Run the authorization code flow with PKCE and return the tokens (asserting each step)."""
    if urlsplit(base_url).hostname in ("127.0.0.1", "localhost"):
        # oauthlib insists on https; the test server listens on loopback http.
        os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    browser = browser or requests.Session()
    rp = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=scope.split(), pkce="S256")
    nonce = secrets.token_urlsafe(16)
    url, state = rp.authorization_url(base_url + "/authorize", nonce=nonce)

    location = follow_to_client(browser, url, redirect_uri=redirect_uri, email=email, password=password)
    callback = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    assert callback.get("state") == state, callback
    if client_secret:
        tokens = rp.fetch_token(base_url + "/token", authorization_response=location, client_secret=client_secret, timeout=30)
    else:
        tokens = rp.fetch_token(base_url + "/token", authorization_response=location, include_client_id=True, timeout=30)
    return SignIn(tokens=dict(tokens), callback=callback, nonce=nonce, rp=rp, browser=browser)


def refresh(base_url: str, signed_in: SignIn, *, client_id: str, client_secret: str | None) -> dict:
    """Refresh through the relying-party library; returns the new token response."""
    if client_secret:
        return dict(signed_in.rp.refresh_token(base_url + "/token", auth=(client_id, client_secret), timeout=30))
    return dict(signed_in.rp.refresh_token(base_url + "/token", client_id=client_id, timeout=30))
