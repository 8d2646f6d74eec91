"""Datasets: their rows (name, size, classes, content fingerprint); vectors: :mod:`zoo.store.vectors`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from zoo.errors import NotFoundError
from zoo.records import DatasetRecord
from zoo.store import models as m
from zoo.store.db import Database
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
                raise NotFoundError("dataset", name, "register it first")
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


__all__ = ["DatasetRepository", "dataset_record"]
