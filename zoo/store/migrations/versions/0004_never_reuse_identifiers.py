"""never reuse versions or ids

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 11:00:00.000000

Versions of a name come from ``version_counters`` (seeded with the highest surviving version), so removing
the newest version never lets other weights take its number. On SQLite the tables whose ids others keep
are rebuilt as AUTOINCREMENT (a deleted newest row's id was handed out again), and each table's sequence
starts above every id still referred to anywhere (a generator's ``trained_on``, its watermark, the import
log), so no kept reference can come to mean a new row. PostgreSQL sequences never reuse ids.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> queries of every id of that table that is kept somewhere (the table's own ids included)
_KEPT_IDS = {
    "checkpoints": ("SELECT max(id) FROM checkpoints", "SELECT max(checkpoint_id) FROM generator_checkpoints",
                    "SELECT max(watermark) FROM generators", "SELECT max(checkpoint_id) FROM watched_files"),
    "datasets": ("SELECT max(id) FROM datasets",),
    "embeddings": ("SELECT max(id) FROM embeddings",),
    "generators": ("SELECT max(id) FROM generators", "SELECT max(generator_id) FROM generator_checkpoints"),
    "job_runs": ("SELECT max(id) FROM job_runs",),
}


def upgrade() -> None:
    op.create_table('version_counters',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('last_version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'name', name=op.f('pk_version_counters'))
    )
    op.execute("INSERT INTO version_counters (kind, name, last_version) "
               "SELECT 'checkpoint', name, max(version) FROM checkpoints GROUP BY name")
    op.execute("INSERT INTO version_counters (kind, name, last_version) "
               "SELECT 'generator', name, max(version) FROM generators GROUP BY name")
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # zoo.store.db turns foreign keys off around migrations: dropping the old table must not cascade
    assert bind.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0, "foreign keys must be off to rebuild tables"
    for table, queries in _KEPT_IDS.items():
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
        top = max((bind.exec_driver_sql(q).scalar() or 0) for q in queries)
        if bind.exec_driver_sql("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?",
                                (top, table)).rowcount == 0:
            bind.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, top))


def downgrade() -> None:
    op.drop_table('version_counters')
