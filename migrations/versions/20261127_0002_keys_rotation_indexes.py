"""one active and one next key per algorithm; idle-session index

Revision ID: 0002_keys
Revises: 0001
Create Date: 2026-11-27 14:29:37.780828
"""

from alembic import op
import sqlalchemy as sa
import idp.db


revision = '0002_keys'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_kind_last_seen_at', ['kind', 'last_seen_at'], unique=False)

    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.create_index('uq_signing_keys_alg_active', ['alg'], unique=True, sqlite_where=sa.text("state = 'active'"), postgresql_where=sa.text("state = 'active'"))
        batch_op.create_index('uq_signing_keys_alg_next', ['alg'], unique=True, sqlite_where=sa.text("state = 'next'"), postgresql_where=sa.text("state = 'next'"))


def downgrade() -> None:
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_index('uq_signing_keys_alg_next', sqlite_where=sa.text("state = 'next'"), postgresql_where=sa.text("state = 'next'"))
        batch_op.drop_index('uq_signing_keys_alg_active', sqlite_where=sa.text("state = 'active'"), postgresql_where=sa.text("state = 'active'"))

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_kind_last_seen_at')

