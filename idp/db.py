"""Database wiring: the declarative base, the Flask-SQLAlchemy handle, and who owns the transaction.

One transaction per request, task or CLI command, committed at the edge and nowhere else:

- a request: `IdpFlask.process_response` (idp/outages.py) commits after the after-request hooks
  and the session save, before the response leaves (a commit that fails on a lost database still
  becomes a 503). A response of 400 or more first rolls back what the view changed
  (`response_keeps_changes`), so a request that fails after a service changed something leaves
  no half-written row, while the session's own row is still saved;
- a Celery task: the task class in idp/tasks/__init__.py wraps its run in `unit_of_work()`;
- a CLI command: idp/cli.py, idp/manage.py, idp/keyring/cli.py and idp/jobs/cli.py wrap theirs in `unit_of_work()`.

Services never commit. The few records a failing request must keep (a failed sign-in and its
throttle count, refresh-token or code reuse revoking what was issued, the audit of a refused
action) are written inside `durable()`, which commits them at once; and a few long-running jobs
commit in named steps (batches, claims), each explained where it happens.
"""

from __future__ import annotations

from datetime import datetime, timezone
from contextlib import contextmanager
from functools import wraps
from typing import Any, Callable, Iterator, Mapping

import select
import sqlite3

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, TypeDecorator, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.pool import Pool
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.orm import DeclarativeBase, Session, registry

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    """Base of every model; `datetime` annotations map to UTC timestamps."""

    registry = registry(metadata=MetaData(naming_convention=NAMING_CONVENTION), type_annotation_map={datetime: UTCDateTime()})


db = SQLAlchemy(model_class=Base)


@contextmanager
def unit_of_work() -> Iterator[None]:
    """One task's or command's transaction: committed when the block ends, rolled back if it raises."""
    try:
        yield
    except BaseException:
        db.session.rollback()
        raise
    db.session.commit()


def response_keeps_changes(status_code: int) -> bool:
    """A response below 400 keeps the request's changes; an error answer rolls them back."""
    return status_code < 400


@contextmanager
def durable(why: str) -> Iterator[None]:
    """Commit what the block writes now, so it survives the failure the caller is about to answer.

    For the few records a refused request must keep (RFC 9700 4.14.2 reuse detection revoking a
    family, a failed sign-in counted by the throttle, the audit of a refused action). The commit
    takes whatever the transaction holds, so use it before anything else was written; `why`
    names the record where it is used.
    """
    yield
    commit_now(why)


def commit_now(why: str) -> None:
    """Commit the transaction so far, before the edge would; `why` names the reason where it is used.

    For `durable` records, and where a write must be committed before another connection writes
    (SQLite lets one writer at a time: the throttle counts on a connection of its own).
    """
    db.session.commit()


# Whether the open transaction wrote anything (a flush, or an UPDATE/DELETE/INSERT statement): a
# request that only read has nothing to commit, so a connection lost after its last query cannot
# turn its answer into an error.
_WROTE = "idp.wrote"


@event.listens_for(Session, "after_flush")
def _flushed(session, flush_context) -> None:
    session.info[_WROTE] = True


# Set by `reads_only` for the request: its statements run on an autocommit connection.
_READS_ONLY = "idp.reads_only"


class WriteInReadOnlyView(RuntimeError):
    """A view marked `reads_only` tried to write: a programming error, never a user's."""


def reads_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that only reads: no BEGIN and no ROLLBACK around its SELECTs, and no write at all.

    A transaction buys nothing for a lone read, and its two extra round trips are most of the
    database cost of a resource server's userinfo or introspection call. Each SELECT then stands
    alone (no common snapshot, no row locks), so mark only views whose reads need neither.
    """

    @wraps(view)
    def without_transaction(*args: Any, **kwargs: Any) -> Any:
        session = db.session()
        if session.in_transaction():
            return view(*args, **kwargs)  # something before the view opened one: its reads join it
        session.info[_READS_ONLY] = True
        try:
            return view(*args, **kwargs)
        finally:
            # Give the autocommit connection back now (no round trip: nothing is open on it), so
            # whatever runs after the view in this session (a hook, a test) starts a real transaction.
            del session.info[_READS_ONLY]
            if session.in_transaction():
                session.rollback()

    return without_transaction


@event.listens_for(Session, "do_orm_execute")
def _executed(state) -> None:
    statement = state.statement
    reads = state.is_select or (isinstance(statement, TextClause) and statement.text.lstrip().upper().startswith("SELECT"))
    session = state.session
    if session.info.get(_READS_ONLY):
        if not reads:
            raise WriteInReadOnlyView(f"a reads_only view executed {statement}")
        if not session.in_transaction():
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    if not reads:
        session.info[_WROTE] = True


@event.listens_for(Session, "before_flush")
def _refuse_a_flush_in_a_read_only_view(session, flush_context, instances) -> None:
    if session.info.get(_READS_ONLY):
        raise WriteInReadOnlyView(f"a reads_only view flushed {list(session.new) + list(session.dirty) + list(session.deleted)}")


@event.listens_for(Session, "after_transaction_end")
def _ended(session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


def has_writes() -> bool:
    """Whether the request's transaction holds a write that the edge must commit."""
    return bool(db.session.info.get(_WROTE)) or bool(db.session.new or db.session.dirty or db.session.deleted)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """SQLite enforces foreign keys (and so ON DELETE CASCADE) only when asked, per connection."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


@event.listens_for(Pool, "checkout")
def _refuse_a_closed_connection(dbapi_connection, connection_record, connection_proxy) -> None:
    """A pooled PostgreSQL connection the server has closed is replaced before use, without a round trip.

    An idle connection has nothing to read: the server speaks only when asked, and we LISTEN to
    nothing. So a readable socket means the server hung up (a restart or a killed backend sends
    its FATAL error and closes), and the pool swaps in a new connection, and then every other one
    made before (InvalidatePoolError), instead of a request failing on it. SQLAlchemy's pre-ping
    learns the same with a `;` round trip on every checkout: a quarter of a userinfo request.
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        return  # a file, not a socket (and pre-pinged: engine_options); the other backend is psycopg
    if dbapi_connection.closed or dbapi_connection.broken:
        raise InvalidatePoolError("the pooled connection is closed")
    waiting = select.poll()
    waiting.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
    if waiting.poll(0):
        raise InvalidatePoolError("the server closed the pooled connection")


def engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Engine options: a pooled connection is checked before use; PostgreSQL waits are bounded.

    The connect timeout also bounds the wait for a free pooled connection and, as
    `tcp_user_timeout`, how long sent data may go unacknowledged: a pooled connection to a database
    whose packets are dropped (instead of refused) fails then, rather than after the kernel's
    retransmissions, minutes later. (A slow statement is not affected: its data is acknowledged.)
    """
    if not config["DATABASE_URL"].startswith("postgresql"):
        return {"pool_pre_ping": True}
    # No pre-ping: _refuse_a_closed_connection checks every checkout without a round trip.
    connect, statement = config["DATABASE_CONNECT_TIMEOUT"], config["DATABASE_STATEMENT_TIMEOUT"]
    return {
        "pool_timeout": connect,
        "connect_args": {
            "connect_timeout": connect,
            "options": f"-c statement_timeout={statement * 1000}",
            "tcp_user_timeout": connect * 1000,
        },
    }
