"""A SQLite registry file as an older zoo left it: migrated only up to a given revision, for upgrade tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from zoo.store import db as zdb


@contextmanager
def registry_at(path: Path, revision: str) -> Iterator[Connection]:
    """A connection (one transaction, committed at the end) to a new SQLite registry ``path`` whose schema is
    at migration ``revision``, for writing the rows an older zoo would have; the next ``zoo.Registry(path)``
    in this process upgrades it (the once-per-process migration memo is cleared)."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    cfg = zdb._alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            yield conn
    finally:
        engine.dispose()
        zdb._migrated.discard(url)
