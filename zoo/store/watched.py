"""Watched files: what re-indexing remembers of every file it examined (size, mtime, outcome, checkpoint)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, insert, select

from zoo.store import models as m
from zoo.store.db import Database, retry

FileState = tuple[int, int, str, str | None]  # (size, mtime_ns, status, sha256 of its sidecar or None)


class WatchedFileRepository:
    """The ``watched_files`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def known(self) -> tuple[dict[str, FileState], dict[str, int | None]]:
        """(path -> state of every remembered file, sha256 -> checkpoint id of those not refused), in one
        read."""
        with self.db.read() as s:
            known = {
                r.path: (r.size, r.mtime_ns, r.status, r.sidecar_sha256)
                for r in s.execute(
                    select(
                        m.WatchedFile.path,
                        m.WatchedFile.size,
                        m.WatchedFile.mtime_ns,
                        m.WatchedFile.status,
                        m.WatchedFile.sidecar_sha256,
                    )
                ).all()
            }
            by_sha = dict(
                s.execute(
                    select(m.WatchedFile.sha256, m.WatchedFile.checkpoint_id).where(
                        m.WatchedFile.status != "bad"
                    )
                ).all()
            )
        return known, by_sha  # type: ignore[return-value]

    def remember(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store ``rows`` (``watched_files`` columns), replacing what was known about their paths, in one
        transaction."""
        if not rows:
            return
        paths = [r["path"] for r in rows]

        def txn() -> None:
            with self.db.write() as s:
                for i in range(0, len(paths), 500):
                    s.execute(delete(m.WatchedFile).where(m.WatchedFile.path.in_(paths[i : i + 500])))
                s.execute(insert(m.WatchedFile), [dict(r) for r in rows])

        retry(txn)


__all__ = ["FileState", "WatchedFileRepository"]
