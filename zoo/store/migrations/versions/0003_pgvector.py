"""pgvector copies of the vectors on PostgreSQL (a no-op on other databases)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 02:30:00.000000

On PostgreSQL whose server has the pgvector extension, installs it (where the user may) and creates the
``embedding_vectors`` table that :mod:`zoo.store.pgvector` searches. Nothing changes elsewhere, and a
PostgreSQL database without the extension works on as before (the table appears once the extension does).
"""
from collections.abc import Sequence

from alembic import op

from zoo.store import pgvector

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        pgvector.install(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"DROP TABLE IF EXISTS {pgvector.TABLE}")
