"""Database wiring: the declarative base with a naming convention and the Flask-SQLAlchemy handle."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

import sqlite3

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, TypeDecorator, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, registry

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


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """SQLite enforces foreign keys (and so ON DELETE CASCADE) only when asked, per connection."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Engine options: a pooled connection is checked before use; PostgreSQL waits are bounded.

    The connect timeout also bounds the wait for a free pooled connection and, as
    `tcp_user_timeout`, how long sent data may go unacknowledged: a pooled connection to a database
    whose packets are dropped (instead of refused) fails then, rather than after the kernel's
    retransmissions, minutes later. (A slow statement is not affected: its data is acknowledged.)
    """
    options: dict[str, Any] = {"pool_pre_ping": True}
    if config["DATABASE_URL"].startswith("postgresql"):
        connect, statement = config["DATABASE_CONNECT_TIMEOUT"], config["DATABASE_STATEMENT_TIMEOUT"]
        options["pool_timeout"] = connect
        options["connect_args"] = {
            "connect_timeout": connect,
            "options": f"-c statement_timeout={statement * 1000}",
            "tcp_user_timeout": connect * 1000,
        }
    return options
