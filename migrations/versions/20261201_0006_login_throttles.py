"""login throttle buckets; the audit log is no longer counted per IP

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01 23:55:00.000000
"""

from alembic import op
import sqlalchemy as sa
import idp.db


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_throttles',
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('account', sa.String(length=64), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('backoff', sa.Integer(), nullable=False),
    sa.Column('blocked_until', sa.BigInteger(), nullable=False),
    sa.Column('last_failure_at', sa.BigInteger(), nullable=False),
    sa.Column('last_success_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_throttles'))
    )
    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.create_index('ix_login_throttles_last_failure_at', ['last_failure_at'], unique=False)
    # The throttle no longer counts failed sign-ins per IP in the audit log.
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_ip_occurred_at')


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_ip_occurred_at', ['ip', 'occurred_at'], unique=False)
    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.drop_index('ix_login_throttles_last_failure_at')
    op.drop_table('login_throttles')
