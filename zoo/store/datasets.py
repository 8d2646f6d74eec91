"""Datasets: their rows (name, size, classes, content fingerprint); vectors: :mod:`zoo.store.vectors`."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from zoo.errors import Hint, NotFoundError, ZooError
from zoo.records import DatasetRecord, DatasetRemoval
from zoo.store import models as m
from zoo.store.db import Database, retry
from zoo.validation import check_name


def dataset_record(r: m.Dataset) -> DatasetRecord:
    return DatasetRecord(
        r.id,
        r.name,
        r.description,
        r.num_classes,
        r.num_samples,
        r.fingerprint,
        m.as_utc(r.created_at),
        r.meta or {},
    )


DATASETS = Hint("registry.datasets()", "`zoo datasets list`")  # where to see the registered datasets


class DatasetRepository:
    """The ``datasets`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self) -> list[DatasetRecord]:
        with self.db.read() as s:
            return [dataset_record(r) for r in s.scalars(select(m.Dataset).order_by(m.Dataset.name)).all()]

    def get(self, name: str) -> DatasetRecord:
        with self.db.read() as s:
            row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
            if row is None:
                raise NotFoundError(
                    "dataset", name, f"see {DATASETS} for what is registered; register it first"
                ).hinting(DATASETS)
            return dataset_record(row)

    def row_for(self, s: Session, name: str) -> m.Dataset:
        """The row of dataset ``name``, made as a placeholder (known by name only) when there is none; the
        registration fills in the rest later."""
        row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
        if row is None:  # a dataset known by name only; registering it later fills in the rest
            self.db.lock_key(s, f"dataset:{check_name(name, 'dataset')}")  # as register_dataset does
            row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
        if row is None:
            row = m.Dataset(name=name, description="", meta={"placeholder": True})
            s.add(row)
            s.flush()
        return row

    def removal_impact(self, name: str) -> DatasetRemoval:
        """What removing dataset ``name`` would touch (nothing is changed)."""
        with self.db.read() as s:
            return self._impact(s, self._row(s, name))

    def remove(self, name: str, *, detach: bool = False, actor: str = "") -> DatasetRemoval:
        """Remove dataset ``name`` and its vectors. Refused while checkpoints are registered with it, unless
        ``detach``: then their dataset is cleared (recorded in their history) and they stay."""

        def txn() -> DatasetRemoval:
            with self.db.write() as s:
                self.db.lock_key(s, f"dataset:{name}")
                row = self._row(s, name)
                impact = self._impact(s, row)
                if impact.checkpoints and not detach:
                    shown = ", ".join(impact.checkpoints[:5]) + (
                        f" and {len(impact.checkpoints) - 5} more" if len(impact.checkpoints) > 5 else ""
                    )
                    err = ZooError(
                        f"dataset {name} is the dataset of {len(impact.checkpoints)} checkpoint(s) "
                        f"({shown}); "
                        f"nothing was removed. Pass detach=True to remove it and clear their dataset (the "
                        f"checkpoints stay), or remove those checkpoints first"
                    )
                    err.keywords = ("detach",)
                    raise err
                ids = s.scalars(select(m.Checkpoint.id).where(m.Checkpoint.dataset_id == row.id)).all()
                if ids:
                    s.execute(update(m.Checkpoint).where(m.Checkpoint.id.in_(ids)).values(dataset_id=None))
                    now = m.utcnow()
                    s.add_all(
                        m.CheckpointEvent(
                            checkpoint_id=cid,
                            action="dataset",
                            detail={"from": name, "to": None, "why": "dataset removed"},
                            actor=actor,
                            created_at=now,
                        )
                        for cid in ids
                    )
                s.execute(
                    delete(m.Embedding).where(
                        m.Embedding.subject == "dataset", m.Embedding.subject_key == name
                    )
                )
                s.execute(delete(m.Dataset).where(m.Dataset.id == row.id))
                return impact

        return retry(txn)

    def _row(self, s: Session, name: str) -> m.Dataset:
        row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
        if row is None:
            raise NotFoundError("dataset", name, f"see {DATASETS} for what is registered").hinting(DATASETS)
        return row

    def _impact(self, s: Session, row: m.Dataset) -> DatasetRemoval:
        refs = tuple(
            f"{n}:v{v}"
            for n, v in s.execute(
                select(m.Checkpoint.name, m.Checkpoint.version)
                .where(m.Checkpoint.dataset_id == row.id)
                .order_by(m.Checkpoint.id)
            ).all()
        )
        vectors = s.scalar(
            select(func.count()).where(m.Embedding.subject == "dataset", m.Embedding.subject_key == row.name)
        )
        return DatasetRemoval(dataset_record(row), refs, int(vectors or 0))


__all__ = ["DatasetRepository", "dataset_record"]
