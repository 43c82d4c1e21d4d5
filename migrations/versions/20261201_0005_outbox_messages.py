"""transactional outbox: messages written with the change they follow, relayed until handled;
a partial index for the relay's look for job runs in progress

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:50:00.000000
"""

from alembic import op
import sqlalchemy as sa
import idp.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'outbox_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=64), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('created_at', idp.db.UTCDateTime(), nullable=False),
        sa.Column('due_at', idp.db.UTCDateTime(), nullable=False),
        sa.Column('claimed_until', idp.db.UTCDateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('done_at', idp.db.UTCDateTime(), nullable=True),
        sa.Column('outcome', sa.String(length=20), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_messages')),
    )
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_messages_pending_due_at', ['due_at'], unique=False,
                              postgresql_where=sa.text('done_at IS NULL'), sqlite_where=sa.text('done_at IS NULL'))
        batch_op.create_index('ix_outbox_messages_done_at', ['done_at'], unique=False)
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.create_index('ix_job_runs_running_job', ['job'], unique=False,
                              postgresql_where=sa.text("outcome = 'running'"), sqlite_where=sa.text("outcome = 'running'"))


def downgrade() -> None:
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_job_runs_running_job', postgresql_where=sa.text("outcome = 'running'"), sqlite_where=sa.text("outcome = 'running'"))
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_messages_done_at')
        batch_op.drop_index('ix_outbox_messages_pending_due_at', postgresql_where=sa.text('done_at IS NULL'), sqlite_where=sa.text('done_at IS NULL'))
    op.drop_table('outbox_messages')
