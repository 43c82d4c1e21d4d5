"""Signing-key rotation per algorithm: next (published) -> active (signing) -> retired (published) -> purged.

What every step keeps true, whatever runs it and wherever it is killed:
- each algorithm has an active key (a step that would leave none promotes or creates one);
- a key signs only after it has been in the JWKS for the lead time (HTTP cache + clock skew + the
  per-process keyring cache), so relying parties that cache the JWKS already hold it. The only
  exceptions are emergencies that the audit log records: revoking the active key, an algorithm found
  without one, and `rotate_now(force=True)`;
- a retired key stays published until every token it could have signed has expired (the grace:
  longest token lifetime + clock skew + the keyring cache, during which other processes may still sign
  with it), and only then is its row deleted.

Each step is one transaction. It reads the algorithm's keys under row locks (PostgreSQL), changes
states only with UPDATEs conditional on the state it read, and the database refuses a second active
or next key per algorithm (partial unique indexes), so a rerun, a racing runner or a killed worker
leaves either the state before the step or the state after it, never a mix.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterator, Mapping

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from idp.audit.service import record
from idp.clock import utcnow
from idp.db import commit_now, db
from idp.errors import IdpError, ValidationError
from idp.keyring.models import KeyState, SigningKey
from idp.keyring.service import ALGORITHMS, generate_key, invalidate_cache, require_key

SYSTEM = "system"


class RotationConflict(IdpError):
    """Another runner changed this algorithm's keys between our read and our write; nothing was written."""


@dataclass(frozen=True)
class RotationPolicy:
    """The timings of the state machine, from the settings."""

    period: timedelta | None  # None: no scheduled rotation
    lead_time: timedelta  # published at least this long before signing
    grace: timedelta  # published at least this long after it stopped signing

    @classmethod
    def from_config(cls, config: Mapping) -> RotationPolicy:
        """The policy the settings describe (validated by idp/config.py)."""
        period = config["KEY_ROTATION_PERIOD"]
        return cls(
            period=timedelta(seconds=period) if period else None,
            lead_time=timedelta(seconds=config["KEY_ROTATION_LEAD_TIME"]),
            # Other web processes may sign with a just-retired key until their cache expires.
            grace=timedelta(seconds=config["KEY_RETIREMENT_GRACE"] + config["KEYRING_CACHE_SECONDS"]),
        )

    def rotation_due(self, active: SigningKey, now: datetime) -> bool:
        """The active key has signed for a whole period."""
        return self.period is not None and (active.activated_at or active.created_at) + self.period <= now

    def published_long_enough(self, key: SigningKey, now: datetime) -> bool:
        """Every cached copy of the JWKS that lacked this key has expired by now."""
        return key.created_at + self.lead_time <= now

    def purge_cutoff(self, now: datetime) -> datetime:
        """Keys retired or revoked at or before this moment can no longer verify a live token."""
        return now - self.grace


def policy() -> RotationPolicy:
    """The running app's rotation policy."""
    return RotationPolicy.from_config(current_app.config)


# --- the steps the scheduler runs -----------------------------------------------------------------


def run_rotation(now: datetime | None = None) -> dict[str, int]:
    """The scheduled job: per algorithm, repair, rotate when due, publish a next key, purge expired keys."""
    now = now or utcnow()
    rules = policy()
    counts: Counter[str] = Counter(created=0, activated=0, retired=0, purged=0, waiting=0, conflicts=0)
    for alg in ALGORITHMS:
        for step in (_advance, _purge_expired_keys):
            try:
                counts.update(step(alg, now, rules))
            except (RotationConflict, IntegrityError):
                # Someone else (a manual rotation, a revocation) changed this algorithm's keys
                # first; their step keeps the invariants, and the next run looks again. Each step
                # commits its own work, so this drops only the refused step, never an earlier one.
                db.session.rollback()
                counts["conflicts"] += 1
    invalidate_cache()
    return dict(counts)


def _advance(alg: str, now: datetime, rules: RotationPolicy) -> Counter[str]:
    """One transaction: make sure `alg` has an active key, rotate if due, and publish a next key."""
    counts: Counter[str] = Counter()
    keys = _lock(alg)
    active, upcoming = _one(keys, KeyState.ACTIVE), _one(keys, KeyState.NEXT)
    if active is None:
        # Signing is broken for this algorithm (fresh database, hand-edited rows): repair at once.
        # Promoting the published next key beats minting one nobody has seen.
        if upcoming is not None:
            _activate(upcoming, now, rules, actor=SYSTEM, reason="no active key")
            upcoming = None
        else:
            generate_key(alg, KeyState.ACTIVE, actor=SYSTEM, now=now)
            counts["created"] += 1
        counts["activated"] += 1
    elif rules.rotation_due(active, now):
        if upcoming is not None and rules.published_long_enough(upcoming, now):
            _retire(active, now, actor=SYSTEM, reason="scheduled")
            _activate(upcoming, now, rules, actor=SYSTEM, reason="scheduled")
            upcoming = None
            counts.update(retired=1, activated=1)
        else:
            counts["waiting"] += 1  # the next key is too new: rotate once relying parties have it
    if upcoming is None:
        generate_key(alg, KeyState.NEXT, actor=SYSTEM, now=now)
        counts["created"] += 1
    commit_now("step: each algorithm rotates in a transaction of its own")
    return counts


def _purge_expired_keys(alg: str, now: datetime, rules: RotationPolicy) -> Counter[str]:
    """One transaction: delete `alg`'s retired and revoked keys whose grace has passed."""
    cutoff = rules.purge_cutoff(now)
    keys = _lock(alg)
    purged = 0
    for key in keys:
        ended_at = {KeyState.RETIRED: key.retired_at, KeyState.REVOKED: key.revoked_at}.get(key.state)
        if ended_at is None or ended_at > cutoff:
            continue
        ended_column = SigningKey.retired_at if key.state is KeyState.RETIRED else SigningKey.revoked_at
        result = db.session.execute(
            delete(SigningKey).where(SigningKey.id == key.id, SigningKey.state == key.state, ended_column <= cutoff)
        )
        if result.rowcount != 1:
            raise RotationConflict(f"key {key.kid} changed while being purged")
        record("key.purged", actor=SYSTEM, target=f"key:{key.kid}", alg=alg, state=key.state.value, ended_at=ended_at.isoformat())
        purged += 1
    commit_now("step: each algorithm's purge is a transaction of its own")
    return Counter(purged=purged)


# --- by hand ----------------------------------------------------------------------------------------


def rotate_now(*, actor: str, now: datetime | None = None, alg: str | None = None, force: bool = False) -> list[SigningKey]:
    """Promote each algorithm's published next key to active now, retire the old one, publish a new next.

    Refused (ValidationError, nothing written) when a next key has been published for less than the
    lead time, since relying parties caching the JWKS may not know it yet; `force=True` overrides
    that and the audit event says so. Returns the newly active keys.
    """
    now = now or utcnow()
    rules = policy()
    algorithms = _algorithms(alg)
    promoted = []
    with _manual_change():
        for name in algorithms:
            keys = _lock(name)
            active, upcoming = _one(keys, KeyState.ACTIVE), _one(keys, KeyState.NEXT)
            if upcoming is None:
                raise ValidationError(f"no published next {name} key; `idp keys rotate` publishes one", field="alg")
            if not force and not rules.published_long_enough(upcoming, now):
                ready = upcoming.created_at + rules.lead_time
                raise ValidationError(
                    f"the next {name} key has been published only since {upcoming.created_at.isoformat(timespec='seconds')}; "
                    f"relying parties that cache the JWKS may not have it before {ready.isoformat(timespec='seconds')}. "
                    "Wait until then, or force it (tokens it signs may fail at relying parties until they refetch the JWKS)",
                    field="alg",
                )
            if active is not None:
                _retire(active, now, actor=actor, reason="manual")
            _activate(upcoming, now, rules, actor=actor, reason="manual")
            generate_key(name, KeyState.NEXT, actor=actor, now=now)
            promoted.append(upcoming)
    return promoted


def revoke_key(kid: str, *, actor: str, now: datetime | None = None) -> SigningKey:
    """Withdraw a (compromised) key from the JWKS at once; every token it signed stops verifying.

    Revoking the active key promotes the next key immediately (even before its lead time: signing
    must go on) and publishes a new next key; revoking the next key publishes a new one.
    """
    now = now or utcnow()
    key = require_key(kid)
    with _manual_change():
        keys = _lock(key.alg)
        key = next(k for k in keys if k.kid == kid)
        previous = key.state
        if previous is KeyState.REVOKED:
            raise ValidationError(f"key {kid} is already revoked", field="kid")
        _transition(key, previous, KeyState.REVOKED, revoked_at=now)
        record("key.revoked", actor=actor, target=f"key:{kid}", alg=key.alg, previous_state=previous.value)
        if previous is KeyState.ACTIVE:
            upcoming = _one(keys, KeyState.NEXT)
            if upcoming is not None:
                _activate(upcoming, now, policy(), actor=actor, reason="revocation")
            else:
                generate_key(key.alg, KeyState.ACTIVE, actor=actor, now=now)
        if previous in (KeyState.ACTIVE, KeyState.NEXT):
            generate_key(key.alg, KeyState.NEXT, actor=actor, now=now)
    return key


# --- helpers ----------------------------------------------------------------------------------------


@contextmanager
def _manual_change() -> Iterator[None]:
    """One transaction of a change made by hand: committed whole and seen by this process at once, or rolled back."""
    try:
        yield
        commit_now("a change by hand: committed whole, its conflict answered here, and seen at once")
    except IntegrityError:
        # The partial unique indexes refused a second active or next key: someone else rotated.
        db.session.rollback()
        raise RotationConflict("another rotation changed the keyring at the same moment; nothing was changed, try again") from None
    except BaseException:
        db.session.rollback()
        raise
    invalidate_cache()


def _algorithms(alg: str | None) -> tuple[str, ...]:
    if alg is None:
        return ALGORITHMS
    if alg not in ALGORITHMS:
        raise ValidationError(f"unknown algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}", field="alg")
    return (alg,)


def _lock(alg: str) -> list[SigningKey]:
    """The algorithm's keys, freshly read and (on PostgreSQL) row-locked until the transaction ends."""
    statement = select(SigningKey).where(SigningKey.alg == alg).order_by(SigningKey.id).with_for_update()
    return list(db.session.scalars(statement.execution_options(populate_existing=True)))


def _one(keys: list[SigningKey], state: KeyState) -> SigningKey | None:
    return next((key for key in keys if key.state is state), None)


def _transition(key: SigningKey, from_state: KeyState, to_state: KeyState, **dates: datetime) -> None:
    """Move `key` from `from_state` to `to_state` only if it is still in `from_state`."""
    result = db.session.execute(
        update(SigningKey).where(SigningKey.id == key.id, SigningKey.state == from_state).values(state=to_state, **dates)
    )
    if result.rowcount != 1:
        raise RotationConflict(f"key {key.kid} left state {from_state.value} under us")


def _activate(key: SigningKey, now: datetime, rules: RotationPolicy, *, actor: str, reason: str) -> None:
    published_for = int((now - key.created_at).total_seconds())
    _transition(key, KeyState.NEXT, KeyState.ACTIVE, activated_at=now)
    record(
        "key.activated", actor=actor, target=f"key:{key.kid}", alg=key.alg, reason=reason,
        published_for_seconds=published_for, lead_time_met=rules.published_long_enough(key, now),
    )


def _retire(key: SigningKey, now: datetime, *, actor: str, reason: str) -> None:
    _transition(key, KeyState.ACTIVE, KeyState.RETIRED, retired_at=now)
    record("key.retired", actor=actor, target=f"key:{key.kid}", alg=key.alg, reason=reason)
