"""Single-runner locks: two beats, workers or `idp` commands never run the same job at once.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) held on a dedicated connection
for the whole run. SQLite (one machine by nature): an exclusive `flock` on a file beside the
database. Both are released by the operating system or the server the moment the runner dies, so a
killed worker never leaves a stale lock behind, and neither is ever waited on: a busy lock means
"someone else is doing it", and the run is recorded as skipped.

The lock is about tidiness and load, not correctness: every job step is safe to run twice anyway.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from idp.db import db

log = logging.getLogger(__name__)


def advisory_key(job: str) -> int:
    """A stable signed 64-bit key for `pg_try_advisory_lock`, derived from the job's name."""
    return int.from_bytes(hashlib.sha256(f"idp.job:{job}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def single_runner(job: str) -> Iterator[bool]:
    """Try to take `job`'s lock without waiting; yield whether this runner holds it."""
    if db.engine.dialect.name == "postgresql":
        with _advisory_lock(job) as held:
            yield held
    else:
        with _file_lock(job) as held:
            yield held


@contextmanager
def _advisory_lock(job: str) -> Iterator[bool]:
    key = advisory_key(job)
    connection: Connection = db.engine.connect()
    try:
        held = bool(connection.scalar(select(func.pg_try_advisory_lock(key))))
        connection.commit()  # the lock outlives the transaction; do not sit idle in one
        try:
            yield held
        finally:
            if held:
                _advisory_unlock(connection, key)
    finally:
        connection.close()


def _advisory_unlock(connection: Connection, key: int) -> None:
    try:
        connection.scalar(select(func.pg_advisory_unlock(key)))
        connection.commit()  # its own connection (the lock), not the unit of work
    except SQLAlchemyError:
        # A lock left on a pooled connection would block the job forever: close it for real.
        log.warning("could not release job lock %s; discarding its connection", key, exc_info=True)
        connection.invalidate()


def lock_path(job: str) -> Path:
    """The lock file of `job` for a file-based database: beside the database file."""
    database = db.engine.url.database
    if not database or database == ":memory:":
        raise RuntimeError("job locks on SQLite need a database file")
    return Path(f"{database}.{job}.lock")


@contextmanager
def _file_lock(job: str) -> Iterator[bool]:
    path = lock_path(job)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
