"""watched files of the re-indexing job

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('watched_files',
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('checkpoint_id', sa.Integer(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('path', name=op.f('pk_watched_files'))
    )
    with op.batch_alter_table('watched_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_watched_files_sha256'), ['sha256'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('watched_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_watched_files_sha256'))

    op.drop_table('watched_files')
