"""Blob rows beside blob files: which content-addressed blobs are live, and removing them in two phases.

A blob row is ``live`` while something references it. Removing the last reference marks the row
``deleting`` in the same transaction; :meth:`BlobRepository.drop_if_unreferenced` then deletes the file and
the row under the blob's lock (an add that needs the blob meanwhile makes it ``live`` again first, so a kill
at any point leaves either a live blob with its file or an orphan that :meth:`BlobRepository.verify` finds).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from zoo.records import VerifyReport
from zoo.store import models as m
from zoo.store.blobs import BlobStore
from zoo.store.db import Database, retry

log = logging.getLogger(__name__)

ORPHAN_GRACE_S = 600.0  # verify --repair leaves younger unreferenced files alone: an add may be in flight


class BlobRepository:
    """The ``blobs`` table over a :class:`~zoo.store.blobs.BlobStore`: liveness, removal and verification."""

    def __init__(self, db: Database, files: BlobStore) -> None:
        self.db = db
        self.files = files

    def upsert_live(self, s: Session, sha: str, size: int) -> None:
        """Insert the blob row, or mark an existing one live again (it may be half-way through removal)."""
        s.execute(
            self.db.upsert(
                m.Blob,
                {"sha256": sha, "size": size, "state": "live", "created_at": m.utcnow()},
                [m.Blob.sha256],
                {"state": "live"},
            )
        )

    @staticmethod
    def referenced(s: Session, sha: str) -> bool:
        """Whether a checkpoint or a generator references blob ``sha``."""
        return bool(
            s.scalar(
                select(exists().where(m.Checkpoint.sha256 == sha) | exists().where(m.Generator.sha256 == sha))
            )
        )

    def users(self, shas: Sequence[str]) -> dict[str, list[tuple[int | None, str]]]:
        """sha256 -> (checkpoint id, or None for a generator; its ref) of everything stored in those blobs."""
        out: dict[str, list[tuple[int | None, str]]] = {sha: [] for sha in shas}
        if not shas:
            return out
        with self.db.read() as s:
            for cid, name, version, sha in s.execute(
                select(m.Checkpoint.id, m.Checkpoint.name, m.Checkpoint.version, m.Checkpoint.sha256).where(
                    m.Checkpoint.sha256.in_(list(shas))
                )
            ):
                out[sha].append((cid, f"{name}:v{version}"))
            for name, version, sha in s.execute(
                select(m.Generator.name, m.Generator.version, m.Generator.sha256).where(
                    m.Generator.sha256.in_(list(shas))
                )
            ):
                out[sha].append((None, f"generator {name}:v{version}"))
        return out

    def mark_deleting_if_unreferenced(self, s: Session, sha: str) -> None:
        """First phase of removal, in the transaction that dropped a reference (holding the blob's lock)."""
        if not self.referenced(s, sha):
            s.execute(update(m.Blob).where(m.Blob.sha256 == sha).values(state="deleting"))

    def drop_if_unreferenced(self, sha: str) -> bool:
        """Delete a blob file and row that nothing references (under the blob's write lock)."""

        def txn() -> bool:
            with self.db.write() as s:
                self.db.lock_key(s, sha)
                if self.referenced(s, sha):
                    return False
                blob = s.get(m.Blob, sha)
                if blob is not None and blob.state == "live":
                    return False  # a concurrent add made it live again
                self.files.delete(sha)
                s.execute(delete(m.Blob).where(m.Blob.sha256 == sha))
                return True

        return retry(txn)

    def drop_if_unreferenced_any_state(self, sha: str) -> None:
        with self.db.write() as s:
            self.db.lock_key(s, sha)
            self.mark_deleting_if_unreferenced(s, sha)
        self.drop_if_unreferenced(sha)

    def delete_orphan_file(self, sha: str) -> None:
        with self.db.write() as s:
            self.db.lock_key(s, sha)
            if s.get(m.Blob, sha) is None:  # still no row: no add committed it meanwhile
                self.files.delete(sha)

    def verify(self, *, repair: bool = False, grace_s: float = ORPHAN_GRACE_S) -> VerifyReport:
        """Hash every referenced blob; find missing/corrupt ones and orphans on either side (see
        :meth:`zoo.registry.Registry.verify`)."""
        with self.db.read() as s:
            rows = s.execute(select(m.Blob.sha256, m.Blob.state)).all()
            referenced = set(s.scalars(select(m.Checkpoint.sha256)).all()) | set(
                s.scalars(select(m.Generator.sha256)).all()
            )
        known = {sha for sha, _ in rows}
        ok, missing, corrupt = 0, [], []
        for sha in sorted(referenced):
            status = self.files.check(sha)
            if status == "ok":
                ok += 1
            elif status == "missing":
                missing.append(sha)
            else:
                corrupt.append(sha)
        orphan_rows = sorted(known - referenced)
        orphan_files = sorted(
            sha for sha in self.files.iter_shas() if sha not in known and self.files.age_s(sha) > grace_s
        )
        temps = self.files.stale_temp_files(grace_s)
        if repair:
            for sha in orphan_rows:
                self.drop_if_unreferenced_any_state(sha)
            for sha in orphan_files:
                self.delete_orphan_file(sha)
            for p in temps:
                p.unlink(missing_ok=True)
        report = VerifyReport(
            len(referenced),
            ok,
            tuple(missing),
            tuple(corrupt),
            tuple(orphan_files) + tuple(str(p.name) for p in temps),
            tuple(orphan_rows),
            repaired=repair,
        )
        if not report.clean:
            log.warning(
                "verify: %d missing, %d corrupt, %d orphan files, %d orphan rows%s",
                len(missing),
                len(corrupt),
                len(report.orphan_files),
                len(orphan_rows),
                " (repaired)" if repair else "",
            )
        return report


__all__ = ["ORPHAN_GRACE_S", "BlobRepository"]
