"""Vectors in the registry: dataset and architecture embeddings, the rows retrieval ranks, index settings.

:class:`VectorRepository` owns every session :mod:`zoo.embeddings` needs and hands out records, NumPy arrays
and tuples (never ORM rows). Vectors are stored as little-endian float32 bytes; a vector that changes is
replaced by a new row (a new id), so that an encoder's ``(count, max id)`` notices every change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zoo.errors import DuplicateError, Hint
from zoo.records import ArchSpec, DatasetRecord, EmbeddingRecord
from zoo.store import models as m
from zoo.store.datasets import dataset_record
from zoo.store.db import Database, retry

DATASET = "dataset"  # Embedding.subject of dataset vectors (subject_key: the dataset name)
ARCH = "arch"  # Embedding.subject of architecture vectors (subject_key: ArchSpec.key)
Compatible = list[tuple[int, str, str]]  # (checkpoint id, dataset name, arch key)
State = tuple[str, str]  # (encoder version, source fingerprint) of a stored vector


def to_bytes(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def embedding_record(row: m.Embedding) -> EmbeddingRecord:
    return EmbeddingRecord(
        row.id,
        row.subject,
        row.subject_key,
        row.encoder_id,
        row.encoder_version,
        row.source_fingerprint,
        from_bytes(row.vector),
        m.as_utc(row.created_at),
    )


@dataclass(frozen=True)
class DatasetData:
    """What a dataset registration stores besides its vectors."""

    fingerprint: str
    num_classes: int
    num_samples: int
    meta: dict[str, Any]


@dataclass(frozen=True)
class VectorTable:
    """Every current vector of one subject by one encoder version, row-aligned."""

    change: tuple[int, int]  # the encoder's change key when read (see VectorRepository.change_key)
    ids: np.ndarray  # (N,) embedding row ids
    names: tuple[str, ...]  # subject keys
    vectors: np.ndarray  # (N, dim) float32


@dataclass(frozen=True)
class IndexState:
    """The stored state of a persisted index, and what was added since (when it can be extended)."""

    token: tuple[int, int, str]  # (count, max id, newest created_at) of the vectors now
    state: dict[str, Any] | None  # what the settings row says about the index file
    appended: list[tuple[int, np.ndarray]] | None  # vectors added since, when nothing older changed


@dataclass(frozen=True)
class ScoringCandidates:
    """The checkpoints of one architecture, what they record and how their datasets embed."""

    checkpoints: list[tuple[int, str, str | None]]  # (id, name, dataset name or None)
    metrics: dict[int, dict[str, float]]  # id -> recorded metrics among those asked for
    vectors: dict[str, np.ndarray]  # dataset name -> its vector by the encoder version (when stored)


class VectorRepository:
    """The ``embeddings`` table (with the dataset rows registrations write, and ``settings`` of indexes)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- datasets -----------------------------------------------------------------------------------
    def dataset_vectors(self, name: str) -> tuple[DatasetRecord | None, dict[str, State]]:
        """Dataset ``name`` (None if unknown) and the state of its stored vectors by encoder id, one read."""
        with self.db.read() as s:
            row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
            existing = {
                e.encoder_id: (e.encoder_version, e.source_fingerprint)
                for e in s.scalars(
                    select(m.Embedding).where(m.Embedding.subject == DATASET, m.Embedding.subject_key == name)
                ).all()
            }
            return (dataset_record(row) if row is not None else None), existing

    def save_dataset(
        self,
        name: str,
        data: DatasetData,
        *,
        description: str | None,
        replace: bool,
        vectors: Mapping[str, tuple[str, np.ndarray]],
    ) -> DatasetRecord:
        """Create or update dataset ``name`` and store ``vectors`` (``{encoder id: (version, vector)}``) in
        one transaction; refused when another process registered different data meanwhile (unless
        ``replace``)."""
        fp = data.fingerprint

        def txn() -> DatasetRecord:
            with self.db.write() as s:
                self.db.lock_key(s, f"dataset:{name}")
                row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
                if (
                    row is not None
                    and row.fingerprint
                    and row.fingerprint != fp
                    and not replace
                    and not (row.meta or {}).get("placeholder")
                ):  # a concurrent registration got there first
                    replacing = Hint("pass replace=True", "pass --replace")
                    raise DuplicateError(
                        "dataset",
                        name,
                        "another process registered different data under this "
                        f"name meanwhile; {replacing} to replace it, or choose another name",
                    ).hinting(replacing)
                if row is None:
                    row = m.Dataset(name=name)
                    s.add(row)
                row.description = description if description is not None else (row.description or "")
                row.num_classes, row.num_samples, row.fingerprint, row.meta = (
                    data.num_classes,
                    data.num_samples,
                    fp,
                    data.meta,
                )
                for enc_id, (version, vec) in vectors.items():
                    self._upsert(s, DATASET, name, enc_id, version, fp, vec)
                s.flush()
                return dataset_record(row)

        return retry(txn)

    def dataset_states(self) -> tuple[list[tuple[str, str, dict[str, Any]]], dict[tuple[str, str], State]]:
        """(every dataset as ``(name, fingerprint, meta)`` by name, ``{(name, encoder id): state}``), in one
        read."""
        with self.db.read() as s:
            rows = [
                (r.name, r.fingerprint, dict(r.meta or {}))
                for r in s.scalars(select(m.Dataset).order_by(m.Dataset.name))
            ]
            stored: dict[tuple[str, str], State] = {
                (e.subject_key, e.encoder_id): (e.encoder_version, e.source_fingerprint)
                for e in s.execute(
                    select(
                        m.Embedding.subject_key,
                        m.Embedding.encoder_id,
                        m.Embedding.encoder_version,
                        m.Embedding.source_fingerprint,
                    ).where(m.Embedding.subject == DATASET)
                ).all()
            }
        return rows, stored

    def dataset_vector(
        self, name: str, encoder_id: str
    ) -> tuple[DatasetRecord | None, EmbeddingRecord | None]:
        """Dataset ``name`` (None if unknown) and its vector by ``encoder_id`` (None if not stored), one
        read."""
        with self.db.read() as s:
            row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
            if row is None:
                return None, None
            emb = s.scalars(
                select(m.Embedding).where(
                    m.Embedding.subject == DATASET,
                    m.Embedding.subject_key == name,
                    m.Embedding.encoder_id == encoder_id,
                )
            ).first()
            return dataset_record(row), (embedding_record(emb) if emb is not None else None)

    # -- any vector ---------------------------------------------------------------------------------
    def get(self, subject: str, key: str, encoder_id: str) -> EmbeddingRecord | None:
        with self.db.read() as s:
            row = s.scalars(
                select(m.Embedding).where(
                    m.Embedding.subject == subject,
                    m.Embedding.subject_key == key,
                    m.Embedding.encoder_id == encoder_id,
                )
            ).first()
            return embedding_record(row) if row is not None else None

    def list(self, *, subject: str | None = None, encoder_id: str | None = None) -> list[EmbeddingRecord]:
        q = select(m.Embedding)
        if subject:
            q = q.where(m.Embedding.subject == subject)
        if encoder_id:
            q = q.where(m.Embedding.encoder_id == encoder_id)
        with self.db.read() as s:
            return [embedding_record(r) for r in s.scalars(q.order_by(m.Embedding.id)).all()]

    # -- architectures ------------------------------------------------------------------------------
    def arch_vectors(self, keys: Sequence[str], encoder_id: str) -> dict[str, tuple[State, np.ndarray]]:
        """Stored text vectors of architecture ``keys`` by ``encoder_id``: ``{key: (state, vector)}``."""
        out: dict[str, tuple[State, np.ndarray]] = {}
        with self.db.read() as s:
            for chunk in (keys[i : i + 500] for i in range(0, len(keys), 500)):
                for row in s.scalars(
                    select(m.Embedding).where(
                        m.Embedding.subject == ARCH,
                        m.Embedding.encoder_id == encoder_id,
                        m.Embedding.subject_key.in_(chunk),
                    )
                ).all():
                    out[row.subject_key] = (
                        (row.encoder_version, row.source_fingerprint),
                        from_bytes(row.vector),
                    )
        return out

    def arch_states(self, encoder_id: str) -> dict[str, State]:
        """``{arch key: state}`` of every stored architecture vector by ``encoder_id``."""
        with self.db.read() as s:
            return {
                k: (v, fp)
                for k, v, fp in s.execute(
                    select(
                        m.Embedding.subject_key, m.Embedding.encoder_version, m.Embedding.source_fingerprint
                    ).where(m.Embedding.subject == ARCH, m.Embedding.encoder_id == encoder_id)
                ).all()
            }

    def save_arch_vectors(
        self,
        vectors: Mapping[str, np.ndarray],
        encoder_id: str,
        version: str,
        fingerprints: Mapping[str, str],
    ) -> None:
        def txn() -> None:
            with self.db.write() as s:
                for k, v in vectors.items():
                    self.db.lock_key(s, f"arch:{k}")
                    self._upsert(s, ARCH, k, encoder_id, version, fingerprints[k], v)

        retry(txn)

    def arch_texts(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """``{arch key: description}`` of registered checkpoints (of ``keys``, or all)."""
        q = select(m.Checkpoint.arch_key, m.Checkpoint.arch_text)
        if keys is not None:
            q = q.where(m.Checkpoint.arch_key.in_(list(keys)))
        with self.db.read() as s:
            return dict(s.execute(q.distinct()).all())  # type: ignore[arg-type]

    # -- tables, tokens and index settings ----------------------------------------------------------
    def change_key(self, encoder_id: str) -> tuple[int, int]:
        """(rows, max id) of an encoder's vectors: an index-only query; changes whenever a vector is added,
        replaced or removed."""
        with self.db.read() as s:
            return self._change_key(s, encoder_id)

    @staticmethod
    def _change_key(s: Session, encoder_id: str) -> tuple[int, int]:
        count, max_id = s.execute(
            select(func.count(), func.max(m.Embedding.id)).where(m.Embedding.encoder_id == encoder_id)
        ).one()
        return int(count or 0), int(max_id or 0)

    def token(self, subject: str, encoder_id: str, version: str) -> tuple[int, int, str]:
        with self.db.read() as s:
            return self._token(s, subject, encoder_id, version)

    @staticmethod
    def _token(s: Session, subject: str, encoder_id: str, version: str) -> tuple[int, int, str]:
        count, max_id, max_created = s.execute(
            select(func.count(), func.max(m.Embedding.id), func.max(m.Embedding.created_at)).where(
                m.Embedding.subject == subject,
                m.Embedding.encoder_id == encoder_id,
                m.Embedding.encoder_version == version,
            )
        ).one()
        return int(count or 0), int(max_id or 0), str(max_created or "")

    def table(self, subject: str, encoder_id: str, version: str) -> VectorTable:
        """Every current vector of ``subject`` by the encoder version, with the encoder's change key, in one
        read."""
        with self.db.read() as s:
            change = self._change_key(s, encoder_id)
            rows = s.execute(
                select(m.Embedding.id, m.Embedding.subject_key, m.Embedding.vector)
                .where(
                    m.Embedding.subject == subject,
                    m.Embedding.encoder_id == encoder_id,
                    m.Embedding.encoder_version == version,
                )
                .order_by(m.Embedding.id)
            ).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        dim = len(rows[0][2]) // 4 if rows else 0
        mat = (
            np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4")
            .reshape(len(rows), dim)
            .astype(np.float32)
            if rows
            else np.zeros((0, 0), dtype=np.float32)
        )
        return VectorTable(change, ids, tuple(r[1] for r in rows), mat)

    def index_state(
        self,
        key: str,
        subject: str,
        encoder_id: str,
        version: str,
        extendable: Callable[[tuple[int, int, str], dict[str, Any]], bool],
    ) -> IndexState:
        """The vectors' token and the index settings row ``key``, in one read; when
        ``extendable(token, state)``, also the vectors added since the index was written (None if an older
        one changed meanwhile)."""
        with self.db.read() as s:
            token = self._token(s, subject, encoder_id, version)
            setting = s.get(m.Setting, key)
            state = json.loads(setting.value) if setting is not None else None
            appended: list[tuple[int, np.ndarray]] | None = None
            if state and extendable(token, state):
                old_count, old_max_id, old_max_created = state["token"]
                newer = s.execute(
                    select(m.Embedding.id, m.Embedding.vector).where(
                        m.Embedding.subject == subject,
                        m.Embedding.encoder_id == encoder_id,
                        m.Embedding.encoder_version == version,
                        m.Embedding.id > old_max_id,
                    )
                ).all()
                older_changed = s.scalar(
                    select(func.count()).where(
                        m.Embedding.subject == subject,
                        m.Embedding.encoder_id == encoder_id,
                        m.Embedding.encoder_version == version,
                        m.Embedding.id <= old_max_id,
                        m.Embedding.created_at > old_max_created,
                    )
                )
                if not older_changed and len(newer) == token[0] - old_count:
                    appended = [(int(i), from_bytes(v)) for i, v in newer]
        return IndexState(token, state, appended)

    def index_files(self) -> set[str]:
        """File names of every persisted index the settings point at (the live ones)."""
        with self.db.read() as s:
            return {
                json.loads(v).get("file")
                for v in s.scalars(select(m.Setting.value).where(m.Setting.key.like("index:%"))).all()
            }

    def save_setting(self, key: str, value: dict[str, Any]) -> None:
        def txn() -> None:
            with self.db.write() as s:
                self.db.lock_key(s, key)
                row = s.get(m.Setting, key)
                if row is None:
                    s.add(m.Setting(key=key, value=json.dumps(value)))
                else:
                    row.value, row.updated_at = json.dumps(value), m.utcnow()

        retry(txn)

    # -- candidates ---------------------------------------------------------------------------------
    def rescore(
        self, ids: Iterable[int], version: str, spec: ArchSpec | None, match: str, latest_only: bool
    ) -> tuple[dict[str, np.ndarray], Compatible]:
        """The dataset vectors of embedding rows ``ids`` (of encoder ``version``) by dataset name, and the
        checkpoints trained on those datasets that fit ``spec`` under ``match``, in one read."""
        with self.db.read() as s:
            rows = s.execute(
                select(m.Embedding.subject_key, m.Embedding.vector).where(
                    m.Embedding.id.in_([int(x) for x in ids]), m.Embedding.encoder_version == version
                )
            ).all()
            vectors = {name: from_bytes(vec) for name, vec in rows}
            return vectors, self._compatible(s, spec, match, list(vectors), latest_only)

    def compatible_if_changed(
        self, spec: ArchSpec | None, match: str, latest_only: bool, known: tuple[Any, ...] | None
    ) -> tuple[tuple[Any, ...], Compatible | None]:
        """(checkpoints-and-datasets token, every compatible checkpoint, or None when the token is
        ``known``)."""
        with self.db.read() as s:
            token = tuple(s.execute(select(func.count(), func.max(m.Checkpoint.id))).one()) + tuple(
                s.execute(select(func.count(), func.max(m.Dataset.id))).one()
            )
            if known is not None and token == known:
                return token, None
            return token, self._compatible(s, spec, match, None, latest_only)

    @staticmethod
    def _compatible(
        s: Session, spec: ArchSpec | None, match: str, datasets: Sequence[str] | None, latest_only: bool
    ) -> Compatible:
        """(checkpoint id, dataset name, arch key) of checkpoints that fit ``spec`` under ``match``."""
        q = select(m.Checkpoint.id, m.Dataset.name, m.Checkpoint.arch_key).join(
            m.Dataset, m.Dataset.id == m.Checkpoint.dataset_id
        )
        if spec is not None and match == "exact":
            q = q.where(m.Checkpoint.arch_key == spec.key)
        elif spec is not None and match == "family":
            q = q.where(m.Checkpoint.family == spec.family)
        if latest_only:
            newest = (
                select(m.Checkpoint.name, func.max(m.Checkpoint.version).label("v"))
                .group_by(m.Checkpoint.name)
                .subquery()
            )
            q = q.join(newest, (newest.c.name == m.Checkpoint.name) & (newest.c.v == m.Checkpoint.version))
        if datasets is None:
            return [(int(r[0]), r[1], r[2]) for r in s.execute(q).all()]
        rows: Compatible = []
        names = list(datasets)
        for chunk in (names[i : i + 500] for i in range(0, len(names), 500)):
            rows += [(int(r[0]), r[1], r[2]) for r in s.execute(q.where(m.Dataset.name.in_(chunk))).all()]
        return rows

    def scoring_candidates(
        self, spec: ArchSpec, metric_names: Sequence[str], encoder_id: str, version: str
    ) -> ScoringCandidates:
        """Every checkpoint of exactly ``spec`` with the ``metric_names`` it records and the vectors of their
        datasets by the encoder version, in one read."""
        with self.db.read() as s:
            rows = [
                (int(cid), name, ds)
                for cid, name, ds in s.execute(
                    select(m.Checkpoint.id, m.Checkpoint.name, m.Dataset.name)
                    .outerjoin(m.Dataset, m.Dataset.id == m.Checkpoint.dataset_id)
                    .where(m.Checkpoint.family == spec.family, m.Checkpoint.arch_key == spec.key)
                ).all()
            ]
            metrics: dict[int, dict[str, float]] = {r[0]: {} for r in rows}
            for cid, key, value in s.execute(
                select(m.Metric.checkpoint_id, m.Metric.key, m.Metric.value)
                .join(m.Checkpoint, m.Checkpoint.id == m.Metric.checkpoint_id)
                .where(
                    m.Checkpoint.family == spec.family,
                    m.Checkpoint.arch_key == spec.key,
                    m.Metric.key.in_(list(metric_names)),
                )
            ).all():
                metrics[int(cid)][key] = float(value)
            datasets = sorted({r[2] for r in rows if r[2] is not None})
            vectors: dict[str, np.ndarray] = {}
            for chunk in (datasets[i : i + 500] for i in range(0, len(datasets), 500)):
                for key, vec in s.execute(
                    select(m.Embedding.subject_key, m.Embedding.vector).where(
                        m.Embedding.subject == DATASET,
                        m.Embedding.encoder_id == encoder_id,
                        m.Embedding.encoder_version == version,
                        m.Embedding.subject_key.in_(chunk),
                    )
                ).all():
                    vectors[key] = from_bytes(vec)
        return ScoringCandidates(rows, metrics, vectors)

    def recorded_metrics(self, ids: Sequence[int]) -> dict[int, dict[str, float]]:
        """Checkpoint id -> its recorded metrics, in one read per 500 ids."""
        out: dict[int, dict[str, float]] = {int(i): {} for i in ids}
        with self.db.read() as s:
            for chunk in (list(ids[i : i + 500]) for i in range(0, len(ids), 500)):
                for cid, key, value in s.execute(
                    select(m.Metric.checkpoint_id, m.Metric.key, m.Metric.value).where(
                        m.Metric.checkpoint_id.in_([int(c) for c in chunk])
                    )
                ).all():
                    out[int(cid)][key] = float(value)
        return out

    @staticmethod
    def _upsert(
        s: Session, subject: str, key: str, encoder_id: str, version: str, fingerprint: str, vec: np.ndarray
    ) -> m.Embedding:
        row = s.scalars(
            select(m.Embedding).where(
                m.Embedding.subject == subject,
                m.Embedding.subject_key == key,
                m.Embedding.encoder_id == encoder_id,
            )
        ).first()
        if row is not None:  # replaced by a new row (a new id), so that (count, max id) notices the change
            s.delete(row)
            s.flush()
        row = m.Embedding(
            subject=subject,
            subject_key=key,
            encoder_id=encoder_id,
            encoder_version=version,
            source_fingerprint=fingerprint,
            dim=int(vec.shape[0]),
            vector=to_bytes(vec),
        )
        s.add(row)
        s.flush()
        return row


__all__ = [
    "ARCH",
    "DATASET",
    "DatasetData",
    "IndexState",
    "ScoringCandidates",
    "VectorRepository",
    "VectorTable",
    "embedding_record",
    "from_bytes",
    "to_bytes",
]
