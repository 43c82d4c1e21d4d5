"""refresh families keep acr/amr; each refresh token remembers the access token issued with it

Revision ID: 0003
Revises: 0002_admin
Create Date: 2026-11-27 17:21:27.211684
"""

from alembic import op
import sqlalchemy as sa
import idp.db


revision = '0003'
down_revision = '0002_admin'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('refresh_families', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acr', sa.String(length=64), nullable=True))
        # Existing families (and rows inserted by plain SQL) get an empty list.
        batch_op.add_column(sa.Column('amr', sa.JSON(), nullable=False, server_default='[]'))

    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('access_jti', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('access_expires_at', idp.db.UTCDateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_column('access_expires_at')
        batch_op.drop_column('access_jti')

    with op.batch_alter_table('refresh_families', schema=None) as batch_op:
        batch_op.drop_column('amr')
        batch_op.drop_column('acr')

