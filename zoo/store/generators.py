"""Generator versions: their rows, the checkpoints each was trained on, and their blobs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from zoo.errors import Hint, NotFoundError
from zoo.records import GeneratorRecord
from zoo.refs import parse_ref
from zoo.store import models as m
from zoo.store.blobrows import BlobRepository
from zoo.store.db import Database, retry

GENERATOR_STATUSES = ("candidate", "promoted", "retired")  # a generator version's life


class GeneratorRepository:
    """The ``generators`` table (and ``generator_checkpoints``); blobs through :class:`BlobRepository`."""

    def __init__(self, db: Database, blobs: BlobRepository) -> None:
        self.db = db
        self.blobs = blobs

    def add(
        self,
        data: bytes,
        *,
        name: str,
        families: Iterable[str],
        config: Mapping[str, Any],
        metrics: Mapping[str, float],
        trained_on: list[int],
        status: str,
    ) -> GeneratorRecord:
        """Store ``data`` (checked by the caller) as the next version of ``name``; on error, nothing."""
        sha, created = self.blobs.files.put(data)

        def txn() -> GeneratorRecord:
            with self.db.write() as s:
                self.db.lock_key(s, sha)
                self.db.lock_key(s, f"generator:{name}")  # PostgreSQL: versions of one name in turn
                self.blobs.upsert_live(s, sha, len(data))
                version = self.db.next_version(s, "generator", name)
                row = m.Generator(
                    name=name,
                    version=version,
                    families=",".join(sorted(families)),
                    sha256=sha,
                    config=dict(config),
                    metrics={k: float(v) for k, v in metrics.items()},
                    watermark=max(trained_on, default=0),
                    status=status,
                    created_at=m.utcnow(),
                )
                s.add(row)
                s.flush()
                if trained_on:
                    s.execute(
                        insert(m.GeneratorCheckpoint),
                        [{"generator_id": row.id, "checkpoint_id": i} for i in trained_on],
                    )
                if not self.blobs.files.exists(sha):
                    self.blobs.files.put(data, sha)
                return self._record(row, trained_on)

        try:
            return retry(txn)
        except BaseException:
            if created:
                self.blobs.drop_if_unreferenced(sha)
            raise

    def list(self, *, family: str | None = None, status: str | None = None) -> list[GeneratorRecord]:
        """Generator versions, newest first, optionally only those covering ``family`` or with ``status``."""
        q = select(m.Generator).order_by(m.Generator.id.desc())
        if status:
            q = q.where(m.Generator.status == status)
        with self.db.read() as s:
            rows = [r for r in s.scalars(q).all() if family is None or family in r.families.split(",")]
            return [self._record(r, self._trained_on(s, r.id)) for r in rows]

    def get(self, ref: str | int) -> GeneratorRecord:
        """A generator version in the grammar of :mod:`zoo.refs` (an alias is a status)."""
        r = parse_ref(ref, "generator")
        with self.db.read() as s:
            q = select(m.Generator)
            if r.id is not None:
                q = q.where(m.Generator.id == r.id)
            else:
                q = q.where(m.Generator.name == r.name)
                if r.version is not None:
                    q = q.where(m.Generator.version == r.version)
                if r.alias is not None:
                    q = q.where(m.Generator.status == r.alias)
            row = s.scalars(q.order_by(m.Generator.version.desc())).first()
            if row is None:
                see = Hint("registry.generators()", "`zoo generators`")
                train = Hint("igpg.train_on_registry(registry, ...)", "`zoo train`")
                raise NotFoundError("generator", str(r), f"see {see}, or train one with {train}").hinting(
                    see, train
                )
            return self._record(row, self._trained_on(s, row.id))

    def set_status(self, generator_id: int, status: str) -> None:
        with self.db.write() as s:
            s.execute(update(m.Generator).where(m.Generator.id == generator_id).values(status=status))

    @staticmethod
    def _trained_on(s: Session, gid: int) -> list[int]:
        return sorted(
            s.scalars(
                select(m.GeneratorCheckpoint.checkpoint_id).where(m.GeneratorCheckpoint.generator_id == gid)
            ).all()
        )

    @staticmethod
    def _record(r: m.Generator, trained_on: Iterable[int]) -> GeneratorRecord:
        return GeneratorRecord(
            r.id,
            r.name,
            r.version,
            tuple(f for f in r.families.split(",") if f),
            r.sha256,
            r.config or {},
            r.metrics or {},
            tuple(trained_on),
            r.watermark,
            r.status,
            m.as_utc(r.created_at),
        )


__all__ = ["GENERATOR_STATUSES", "GeneratorRepository"]
