"""Migrations and models must not drift, on every backend."""

from alembic.script import ScriptDirectory

from idp.migrate import SCRIPT_LOCATION, alembic_config, drift


def test_models_match_migrated_schema(app):
    assert drift(app) == []


def test_migrations_have_a_single_head(app):
    assert len(ScriptDirectory.from_config(alembic_config(app)).get_heads()) == 1
    assert SCRIPT_LOCATION.endswith("migrations")
