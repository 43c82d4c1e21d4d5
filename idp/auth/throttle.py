"""Throttling of password checks: atomic counters per (account, IP), per IP, and per account from new IPs.

Every password check (sign-in, admin sign-in and re-authentication, the current password on
`/account/password`) first *reserves* one failure in each bucket that applies, in one short
transaction of conditional UPDATEs, and only then runs argon2. A bucket in back-off refuses the
reservation, and the reservation that reaches a limit starts the back-off in the same statement
that counts it, so N parallel guesses never evaluate more than the limit. A success gives the
reservation back and clears the (account, IP) bucket, which marks that address as known.

Buckets (`kind`):
- `account_ip`: one account from one address, LOGIN_THROTTLE_PER_ACCOUNT failures;
- `ip`: one address, any account, LOGIN_THROTTLE_PER_IP failures;
- `account`: one account from every address that has not signed in to it within
  LOGIN_THROTTLE_KNOWN_IP_TTL, LOGIN_THROTTLE_PER_ACCOUNT_NEW_IPS failures. Known addresses skip
  it, so a stranger's guesses never lock the owner out from their usual network.
Past its limit a bucket is backed off for LOGIN_THROTTLE_BACKOFF_BASE seconds, doubling with every
further failure up to LOGIN_THROTTLE_BACKOFF_CAP; it forgets its failures once neither a failure
nor a back-off happened for LOGIN_THROTTLE_WINDOW seconds. Unknown email addresses are throttled
exactly like known accounts (same buckets, same statements), so the throttle reveals nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import case, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from idp.audit.service import record
from idp.auth.models import LoginThrottle
from idp.clock import utcnow
from idp.db import db
from idp.errors import NotFoundError
from idp.security import digest
from idp.users.models import User

THROTTLED = "auth.throttled"
CLEARED = "throttle.cleared"
_TABLE = LoginThrottle.__table__
_INSERTS = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


class Throttled(Exception):
    """A password check refused without evaluating it: `kind` of the bucket, seconds to wait."""

    def __init__(self, kind: str, retry_after: int):
        super().__init__(f"throttled by {kind} for {retry_after}s")
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True)
class Bucket:
    """One counter an attempt is counted in."""

    key: str
    kind: str
    account: str | None
    ip: str | None
    limit: int


@dataclass(frozen=True)
class Reservation:
    """The buckets one attempt counted a failure in, until it proves to be a success."""

    account: str
    ip: str | None
    buckets: tuple[Bucket, ...]
    at: int  # the throttle clock when counted


def account_key(email: str, user: User | None) -> str:
    """The key an attempt is counted under: the user, or the (hashed) unknown email."""
    if user is not None:
        return f"user:{user.id}"
    # Unknown addresses stay out of the table and the audit target; the digest still groups them.
    return "email:" + digest((email or "").strip().lower())[:40]


def now_seconds() -> int:
    """The throttle's clock: Unix seconds."""
    return int(utcnow().timestamp())


def reserve(account: str, ip: str | None, *, namespace: str = "") -> Reservation:
    """Count a failure in every bucket of this attempt, or raise Throttled (counting nothing).

    `namespace` keeps another form's budget apart (e.g. "reset:" for password-reset requests), so
    asking for mail never spends the sign-in budget of an address, nor the other way round.
    """
    now = now_seconds()
    with db.engine.begin() as connection:
        # Keys in one global order: concurrent reservations lock rows alike, so never deadlock.
        buckets = tuple(sorted(_buckets(connection, account, ip, now, namespace), key=lambda bucket: bucket.key))
        for bucket in buckets:
            _count_failure(connection, bucket, now)  # raising rolls back the buckets counted so far
    return Reservation(account, ip, buckets, now)


def succeeded(reservation: Reservation) -> None:
    """The password was right: give the reservation back and remember the address as known."""
    with db.engine.begin() as connection:
        for bucket in reservation.buckets:
            if bucket.kind == "account_ip":
                values = {"failures": 0, "backoff": 0, "blocked_until": 0, "last_success_at": now_seconds()}
            else:
                # A back-off this very reservation started is lifted (the one before had ended, or
                # the reservation would have been refused); past the limit its doubling stays, erring safe.
                ours = _TABLE.c.blocked_until == _TABLE.c.backoff + reservation.at
                values = {
                    "failures": case((_TABLE.c.failures > 0, _TABLE.c.failures - 1), else_=0),
                    "backoff": case((_TABLE.c.failures - 1 < bucket.limit, 0), else_=_TABLE.c.backoff),
                    "blocked_until": case((ours, reservation.at), else_=_TABLE.c.blocked_until),
                }
            connection.execute(update(_TABLE).where(_TABLE.c.key == bucket.key).values(**values))


def retry_after_header(seconds: int) -> dict:
    """`Retry-After` for a throttled answer (RFC 6585 4), nothing otherwise."""
    return {"Retry-After": str(seconds)} if seconds > 0 else {}


def wait_text(seconds: int) -> str:
    """How long to wait, in words: "30 seconds", "4 minutes"."""
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{-(-seconds // 60)} minutes"


def record_refusal(refusal: Throttled, *, account: str, ip: str | None, form: str, actor: str) -> None:
    """Audit a refused attempt (in the caller's transaction): who was guessed, from where, by which form."""
    record(THROTTLED, actor=actor, target=account, ip=ip, form=form, bucket=refusal.kind, retry_after=refusal.retry_after)


def _buckets(connection: Connection, account: str, ip: str | None, now: int, namespace: str = "") -> list[Bucket]:
    config = current_app.config
    per_account = Bucket(f"{namespace}account:{account}", "account", account, None, config["LOGIN_THROTTLE_PER_ACCOUNT_NEW_IPS"])
    if not ip:
        return [per_account]
    ip = ip[:64]
    pair = Bucket(f"{namespace}pair:{account}|{ip}", "account_ip", account, ip, config["LOGIN_THROTTLE_PER_ACCOUNT"])
    buckets = [pair, Bucket(f"{namespace}ip:{ip}", "ip", None, ip, config["LOGIN_THROTTLE_PER_IP"])]
    last_success = connection.scalar(select(_TABLE.c.last_success_at).where(_TABLE.c.key == pair.key)) or 0
    if not last_success or last_success < now - config["LOGIN_THROTTLE_KNOWN_IP_TTL"]:
        buckets.append(per_account)
    return buckets


def _count_failure(connection: Connection, bucket: Bucket, now: int) -> None:
    """One conditional UPDATE: count the failure unless backed off, starting or doubling the back-off."""
    config = current_app.config
    insert = _INSERTS[connection.dialect.name]
    connection.execute(insert(_TABLE).values(
        key=bucket.key, kind=bucket.kind, account=bucket.account, ip=bucket.ip,
        failures=0, backoff=0, blocked_until=0, last_failure_at=0, last_success_at=0,
    ).on_conflict_do_nothing(index_elements=["key"]))
    quiet_since = now - config["LOGIN_THROTTLE_WINDOW"]
    connection.execute(update(_TABLE).where(
        _TABLE.c.key == bucket.key, _TABLE.c.failures > 0, _TABLE.c.last_failure_at < quiet_since, _TABLE.c.blocked_until < quiet_since,
    ).values(failures=0, backoff=0))
    # SET expressions read the row as it was before this UPDATE (on SQLite and PostgreSQL alike).
    after = _TABLE.c.failures + 1
    backoff = case(
        (after < bucket.limit, 0),
        (_TABLE.c.backoff == 0, config["LOGIN_THROTTLE_BACKOFF_BASE"]),
        (_TABLE.c.backoff * 2 > config["LOGIN_THROTTLE_BACKOFF_CAP"], config["LOGIN_THROTTLE_BACKOFF_CAP"]),
        else_=_TABLE.c.backoff * 2,
    )
    counted = connection.execute(update(_TABLE).where(_TABLE.c.key == bucket.key, _TABLE.c.blocked_until <= now).values(
        failures=after, last_failure_at=now, backoff=backoff, blocked_until=case((after < bucket.limit, 0), else_=backoff + now),
    ))
    if counted.rowcount != 1:
        blocked_until = connection.scalar(select(_TABLE.c.blocked_until).where(_TABLE.c.key == bucket.key)) or now
        raise Throttled(bucket.kind, max(1, blocked_until - now))


# --- the admin view ------------------------------------------------------------------------------


def active(limit: int = 200) -> list[LoginThrottle]:
    """Buckets in back-off or holding recent failures, the longest back-off first."""
    now = now_seconds()
    recent = now - current_app.config["LOGIN_THROTTLE_WINDOW"]
    return list(db.session.scalars(
        select(LoginThrottle)
        .where((LoginThrottle.blocked_until > now) | ((LoginThrottle.failures > 0) & (LoginThrottle.last_failure_at >= recent)))
        .order_by(LoginThrottle.blocked_until.desc(), LoginThrottle.last_failure_at.desc(), LoginThrottle.key)
        .limit(limit)
    ))


def clear(key: str, *, actor: str) -> LoginThrottle:
    """Forget a bucket's failures and lift its back-off (a known address stays known); audited."""
    row = db.session.get(LoginThrottle, key)
    if row is None:
        raise NotFoundError("no such throttle")
    db.session.execute(update(_TABLE).where(_TABLE.c.key == key).values(failures=0, backoff=0, blocked_until=0))
    record(CLEARED, actor=actor, target=row.account or f"ip:{row.ip}", ip=row.ip, bucket=row.kind)
    return row
