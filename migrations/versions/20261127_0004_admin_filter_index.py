"""partial index for the admin UI's "Admins" user filter

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 18:06:58.037194
"""

from alembic import op
import sqlalchemy as sa
import idp.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index('ix_users_admin_email', ['email'], unique=False, postgresql_where=sa.text('is_admin'), sqlite_where=sa.text('is_admin'))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ix_users_admin_email', postgresql_where=sa.text('is_admin'), sqlite_where=sa.text('is_admin'))
