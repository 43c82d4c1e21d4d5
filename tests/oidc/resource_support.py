"""Fixtures and token minting for the resource-facing endpoint tests (userinfo, revocation,
introspection, logout). Test modules import the fixtures they use from here.

Until the token endpoint issues them, tokens are minted with the same service functions it uses:
`issue_access_token`, `start_family`, and ID tokens signed with the keyring's active key.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from jwcrypto import jwk, jwt

from idp.clock import utcnow
from idp.db import db
from idp.keyring.service import signing_key
from idp.models import Client, User
from tests.support import free_port

REDIRECT_URI = "http://127.0.0.1:9999/callback"
POST_LOGOUT_URI = "http://127.0.0.1:9999/signed-out"


def basic(client_id: str, secret: str) -> dict:
    """An HTTP Basic Authorization header (RFC 6749 2.3.1)."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer(token: str) -> dict:
    """An RFC 6750 2.1 Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_part(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def access_token(app, user: User | None, client: Client, scope: str = "openid profile email", **kwargs) -> str:
    """A signed RFC 9068 access token for `user` (or the client itself when user is None)."""
    from idp.tokens.access import issue_access_token

    with app.app_context():
        if user is None:
            return issue_access_token(client_id=client.client_id, subject=client.client_id, scope=scope, **kwargs).token
        current = db.session.get(User, user.id)
        kwargs.setdefault("token_version", current.token_version)
        return issue_access_token(client_id=client.client_id, subject=current.subject, scope=scope, **kwargs).token


def refresh_token(app, user: User | None, client: Client, scope: str = "openid profile email offline_access", **kwargs) -> str:
    """The first token of a new refresh family for `user` and `client`."""
    from idp.tokens.refresh import start_family

    with app.app_context():
        rotation = start_family(
            client=db.session.get(Client, client.id),
            user=db.session.get(User, user.id) if user else None,
            scope=scope,
            **kwargs,
        )
        db.session.commit()
        return rotation.token


def sign(app, header: dict, claims: dict, key: jwk.JWK | None = None, alg: str = "RS256") -> str:
    """A JWS with exactly this header and these claims, signed by our active key unless `key` is given."""
    with app.app_context():
        kid, active = signing_key(alg)
    token = jwt.JWT(header={"alg": alg, "kid": kid, **header}, claims=claims)
    token.make_signed_token(key or active)
    return token.serialize()


def id_token(app, user: User, client_id: str, *, sid: str | None = None, now: datetime | None = None, ttl: int = 3600, header: dict | None = None, **claims) -> str:
    """An OpenID Connect Core 2 ID token as the token endpoint issues it (typ JWT, our key, aud = client)."""
    now = now or utcnow()
    body = {
        "iss": app.config["ISSUER"],
        "sub": user.subject,
        "aud": client_id,
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "iat": int(now.timestamp()),
        "auth_time": int(now.timestamp()),
    }
    if sid:
        body["sid"] = sid
    body.update(claims)
    return sign(app, {"typ": "JWT", **(header or {})}, body)


def start_sso_session(app, http_client, user: User) -> str:
    """Sign `user` in on the test client's browser: a real session row and its cookie. Returns the sid."""
    from idp.sessions.service import new_row

    with app.app_context():
        value, row = new_row(app, "sso", db.session.get(User, user.id))
        db.session.commit()
        sid = row.sid
    http_client.set_cookie("idp_session", value)
    return sid


def session_exists(app, sid: str) -> bool:
    from idp.sessions.models import UserSession

    with app.app_context():
        return db.session.scalar(db.select(UserSession).where(UserSession.sid == sid)) is not None


def audit_actions(app) -> list[str]:
    from idp.audit.models import AuditEvent

    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent.action).order_by(AuditEvent.id)))


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def user(make_user):
    """A signed-up user with a name."""
    return make_user(email="ada@example.com", name="Ada Lovelace")


@pytest.fixture
def rp(make_client):
    """A confidential relying party (client_secret_basic) with a registered post-logout URI: (client, secret)."""
    return make_client(
        "Relying Party",
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[POST_LOGOUT_URI],
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
    )


@pytest.fixture
def other_rp(make_client):
    """A second confidential client, e.g. a resource server: (client, secret)."""
    return make_client("Resource Server", redirect_uris=["https://rs.example.com/cb"])


@pytest.fixture
def post_rp(make_client):
    """A confidential client that authenticates with client_secret_post: (client, secret)."""
    return make_client("Post RP", token_endpoint_auth_method="client_secret_post")


@pytest.fixture
def public_rp(make_client):
    """A public client (auth method none): (client, None)."""
    return make_client("Public RP", public=True)


class RecordingServer:
    """A local HTTP server that records every request it gets (proof that nothing was fetched), and
    serves the HTML of `pages` by path (a relying party's pages, for browser tests)."""

    def __init__(self):
        self.requests: list[str] = []
        self.pages: dict[str, str] = {}
        recorded, pages = self.requests, self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                recorded.append(self.path)
                page = pages.get(self.path.split("?")[0])
                body = page.encode() if page is not None else json.dumps({"keys": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if page is not None else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    """A local server that a hostile jku/x5u header points at; it must never see a request."""
    with RecordingServer() as server:
        yield server


def hostile_tokens(app, user: User, client: Client, recorder_url: str) -> dict[str, str]:
    """Access tokens that must all be refused, by name: forged, foreign, stale or of the wrong kind."""
    from idp.tokens.access import revoke_access_token
    from idp.users.service import bump_token_version

    now = utcnow()
    good = access_token(app, user, client)
    header, claims = decode_part(good, 0), decode_part(good, 1)
    with app.app_context():
        kid, _ = signing_key("RS256")
        public_pem = jwk.JWK(**json.loads(signing_key("RS256")[1].export_public())).export_to_pem()
    foreign = jwk.JWK.generate(kty="RSA", size=2048)
    hmac_with_public_key = jwk.JWK(kty="oct", k=b64(public_pem))
    hs256 = jwt.JWT(header={"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims=claims)
    hs256.make_signed_token(hmac_with_public_key)

    tokens = {
        "alg none": f"{b64({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{b64(claims)}.",
        "HS256 signed with the public key": hs256.serialize(),
        "unknown kid": sign(app, {"typ": "at+jwt", "kid": "not-a-key-of-ours"}, claims, key=foreign),
        "our kid, foreign key": sign(app, {"typ": "at+jwt"}, claims, key=foreign),
        "jku header": sign(app, {"typ": "at+jwt", "jku": recorder_url + "/jku"}, claims),
        "x5u header": sign(app, {"typ": "at+jwt", "x5u": recorder_url + "/x5u"}, claims),
        "jwk header": sign(app, {"typ": "at+jwt", "jwk": json.loads(foreign.export_public())}, claims, key=foreign),
        "x5c header": sign(app, {"typ": "at+jwt", "x5c": ["MIIB"]}, claims),
        "ID token": id_token(app, user, client.client_id),
        "expired": access_token(app, user, client, now=now - timedelta(minutes=20)),
        # RFC 7519 4.1.5: valid only from `nbf`, ten minutes away (beyond the clock skew).
        "not yet valid": sign(app, {"typ": "at+jwt"}, {**claims, "nbf": int(now.timestamp()) + 600}),
        "wrong issuer": sign(app, {"typ": "at+jwt"}, {**claims, "iss": "https://evil.example.com"}),
        "wrong audience": sign(app, {"typ": "at+jwt"}, {**claims, "aud": "https://other.example.com"}),
        "tampered payload": f"{good.split('.')[0]}.{b64({**claims, 'scope': 'openid profile email admin'})}.{good.split('.')[2]}",
        "garbage": "not-a-token",
        "three dots of garbage": "a.b.c",
        "oversized": "a" * 9000 + "." + "b" * 10 + "." + "c",
    }
    assert header["typ"] == "at+jwt"
    revoked = access_token(app, user, client)
    with app.app_context():
        revoke_access_token(decode_part(revoked, 1)["jti"], now + timedelta(minutes=5))
        db.session.commit()
    tokens["revoked"] = revoked
    # Issued to another user before a version bump (password change, sign-out everywhere, ...), so
    # this one is refused for its version alone; and one for a user disabled since.
    for name, change in (("older token version", "bump"), ("disabled user", "disable")):
        with app.app_context():
            from idp.signout import disable_user
            from idp.users.service import create_user

            victim = create_user(f"{change}@example.com", "correct horse battery")
            db.session.refresh(victim)
            db.session.expunge(victim)
        tokens[name] = access_token(app, victim, client)
        with app.app_context():
            victim = db.session.get(User, victim.id)
            if change == "bump":
                bump_token_version(victim, reason="password_changed", actor="test")
                db.session.commit()
            else:
                disable_user(victim, actor="test")
    return tokens
