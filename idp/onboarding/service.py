"""Single-use links by mail: password reset, email verification (and change), invitations, sign-up.

A link row is written in the transaction of the change that asks for it, beside an outbox message
(idp/onboarding/mails.py); the worker that sends the mail mints the token and stores only its
SHA-256, so the raw token exists in the mail alone. A link is spent by its use, replaced by a
newer link of the same kind, and dead once expired or once the address it was sent to is no
longer the account's. Callers commit (one transaction per request).
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.auth import throttle
from idp.auth.service import throttled_check
from idp.clock import utcnow
from idp.db import db, durable
from idp.errors import ValidationError
from idp.onboarding.models import OneTimeLink
from idp.security import digest, hash_password, verify_password
from idp.tasks import outbox
from idp.users.models import User
from idp.signout import end_everything
from idp.users.service import MAX_PASSWORD_LENGTH, get_user_by_email, normalize_email, validate_password

RESET, VERIFY, INVITE = "reset", "verify", "invite"
TTL_SETTINGS = {RESET: "PASSWORD_RESET_TTL", VERIFY: "EMAIL_VERIFICATION_TTL", INVITE: "INVITATION_TTL"}
MAIL_KIND = "mail"  # the outbox kind (handled in idp/onboarding/mails.py)
TEMPLATES = {RESET: "reset", VERIFY: "verify", INVITE: "invite"}
SIGNUP_EXISTS = "signup_exists"


# --- links -------------------------------------------------------------------------------------------


def queue_mail(template: str, *, to: str, user_id: int | None = None, link_id: int | None = None) -> None:
    """Put a mail in the outbox, in the caller's transaction (sent once that commits)."""
    outbox.add(MAIL_KIND, template=template, to=to, user_id=user_id, link_id=link_id)


def issue_link(user: User, kind: str, email: str) -> OneTimeLink:
    """A new link of `kind` for `user`, mailed to `email`; every older open link of that kind dies."""
    link = new_link(user, kind, email)
    queue_mail(TEMPLATES[kind], to=email, user_id=user.id, link_id=link.id)
    return link


def new_link(user: User, kind: str, email: str) -> OneTimeLink:
    """The row of a new link (no mail queued); every older open link of that kind dies."""
    now = utcnow()
    db.session.execute(update(OneTimeLink).where(
        OneTimeLink.user_id == user.id, OneTimeLink.kind == kind, OneTimeLink.used_at.is_(None)).values(used_at=now))
    link = OneTimeLink(kind=kind, user_id=user.id, email=email, created_at=now,
                       expires_at=now + timedelta(seconds=current_app.config[TTL_SETTINGS[kind]]))
    db.session.add(link)
    db.session.flush()
    return link


def is_open(link: OneTimeLink) -> bool:
    """Unspent, unexpired, and still about the account's address (an email change kills older links)."""
    if link.used_at is not None or link.expires_at <= utcnow():
        return False
    user = db.session.get(User, link.user_id)
    if user is None or user.is_disabled:
        return False
    if link.kind == VERIFY:
        return link.email in (user.email, user.pending_email)
    if link.kind == INVITE:
        return link.email == user.email and user.password_hash is None
    return link.email == user.email


def find_link(token: str, kind: str) -> OneTimeLink | None:
    """The open link of `kind` whose token this is; None for a wrong, tampered, spent or expired one."""
    if not token or len(token) > 200:
        return None
    link = db.session.scalar(select(OneTimeLink).where(OneTimeLink.digest == digest(token), OneTimeLink.kind == kind))
    return link if link is not None and is_open(link) else None


def _spend(link: OneTimeLink) -> bool:
    """Mark the link used; False if another request spent it first (one conditional UPDATE)."""
    spent = db.session.execute(update(OneTimeLink).where(OneTimeLink.id == link.id, OneTimeLink.used_at.is_(None))
                               .values(used_at=utcnow())).rowcount
    return bool(spent)


def _spend_or_refuse(link: OneTimeLink) -> User:
    if not is_open(link) or not _spend(link):
        raise ValidationError("this link has expired or was already used")
    return db.session.get(User, link.user_id)


# --- throttle -----------------------------------------------------------------------------------------


def _throttled(namespace: str, email: str, ip: str | None) -> int:
    """Count one request in the form's own buckets; the seconds to wait when refused, else 0."""
    account = throttle.account_key(email, get_user_by_email(email))
    try:
        throttle.reserve(account, ip, namespace=namespace)
    except throttle.Throttled as refusal:
        # The request answers 429 and so rolls back; the refusal's audit event must stay (nothing
        # else is written yet: each form asks the throttle first).
        with durable("the throttle's refusal of a mail form, audited"):
            throttle.record_refusal(refusal, account=account, ip=ip, form=namespace.rstrip(":"), actor="anonymous")
        return refusal.retry_after
    return 0


# --- password reset -----------------------------------------------------------------------------------


def request_reset(email: str, *, ip: str | None) -> int:
    """Queue a reset request; the worker mails a link if `email` names an enabled account.

    The request does the same work whether or not the account exists (the throttle's statements,
    one outbox row), so neither the answer nor its timing tells them apart; the lookup and the link
    happen in the worker (`reset_link_for`). Returns the seconds to wait when the throttle refused
    (it treats unknown addresses exactly like known ones).
    """
    retry_after = _throttled("reset:", email, ip)
    if retry_after:
        return retry_after
    try:
        email = normalize_email(email)
    except ValidationError:
        return 0  # nothing could be mailed there; the input itself says so, not the accounts
    outbox.add(MAIL_KIND, template=TEMPLATES[RESET], to=email, user_id=None, link_id=None, reset_request=True, ip=ip)
    return 0


def reset_link_for(email: str, *, ip: str | None) -> OneTimeLink | None:
    """In the worker: the new reset link of the enabled account `email` names (older ones die), or None."""
    user = get_user_by_email(email)
    if user is None or user.is_disabled:
        return None
    record("user.password_reset_requested", actor="anonymous", target=f"user:{user.id}", ip=ip)
    return new_link(user, RESET, user.email)


def reset_password(link: OneTimeLink, password: str, *, ip: str | None) -> User:
    """Set a new password through a reset link: every session and token of the user dies; audited."""
    validate_password(password)
    user = _spend_or_refuse(link)
    user.password_hash = hash_password(password)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()  # the link was read at this very address
    record("user.password_reset", actor=f"user:{user.id}", target=f"user:{user.id}", ip=ip)
    end_everything(user, reason="password_reset", actor=f"user:{user.id}")
    return user


# --- email verification and change --------------------------------------------------------------------


def send_verification(user: User, *, actor: str) -> OneTimeLink:
    """Mail a verification link for the pending address, or else the current one if unverified."""
    email = user.pending_email or (None if user.email_verified else user.email)
    if email is None:
        raise ValidationError(f"{user.email} is already verified")
    link = issue_link(user, VERIFY, email)
    record("user.verification_sent", actor=actor, target=f"user:{user.id}", email=email)
    return link


def confirm_email(link: OneTimeLink) -> User:
    """Verify the link's address; a pending address then replaces the old one (if nobody took it meanwhile)."""
    user = db.session.get(User, link.user_id)
    if is_open(link) and link.email == user.pending_email:
        if db.session.scalar(select(User.id).where(User.email == link.email, User.id != user.id)) is not None:
            raise ValidationError("another account uses this address now")
    user = _spend_or_refuse(link)
    now = utcnow()
    if link.email == user.pending_email:
        record("user.email_changed", actor=f"user:{user.id}", target=f"user:{user.id}", old=user.email, new=link.email)
        user.email, user.pending_email = link.email, None
    user.email_verified_at = now
    record("user.email_verified", actor=f"user:{user.id}", target=f"user:{user.id}", email=user.email)
    return user


def request_email_change(user: User, new_email: str, password: str, *, ip: str | None) -> int:
    """Ask to move to `new_email` (current password required); it replaces the old one once verified.

    Returns the seconds to wait when the password throttle refused, else 0. An address another
    account holds gets the same answer and no mail (nothing to verify there, nothing to reveal).
    """
    new_email = normalize_email(new_email)
    if new_email == user.email:
        raise ValidationError("that is already your address", field="email")
    checked = throttled_check(f"user:{user.id}", ip, lambda: verify_password(user.password_hash, (password or "")[:MAX_PASSWORD_LENGTH])[0],
                              form="email_change", actor=f"user:{user.id}")
    if checked.retry_after:
        return checked.retry_after
    if not checked.value:
        with durable("a refused email change, audited"):  # the 400 rolls back the rest
            record("user.email_change_failed", actor=Actor.user(user.id), target=f"user:{user.id}", ip=ip)
        raise ValidationError("password is wrong", field="password")
    if db.session.scalar(select(User.id).where(User.email == new_email)) is None:
        user.pending_email = new_email
        issue_link(user, VERIFY, new_email)
    record("user.email_change_requested", actor=f"user:{user.id}", target=f"user:{user.id}", ip=ip)
    return 0


# --- invitations --------------------------------------------------------------------------------------


def invite(email: str, *, name: str | None = None, actor: str) -> User:
    """Create an account without a password and mail its owner a link to choose one."""
    email = normalize_email(email)
    name = (name or "").strip() or None
    if name and len(name) > 200:
        raise ValidationError("name must be at most 200 characters", field="name")
    if get_user_by_email(email) is not None:
        raise ValidationError(f"a user with email {email!r} already exists", field="email")
    user = User(email=email, name=name, password_hash=None, created_via="invite")
    db.session.add(user)
    db.session.flush()
    record("user.invited", actor=actor, target=f"user:{user.id}", email=email)
    issue_link(user, INVITE, email)
    return user


def accept_invitation(link: OneTimeLink, password: str, *, ip: str | None) -> User:
    """Set the invited user's first password; the invitation proves the address."""
    validate_password(password)
    user = _spend_or_refuse(link)
    user.password_hash = hash_password(password)
    user.email_verified_at = utcnow()
    record("user.invitation_accepted", actor=f"user:{user.id}", target=f"user:{user.id}", ip=ip)
    return user


# --- sign-up ------------------------------------------------------------------------------------------


def signup_open() -> bool:
    """True when IDP_SIGNUP lets anyone (or some domains) create an account."""
    return current_app.config["SIGNUP"] != "off"


def check_signup_domain(email: str) -> str:
    """The normalized address if IDP_SIGNUP allows its domain; ValidationError otherwise."""
    email = normalize_email(email)
    policy = current_app.config["SIGNUP"]
    if policy == "off":
        raise ValidationError("sign-up is closed")
    if policy != "open" and email.rpartition("@")[2] not in policy.split(","):
        raise ValidationError("sign-up is open only to addresses of some domains", field="email")
    return email


def sign_up(email: str, password: str, *, name: str | None, ip: str | None) -> int:
    """Create an account and mail a verification link; an address already taken gets the same answer.

    The owner of a taken address is told by mail instead (an unverified signed-up account gets a
    fresh verification link). Both paths hash the password, so they take alike long. Returns the
    seconds to wait when the throttle refused, else 0.
    """
    email = check_signup_domain(email)
    validate_password(password)
    name = (name or "").strip() or None
    if name and len(name) > 200:
        raise ValidationError("name must be at most 200 characters", field="name")
    retry_after = _throttled("signup:", email, ip)
    if retry_after:
        return retry_after
    password_hash = hash_password(password)
    existing = get_user_by_email(email)
    if existing is not None:
        if existing.created_via == "signup" and not existing.email_verified and not existing.is_disabled:
            issue_link(existing, VERIFY, existing.email)
        else:
            queue_mail(SIGNUP_EXISTS, to=existing.email, user_id=existing.id)
        record("user.sign_up_existing", actor="anonymous", target=f"user:{existing.id}", ip=ip)
        return 0
    user = User(email=email, name=name, password_hash=password_hash, created_via="signup")
    db.session.add(user)
    db.session.flush()
    record("user.signed_up", actor="anonymous", target=f"user:{user.id}", ip=ip)
    issue_link(user, VERIFY, email)
    return 0


def must_verify_before_sign_in(user: User) -> bool:
    """A signed-up account waits for its verified address when IDP_SIGNUP_REQUIRE_VERIFIED is on."""
    return bool(current_app.config["SIGNUP_REQUIRE_VERIFIED"]) and user.created_via == "signup" and not user.email_verified
