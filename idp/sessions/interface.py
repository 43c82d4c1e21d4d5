"""Flask's `session`, stored server-side: the cookie carries a random id, the row carries the data.

Two kinds share the mechanism: end-user SSO sessions (SameSite=Lax, so a relying party's redirect
to /authorize carries it) and admin UI sessions under /admin (their own cookie, SameSite=Strict).

A visitor without a row costs no database write until there is something to remember (a pending
authorization request, a sign-in): while the session holds nothing but the CSRF token of an
anonymous form, that token lives in a signed cookie of its own, with the same flags.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import inspect, select, update
from sqlalchemy.orm.attributes import set_committed_value
from werkzeug.datastructures import CallbackDict

from idp.clock import utcnow
from idp.db import db
from idp.outages import database_lost, defer_database_error, is_database_unavailable
from idp.input_guard import is_storable
from idp.security import digest
from idp.sessions.models import SessionKind, UserSession
from idp.sessions.store import end_session, idle_ttl, new_row, timed_out
from idp.users.models import User

ADMIN_PREFIX = "/admin"
# Writing last_seen_at on every request would turn every page view into a write; idle timeouts
# are enforced to within this many seconds instead.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)
# Keys an anonymous session may hold in its signed cookie instead of a row: Flask-WTF's raw CSRF token.
COOKIE_ONLY_KEYS = frozenset({"csrf_token"})
# Endpoints that authenticate a client or a bearer token, never a browser's session (RFC 6749 3.2,
# RFC 7662 2.1, RFC 7009 2.1, OIDC Core 5.3), and public documents: their requests neither load
# nor touch a session, so a cookie a browser sends along costs them no query and is left as it was.
# The session opens before Flask matches the URL, hence paths rather than a mark on the views.
SESSIONLESS_PATHS = frozenset({"/token", "/introspect", "/revoke", "/healthz", "/readyz", "/metrics"})
SESSIONLESS_PREFIX = "/.well-known/"


class ServerSession(CallbackDict, SessionMixin):
    """The session dict of one request, tied to at most one `UserSession` row."""

    def __init__(self, kind: str, row: UserSession | None = None, cookie_value: str | None = None, data: dict | None = None):
        def on_update(session: ServerSession) -> None:
            session.modified = True

        super().__init__(dict(row.data) if row else dict(data or {}), on_update)
        self.kind = kind
        self.row = row
        self.cookie_value = cookie_value
        self.modified = False
        self.ended = False  # the row was deleted: clear the cookie
        self.anonymous_cookie = False  # the request brought an anonymous (cookie-only) session
        self.sessionless = False  # an API request: never loaded, never saved

    @property
    def user_id(self) -> int | None:
        return self.row.user_id if self.row else None


def session_kind(request: Request) -> SessionKind:
    """Which session a request belongs to, by path."""
    path = request.path
    return SessionKind.ADMIN if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/") else SessionKind.SSO


def cookie_name(app: Flask, kind: str) -> str:
    """`__Host-` prefixed names on https (RFC 6265bis 4.1.3.2): Secure, Path=/, no Domain."""
    base = "idp_admin" if kind == SessionKind.ADMIN else "idp_session"
    return f"__Host-{base}" if secure_cookies(app) else base


def anonymous_cookie_name(app: Flask, kind: str) -> str:
    """The cookie of a session without a row (its CSRF token only)."""
    return cookie_name(app, kind) + "_anon"


def anonymous_serializer(app: Flask) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(app.secret_key, salt="idp.anonymous-session")


def load_anonymous(app: Flask, kind: str, value: str | None) -> dict:
    """The data of a signed anonymous-session cookie still within the idle TTL, or {}."""
    if not value or len(value) > 512:
        return {}
    try:
        data = anonymous_serializer(app).loads(value, max_age=idle_ttl(app, kind).total_seconds())
    except BadSignature:
        return {}
    return {key: data[key] for key in COOKIE_ONLY_KEYS & set(data)} if isinstance(data, dict) else {}


def secure_cookies(app: Flask) -> bool:
    """Cookies are Secure whenever the issuer is https."""
    return app.config["ISSUER"].startswith("https://")


def load_row(app: Flask, kind: str, cookie_value: str) -> UserSession | None:
    """The live row for a cookie value, or None; a dead row (expired, idle, stale version) is deleted."""
    found = db.session.execute(
        select(UserSession, User.token_version, User.disabled_at)
        .outerjoin(User, User.id == UserSession.user_id)
        .where(UserSession.id_digest == digest(cookie_value), UserSession.kind == kind)
    ).first()
    if found is None:
        return None
    row, token_version, disabled_at = found
    dead = (
        timed_out(app, row, utcnow())
        # A token-version bump (password change, sign-out-everywhere, disable) ends every session.
        or (row.user_id is not None and (token_version != row.token_version or disabled_at is not None))
    )
    if dead:
        # Deleted in the request's transaction; an error answer rolls that back and the next
        # request finds the same dead row and deletes it then.
        end_session(row, reason="expired")
        return None
    return row


class ServerSessionInterface(SessionInterface):
    """Stores Flask's session in the `sessions` table; the cookie holds only a random id."""

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        path = request.path
        if path in SESSIONLESS_PATHS or path.startswith(SESSIONLESS_PREFIX):
            session = ServerSession("sso")
            session.sessionless = True
            return session
        kind = session_kind(request)
        value = request.cookies.get(cookie_name(app, kind))
        # An unstorable cookie is treated as none here; the input guard then refuses the request.
        if value and len(value) <= 128 and is_storable(value):
            try:
                row = load_row(app, kind, value)
            except Exception as error:
                if not is_database_unavailable(error):
                    raise
                # Answered 503 before any view runs; a session object must exist meanwhile, since
                # error pages and after-request hooks read it (Flask-Login's context processor).
                defer_database_error(error)
                return ServerSession(kind)
            if row is not None:
                session = ServerSession(kind, row, value)
                session.anonymous_cookie = anonymous_cookie_name(app, kind) in request.cookies
                return session
        session = ServerSession(kind, data=load_anonymous(app, kind, request.cookies.get(anonymous_cookie_name(app, kind))))
        session.anonymous_cookie = anonymous_cookie_name(app, kind) in request.cookies
        session.ended = bool(value)  # a cookie for a session that is gone: clear it
        return session

    def save_session(self, app: Flask, session: ServerSession, response: Response) -> None:  # type: ignore[override]
        if session.sessionless or database_lost():
            return  # the answer is a 503; the session (maybe never opened) is left as it was
        name = cookie_name(app, session.kind)
        now = utcnow()
        if session.row is None:
            if session.ended:
                self._delete_cookie(app, response, name, session.kind)
            if not (set(session) - COOKIE_ONLY_KEYS):
                # Nothing worth a row yet: an anonymous form's CSRF token rides in a signed cookie.
                if session.modified:
                    self._set_anonymous_cookie(app, response, session)
                return
            session.cookie_value, session.row = new_row(app, session.kind)
        if session.anonymous_cookie:
            self._delete_cookie(app, response, anonymous_cookie_name(app, session.kind), session.kind)
        row = session.row
        if session.modified:
            row.data = dict(session)
        if session.modified or now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
            row.last_seen_at = now
        if (row in db.session.new or db.session.is_modified(row)) and not self._written(row):
            # The row was deleted while this request ran (a logout, a revocation): a clean sign-out.
            self._delete_cookie(app, response, name, session.kind)
            return
        response.set_cookie(
            name,
            session.cookie_value,
            expires=row.expires_at,
            path="/",
            secure=secure_cookies(app),
            httponly=True,
            samesite=self._samesite(session.kind),
        )
        response.vary.add("Cookie")

    @staticmethod
    def _written(row: UserSession) -> bool:
        """Write the session's row in the request's transaction, which the edge commits right after
        (IdpFlask.process_response); False if the row is gone, updating no row.

        An UPDATE that counts its rows rather than an ORM flush: a flush that finds the row deleted
        fails the whole transaction, and the view's own writes must still commit.
        """
        if row in db.session.new:
            db.session.flush([row])  # a new row cannot have been deleted meanwhile
            return True
        state = inspect(row)
        changes = {attr.key: attr.value for attr in state.attrs if attr.history.has_changes()}
        with db.session.no_autoflush:
            written = db.session.execute(
                update(UserSession).where(UserSession.id == row.id).values(**changes),
                execution_options={"synchronize_session": False},
            ).rowcount
        if not written:
            db.session.expunge(row)  # gone: the edge's commit must not write it again
            return False
        for key, value in changes.items():
            set_committed_value(row, key, value)  # written: nothing left for the commit's flush
        return True

    def _set_anonymous_cookie(self, app: Flask, response: Response, session: ServerSession) -> None:
        name = anonymous_cookie_name(app, session.kind)
        if not dict(session):
            self._delete_cookie(app, response, name, session.kind)
            return
        response.set_cookie(name, anonymous_serializer(app).dumps(dict(session)), path="/", secure=secure_cookies(app),
                            httponly=True, samesite=self._samesite(session.kind))
        response.vary.add("Cookie")

    def _delete_cookie(self, app: Flask, response: Response, name: str, kind: str) -> None:
        response.delete_cookie(name, path="/", secure=secure_cookies(app), httponly=True, samesite=self._samesite(kind))

    @staticmethod
    def _samesite(kind: str) -> str:
        return "Strict" if kind == SessionKind.ADMIN else "Lax"
