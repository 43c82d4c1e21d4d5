"""The outbox handler that sends mail, minting each link's token at the moment it is sent.

The token is drawn here, its digest committed, and only then the message handed to the server: the
raw token is never written anywhere but into the mail. A retry draws a new token (the previous
one might have been lost), so the mail that arrives last holds the working link. A server that
refuses or cannot be reached is retried with exponential backoff (outbox); after the last attempt
the failure is recorded in the audit log as `mail.failed`.
"""

from __future__ import annotations

import logging

from flask import current_app

from idp.audit.service import record
from idp.db import commit_now, db
from idp.mail.messages import compose
from idp.mail.transport import MailError, deliver
from idp.onboarding.models import OneTimeLink
from idp.onboarding.service import MAIL_KIND, TTL_SETTINGS, is_open, reset_link_for
from idp.security import derived_token, digest
from idp.tasks import outbox
from idp.users.models import User

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6  # 30 s, 1, 2, 4, 8 minutes apart by default: a quarter of an hour of a server refusing
LINK_TOKEN_PREFIX = "idp_ml_"
LINK_PATHS = {"reset": "/password/reset", "verify": "/email/verify", "invite": "/invitation"}


def duration_text(seconds: int) -> str:
    """A lifetime in words: "30 minutes", "24 hours", "7 days"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and (seconds % size == 0 or unit == "minute"):
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def _link_context(link: OneTimeLink) -> dict:
    """The link's token (its digest committed before the mail leaves) and what the templates show of it.

    The token is derived from the link's identity under the secret key rather than drawn at random,
    so every attempt at this mail carries the same token: a redelivered mail (an attempt that
    outlived its claim, a worker killed after the server took the mail) leaves the first mail's
    link working, and still no stored value reveals the token (cf. Django's password-reset tokens).
    """
    context = f"idp one-time link {link.id} {link.kind} {link.user_id} {link.email} {link.created_at.isoformat()}"
    token = derived_token(current_app.config["SECRET_KEY"], context, prefix=LINK_TOKEN_PREFIX)
    link.digest = digest(token)
    commit_now("step: the link's digest is stored before the mail carrying its token leaves")
    issuer = current_app.config["ISSUER"]
    return {"link": f"{issuer}{LINK_PATHS[link.kind]}?token={token}", "lifetime": duration_text(current_app.config[TTL_SETTINGS[link.kind]]),
            "email": link.email}


def send_queued_mail(payload: dict, *, attempt: int, final: bool) -> bool:
    """Compose and hand over one queued mail; True once the server took it (or nothing is left to send)."""
    template, to, user_id, link_id = payload["template"], payload["to"], payload.get("user_id"), payload.get("link_id")
    target = f"user:{user_id}" if user_id else None
    context: dict = {"email": to}
    if payload.get("reset_request"):
        # A reset request names an address, not an account: look it up here (idp/onboarding/service.py
        # request_reset); a retry draws a new link, which replaces the last one.
        link = reset_link_for(to, ip=payload.get("ip"))
        if link is None:
            return True  # no such enabled account: nothing is sent, and the request looked the same
        user_id, target = link.user_id, f"user:{link.user_id}"
        context = _link_context(link)
    elif link_id is not None:
        link = db.session.get(OneTimeLink, link_id)
        if link is None or not is_open(link):
            return True  # spent, replaced or expired meanwhile: a link that cannot work is not worth a mail
        context = _link_context(link)
    user = db.session.get(User, user_id) if user_id else None
    message = compose(template, to=to, mail_from=current_app.config["MAIL_FROM"], user=user, **context)
    try:
        where = deliver(message, current_app.config)
    except MailError as error:
        log.warning("mail %s to %s not accepted (attempt %d%s): %s", template, to, attempt, ", the last" if final else "", error)
        if final:
            record("mail.failed", actor="system", target=target, template=template, to=to, attempts=attempt, detail=str(error)[:500])
        return False
    record("mail.sent", actor="system", target=target, template=template, to=to, attempt=attempt, via="smtp" if where.startswith("smtp://") else "folder")
    return True


def connect() -> None:
    """Deliver queued mail through the outbox (wired by the app factory)."""
    outbox.handler(MAIL_KIND, max_attempts=MAX_ATTEMPTS, retry_base=lambda config: config["MAIL_RETRY_BASE_SECONDS"])(send_queued_mail)
