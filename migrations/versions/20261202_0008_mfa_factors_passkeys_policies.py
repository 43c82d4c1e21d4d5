"""second factors: authenticator apps, recovery codes, passkeys; per-user and per-client requirements

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 00:21:40.463002
"""

from alembic import op
import sqlalchemy as sa
import idp.db


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('client_mfa_requirements',
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('created_at', idp.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_client_mfa_requirements_client_id_clients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('client_id', name=op.f('pk_client_mfa_requirements'))
    )
    op.create_table('mfa_requirements',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', idp.db.UTCDateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_mfa_requirements_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_mfa_requirements'))
    )
    op.create_table('passkeys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('credential_id', sa.LargeBinary(length=1023), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('sign_count', sa.BigInteger(), nullable=False),
    sa.Column('transports', sa.JSON(), nullable=False),
    sa.Column('aaguid', sa.String(length=36), nullable=False),
    sa.Column('device_type', sa.String(length=16), nullable=False),
    sa.Column('backed_up', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', idp.db.UTCDateTime(), nullable=False),
    sa.Column('last_used_at', idp.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_passkeys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_passkeys')),
    sa.UniqueConstraint('credential_id', name=op.f('uq_passkeys_credential_id'))
    )
    with op.batch_alter_table('passkeys', schema=None) as batch_op:
        batch_op.create_index('ix_passkeys_user_id', ['user_id'], unique=False)

    op.create_table('recovery_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_digest', sa.String(length=64), nullable=False),
    sa.Column('created_at', idp.db.UTCDateTime(), nullable=False),
    sa.Column('used_at', idp.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_recovery_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_codes')),
    sa.UniqueConstraint('code_digest', name=op.f('uq_recovery_codes_code_digest'))
    )
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.create_index('ix_recovery_codes_user_id', ['user_id'], unique=False)

    op.create_table('totp_factors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('secret_encrypted', sa.String(length=512), nullable=False),
    sa.Column('created_at', idp.db.UTCDateTime(), nullable=False),
    sa.Column('confirmed_at', idp.db.UTCDateTime(), nullable=True),
    sa.Column('last_used_at', idp.db.UTCDateTime(), nullable=True),
    sa.Column('last_step', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_totp_factors_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_totp_factors')),
    sa.UniqueConstraint('user_id', name=op.f('uq_totp_factors_user_id'))
    )


def downgrade() -> None:
    op.drop_table('totp_factors')
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_recovery_codes_user_id')

    op.drop_table('recovery_codes')
    with op.batch_alter_table('passkeys', schema=None) as batch_op:
        batch_op.drop_index('ix_passkeys_user_id')

    op.drop_table('passkeys')
    op.drop_table('mfa_requirements')
    op.drop_table('client_mfa_requirements')
