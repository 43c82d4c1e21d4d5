"""clients.id_token_claims: "standard" ID tokens carry profile and email claims, "minimal" ones do not

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('id_token_claims', sa.String(length=10), nullable=False, server_default='standard'))


def downgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('id_token_claims')
