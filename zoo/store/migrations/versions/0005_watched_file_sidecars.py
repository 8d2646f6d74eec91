"""watched files remember their sidecar

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00.000000

``watched_files.sidecar_sha256``: the sha256 of the JSON sidecar read with the file ("" for none), so that a
refused file is read again once its sidecar is written, changed or removed (following the refusal's fix is
enough; the file need not be touched). Rows from before are taken as read without a sidecar.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('watched_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sidecar_sha256', sa.String(length=64), server_default='',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('watched_files', schema=None) as batch_op:
        batch_op.drop_column('sidecar_sha256')
