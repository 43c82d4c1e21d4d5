"""The token endpoint (client_credentials, refresh), userinfo and introspection under load.

Set-up runs against the server's own database (`target.app()`), with the same service functions
the endpoints use: clients are registered, refresh families opened with `start_family`, access
tokens signed with `issue_access_token`. Every endpoint is found through the discovery document,
so a scenario fails at set-up, loudly, on a build that does not advertise what it needs.
"""

from __future__ import annotations

import queue
import threading
import time
from urllib.parse import urlsplit

from bench import BenchError, Http, Target, scenario
from bench.scenarios.wellknown import DISCOVERY, check, fetch

# Each worker thread of each run starts its own rotation chain (a used refresh token is spent),
# so the refresh scenario opens this many families up front: enough for concurrency 1 + 8 + 32
# with a warm-up and up to 10 measured runs per level.
REFRESH_FAMILIES = 500
SCOPE = "openid profile email offline_access"


def endpoint_path(target: Target, member: str) -> str:
    """The path of an endpoint named in the discovery document; BenchError if it is not advertised."""
    url = fetch(target, DISCOVERY).json().get(member)
    check(bool(url), f"the discovery document has no {member}: this build does not implement it")
    check(url.startswith(target.issuer), f"{member} {url!r} is not under the issuer {target.issuer!r}")
    return urlsplit(url).path


class Seed:
    """Service-level set-up on the server's database: a user, clients, tokens."""

    def __init__(self, target: Target):
        self.app = target.app()

    def user(self, email: str = "bench@example.com"):
        from idp.db import db
        from idp.users.service import create_user, get_user_by_email

        with self.app.app_context():
            user = get_user_by_email(email) or create_user(email, "bench-password-not-secret", name="Bench User")
            db.session.commit()  # services leave the commit to their caller (idp/db.py)
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    def client(self, name: str, grant_types: list[str]) -> tuple[str, str, int]:
        """Register a confidential client; (client_id, secret, row id)."""
        from idp.clients.service import create_client
        from idp.db import db

        with self.app.app_context():
            client, secret = create_client(name, redirect_uris=["http://127.0.0.1/callback"], grant_types=grant_types, scope=SCOPE)
            db.session.commit()  # services leave the commit to their caller (idp/db.py)
            return client.client_id, secret, client.id

    def refresh_tokens(self, client_row_id: int, user_id: int, count: int) -> queue.SimpleQueue:
        """`count` first tokens of fresh refresh families, ready to be taken by worker threads."""
        from idp.clock import utcnow
        from idp.db import db
        from idp.models import Client, User
        from idp.tokens.refresh import start_family

        tokens: queue.SimpleQueue = queue.SimpleQueue()
        with self.app.app_context():
            client, user = db.session.get(Client, client_row_id), db.session.get(User, user_id)
            for _ in range(count):
                tokens.put(start_family(client=client, user=user, scope=SCOPE, offline=True, auth_time=utcnow()).token)
            db.session.commit()
        return tokens


class AccessTokens:
    """A current access token of the bench user for a new client, re-signed before it can expire,
    so a long benchmark never measures 401s (the re-signing is rare: once per half token lifetime)."""

    def __init__(self, seed: Seed, client_name: str):
        self._seed, self._user = seed, seed.user()
        self._client_id, _, _ = seed.client(client_name, ["authorization_code", "refresh_token"])
        self._lock = threading.Lock()
        self._token, self._renew_at = "", 0.0

    def current(self) -> str:
        if time.monotonic() >= self._renew_at:
            with self._lock:
                if time.monotonic() >= self._renew_at:
                    self._token, lifetime = self._issue()
                    self._renew_at = time.monotonic() + lifetime / 2
        return self._token

    def _issue(self) -> tuple[str, int]:
        from idp.tokens.access import issue_access_token

        with self._seed.app.app_context():
            issued = issue_access_token(
                client_id=self._client_id, subject=self._user.subject, scope=SCOPE, token_version=self._user.token_version
            )
        return issued.token, issued.expires_in


@scenario("token_client_credentials", "POST token endpoint, grant_type=client_credentials (client_secret_basic)")
def token_client_credentials(target: Target):
    path = endpoint_path(target, "token_endpoint")
    client_id, secret, _ = Seed(target).client("bench client_credentials", ["client_credentials"])

    def request(http: Http) -> None:
        http.post_form(path, {"grant_type": "client_credentials"}, auth=(client_id, secret))

    return request


@scenario("token_refresh", "POST token endpoint, grant_type=refresh_token: one rotation chain per thread")
def token_refresh(target: Target):
    path = endpoint_path(target, "token_endpoint")
    seed = Seed(target)
    user = seed.user()
    client_id, secret, row_id = seed.client("bench refresh", ["authorization_code", "refresh_token"])
    fresh = seed.refresh_tokens(row_id, user.id, REFRESH_FAMILIES)

    def request(http: Http) -> None:
        # `http.state` lives for one run of one thread: each starts a chain of its own, then every
        # answer's new refresh token is the next request's (rotation spends the old one).
        token = http.state.get("refresh_token")
        if token is None:
            try:
                token = fresh.get_nowait()
            except queue.Empty:
                raise BenchError(f"all {REFRESH_FAMILIES} seeded refresh families are used up; raise REFRESH_FAMILIES") from None
        answer = http.post_form(path, {"grant_type": "refresh_token", "refresh_token": token}, auth=(client_id, secret))
        http.state["refresh_token"] = answer.json()["refresh_token"]

    return request


@scenario("userinfo", "GET userinfo with a bearer access token (profile and email claims)")
def userinfo(target: Target):
    path = endpoint_path(target, "userinfo_endpoint")
    tokens = AccessTokens(Seed(target), "bench userinfo")

    def request(http: Http) -> None:
        http.get(path, headers={"Authorization": f"Bearer {tokens.current()}"})

    return request


@scenario("introspection", "POST introspection of an access token by a resource server (client_secret_basic)")
def introspection(target: Target):
    path = endpoint_path(target, "introspection_endpoint")
    seed = Seed(target)
    tokens = AccessTokens(seed, "bench introspected rp")
    rs_id, rs_secret, _ = seed.client("bench resource server", ["client_credentials"])

    def request(http: Http) -> None:
        answer = http.post_form(path, {"token": tokens.current(), "token_type_hint": "access_token"}, auth=(rs_id, rs_secret))
        if answer.json().get("active") is not True:
            raise BenchError(f"introspection says the token is inactive: {answer.body[:200]!r}")

    return request
