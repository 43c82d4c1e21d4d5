"""mail: one-time links (reset, verify, invite); verified and pending email, and how an account was created

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 02:40:00
"""

from alembic import op
import sqlalchemy as sa
import idp.db


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('one_time_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('created_at', idp.db.UTCDateTime(), nullable=False),
    sa.Column('expires_at', idp.db.UTCDateTime(), nullable=False),
    sa.Column('used_at', idp.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_one_time_links_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_one_time_links')),
    sa.UniqueConstraint('digest', name=op.f('uq_one_time_links_digest'))
    )
    op.create_index('ix_one_time_links_user_id_kind', 'one_time_links', ['user_id', 'kind'], unique=False)
    op.create_index('ix_one_time_links_expires_at', 'one_time_links', ['expires_at'], unique=False)
    with op.batch_alter_table('users') as batch_op:
        batch_op.add_column(sa.Column('email_verified_at', idp.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('pending_email', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('created_via', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('created_via')
        batch_op.drop_column('pending_email')
        batch_op.drop_column('email_verified_at')
    op.drop_index('ix_one_time_links_expires_at', table_name='one_time_links')
    op.drop_index('ix_one_time_links_user_id_kind', table_name='one_time_links')
    op.drop_table('one_time_links')
