"""checkpoint events: the history of changes made after an add

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 17:00:00.000000

``checkpoint_events``: a row for each add (who added it) and one per change made to a checkpoint after it
(tags added or removed, metrics set or removed, aliases set or removed, its dataset cleared when the dataset
was removed), with who made it and when. Checkpoints from before have no rows: their history starts with
their add, by someone unknown.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('checkpoint_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('checkpoint_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('actor', sa.String(length=256), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoints.id'],
                            name=op.f('fk_checkpoint_events_checkpoint_id_checkpoints'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoint_events')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('checkpoint_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkpoint_events_checkpoint_id'), ['checkpoint_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('checkpoint_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkpoint_events_checkpoint_id'))

    op.drop_table('checkpoint_events')
