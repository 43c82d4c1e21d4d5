"""Who may use /admin: flask-login on the server-side admin session, re-authentication, headers.

The admin session is a `sessions` row of kind "admin" behind its own cookie (idp.sessions); its
idle and absolute lifetimes, token-version and disabled checks are enforced there. Here:
- flask-login's request loader takes the signed-in user from that row (never from cookie data);
- every /admin URL except sign-in and static files needs a signed-in admin: anonymous requests
  are sent to sign in, a signed-in user without admin rights gets 403;
- sensitive actions need the password entered within ADMIN_REAUTH_MAX_AGE (`recent_auth_required`);
- every /admin response carries a strict CSP and the other security headers.
"""

from __future__ import annotations

from datetime import timedelta
from functools import wraps

from flask import Flask, current_app, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms.validators import ValidationError as WTFormsValidationError
from werkzeug.exceptions import Forbidden, HTTPException

from admin_ui.blueprint import bp
from admin_ui.forms import LoginForm, ReauthForm
from admin_ui.signin import attempt, reauthenticate
from idp.audit.service import record
from idp.clock import utcnow
from idp.csrf import check_origin
from idp.db import db
from idp.auth.throttle import retry_after_header, wait_text
from idp.branding import image_sources
from idp.input_guard import split_local_path
from idp.sessions.interface import ADMIN_PREFIX
from idp.sessions.service import current_session_row, end_current_session, start_session
from idp.users.models import User

login_manager = LoginManager()
login_manager.session_protection = None  # the session is a server-side row already bound at sign-in

# Reachable without signing in.
PUBLIC_ENDPOINTS = {"admin.login_page", "admin.login", "admin.static", "admin.logout"}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


class AdminUser(UserMixin):
    """flask-login's view of the user behind the admin session row."""

    def __init__(self, user: User):
        self.user = user

    def get_id(self) -> str:
        return str(self.user.id)

    @property
    def is_active(self) -> bool:
        return not self.user.is_disabled

    @property
    def actor(self) -> str:
        """How audit events name this admin."""
        return f"user:{self.user.id}"


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


@login_manager.request_loader
def load_admin_user(_request) -> AdminUser | None:
    """The user of this request's admin session row, if it has one and they are enabled."""
    row = current_session_row()
    if row is None or row.kind != "admin" or row.user_id is None:
        return None
    user = db.session.get(User, row.user_id)
    if user is None or user.is_disabled:
        return None
    return AdminUser(user)


@login_manager.unauthorized_handler
def send_to_sign_in():
    """Anonymous request to an admin page: sign in first, then come back (GET only)."""
    target = request.full_path if request.method == "GET" else None
    return redirect(url_for("admin.login", next=safe_next(target)), 303)


def safe_next(target: str | None) -> str | None:
    """A same-site /admin path to return to after signing in, or None; never another host."""
    parts = split_local_path(target)
    if parts is None or not is_admin_path(parts.path):
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return None if path in {f"{ADMIN_PREFIX}/login", f"{ADMIN_PREFIX}/logout"} else path


def init_app(app: Flask) -> None:
    """Attach flask-login and the /admin guards to the app (called once when the blueprint registers)."""
    from idp import csrf

    login_manager.init_app(app)
    # The admin views check their CSRF token in `require_admin` instead (see `check_csrf`).
    csrf.exempt(bp)
    app.before_request(require_admin)
    app.after_request(add_security_headers)


def check_csrf() -> None:
    """Flask-WTF's token check on every state-changing admin request; CSRFError (400) otherwise.

    The same Origin check as every other form (idp/csrf.py) comes first. The token (kept in the
    server-side session), the SameSite=Strict admin cookie and its `__Host-` prefix cover the rest.
    """
    if request.method not in current_app.config["WTF_CSRF_METHODS"]:
        return
    check_origin()
    try:
        validate_csrf(request.form.get("csrf_token") or request.headers.get("X-CSRFToken"),
                      time_limit=current_app.config["ADMIN_SESSION_IDLE_TTL"])
    except WTFormsValidationError as error:
        raise CSRFError(error.args[0]) from None


def require_admin():
    """Guard every /admin URL, known or not, so nothing is revealed to anyone but an admin."""
    if not is_admin_path(request.path):
        return None
    if request.blueprint == "admin":
        check_csrf()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.user.is_admin:
        raise Forbidden("This account does not have admin rights.")
    return None


def add_security_headers(response):
    """Strict CSP, no framing, no sniffing, no Referer off-site, no caching (and HSTS on https) under /admin."""
    if not is_admin_path(request.path):
        return response
    headers = response.headers
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.format(images=image_sources(current_app.config))  # the logo's origin
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cache-Control"] = "no-store"
    if current_app.config["ISSUER"].startswith("https://"):
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return response


def recently_authenticated() -> bool:
    """True when the admin entered their password within ADMIN_REAUTH_MAX_AGE."""
    row = current_session_row()
    max_age = timedelta(seconds=current_app.config["ADMIN_REAUTH_MAX_AGE"])
    return row is not None and row.auth_time is not None and utcnow() - row.auth_time <= max_age


def recent_auth_required(view):
    """Send the admin to confirm their password first when they last entered it too long ago.

    A sensitive action's confirmation page (GET) and the action itself (POST) share one URL, so
    after re-authenticating the admin lands back on the confirmation page, never on a replayed POST.
    Decorate both the page and the action.
    """

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not recently_authenticated():
            flash("Confirm your password to continue.", "info")
            return redirect(url_for("admin.reauth", next=request.path), 303)
        return view(*args, **kwargs)

    return wrapped


@bp.errorhandler(HTTPException)
def admin_error(error: HTTPException):
    """Errors on admin pages, in the admin layout (escaped; no stack trace)."""
    if error.code is None or error.code < 400:
        return error
    return render_template("admin/error.html", error=error), error.code


# --- views ------------------------------------------------------------------------------------------


def render_login(form: LoginForm, status: int = 200, retry_after: int = 0):
    """The admin sign-in page with the given status (and `Retry-After` when throttled)."""
    page = render_template("admin/login.html", form=form, signed_out=request.args.get("signed_out"))
    return page, status, retry_after_header(retry_after)


@bp.get("/login")
def login_page():
    """The sign-in form (an admin already signed in goes on)."""
    if current_user.is_authenticated and current_user.user.is_admin:
        return redirect(safe_next(request.args.get("next")) or url_for("admin.dashboard"))
    return render_login(LoginForm())


@bp.post("/login")
def login():
    """Sign in with email and password; only admins get in, and failures are throttled."""
    form = LoginForm()
    if not form.validate_on_submit():
        return render_login(form, 400)
    outcome = attempt(form.email.data, form.password.data, ip=request.remote_addr)
    if outcome.user is not None:
        start_session(outcome.user)
        db.session.commit()
        flash(f"Signed in as {outcome.user.email}.", "success")
        return redirect(safe_next(request.args.get("next")) or url_for("admin.dashboard"), 303)
    if outcome.refusal == "throttled":
        form.form_errors.append(f"Too many failed sign-ins. Try again in {wait_text(outcome.retry_after)}.")
        return render_login(form, 429, outcome.retry_after)
    if outcome.refusal == "not_admin":
        form.form_errors.append("This account does not have admin rights.")
        return render_login(form, 403)
    form.form_errors.append("Wrong email or password.")
    return render_login(form, 401)


@bp.post("/logout")
def logout():
    """End the admin session (the row is deleted; the cookie is cleared)."""
    if current_session_row() is not None:
        end_current_session(reason="logout")
    return redirect(url_for("admin.login", signed_out=1), 303)


def reauth_target() -> str:
    """Where a confirmed password leads: the `next` path on this server, or the dashboard."""
    return safe_next(request.args.get("next")) or url_for("admin.dashboard")


@bp.get("/reauth")
def reauth_page():
    """The form to confirm the password before a sensitive action."""
    return render_template("admin/reauth.html", form=ReauthForm(), target=reauth_target())


@bp.post("/reauth")
def reauth():
    """Confirm the password before a sensitive action; valid for ADMIN_REAUTH_MAX_AGE."""
    form = ReauthForm()
    if not form.validate_on_submit():
        return render_template("admin/reauth.html", form=form, target=reauth_target()), 400
    user = current_user.user
    checked = reauthenticate(user, form.password.data, ip=request.remote_addr)
    if checked.value:
        current_session_row().auth_time = utcnow()
        record("admin.reauthenticated", actor=current_user.actor, target=f"user:{user.id}", ip=request.remote_addr)
        db.session.commit()
        return redirect(reauth_target(), 303)
    if checked.retry_after:
        # A stolen session cookie must not become a password oracle: once throttled, it is signed out.
        end_current_session(reason="reauth_failed")
        return redirect(url_for("admin.login", signed_out="reauth"), 303)
    form.password.errors.append("Wrong password.")
    return render_template("admin/reauth.html", form=form, target=reauth_target()), 401
