"""Schema migrations through Alembic, driven by the app's configuration (no ini file needed)."""

from __future__ import annotations

from pathlib import Path

import migrations
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from flask import Flask

from idp.db import db
from idp.models import Base

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)


def alembic_config(app: Flask) -> Config:
    """An Alembic Config pointing at the packaged migrations and the app's database."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.set_main_option("sqlalchemy.url", app.config["DATABASE_URL"].replace("%", "%%"))
    return cfg


def upgrade(app: Flask, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    with app.app_context(), db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Rewriting a large table may take longer than any request should (IDP_DATABASE_STATEMENT_TIMEOUT).
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        cfg = alembic_config(app)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def drift(app: Flask) -> list:
    """Differences between the migrated schema and the models (empty when they agree)."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)
