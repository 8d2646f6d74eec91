"""What retrieval returns: :class:`Neighbor` (a ranked checkpoint), :class:`IndexInfo` and
:class:`RefreshReport`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.records import CheckpointRecord


@dataclass(frozen=True)
class Neighbor:
    """One retrieved checkpoint and why it ranks where it does."""

    checkpoint: CheckpointRecord
    similarity: float  # the ranking score: dataset similarity, blended with arch similarity when asked
    dataset: str  # the checkpoint's training dataset
    dataset_similarity: float  # cosine similarity of the query's and that dataset's vectors
    arch_similarity: float | None  # cosine similarity of the architecture texts' vectors (None: not used)
    encoder_id: str  # dataset encoder that made both vectors
    encoder_version: str
    method: str  # "exact", "usearch", "pgvector", or "name" (an exact dataset-name match, no vector yet)

    def __post_init__(self) -> None:  # a cosine of float32 unit vectors can round past 1 (1.0000001192...)
        for name in ("similarity", "dataset_similarity", "arch_similarity"):
            value = getattr(self, name)
            if value is not None and not -1.0 <= value <= 1.0:
                object.__setattr__(self, name, min(1.0, max(-1.0, value)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.ref,
            "checkpoint_id": self.checkpoint.id,
            "arch": self.checkpoint.arch.name,
            "similarity": self.similarity,
            "dataset": self.dataset,
            "dataset_similarity": self.dataset_similarity,
            "arch_similarity": self.arch_similarity,
            "encoder_id": self.encoder_id,
            "encoder_version": self.encoder_version,
            "method": self.method,
        }


@dataclass(frozen=True)
class IndexInfo:
    """The persisted nearest-neighbour index of one dataset encoder."""

    encoder_id: str
    encoder_version: str
    path: str
    count: int  # vectors in the index
    dim: int
    dtype: str  # how the index stores vectors ("f32", "f16", "i8")
    rebuilt: bool  # built (or extended) by this call, rather than already current


@dataclass(frozen=True)
class RefreshReport:
    """What :func:`refresh_stale` did."""

    datasets_embedded: tuple[str, ...]  # "dataset/encoder" pairs (re)computed
    datasets_current: int  # (dataset, encoder) pairs that were already current
    datasets_changed: tuple[str, ...]  # datasets whose source data changed since registration
    datasets_need_data: tuple[str, ...]  # stale or never embedded, and zoo cannot read their data again
    archs_embedded: int  # architecture vectors (re)computed
    archs_current: int
    indexes: tuple[IndexInfo, ...]  # persisted ANN indexes checked (rebuilt or not)
    skipped_encoders: tuple[str, ...]  # encoders left out, with the reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets_embedded": list(self.datasets_embedded),
            "datasets_current": self.datasets_current,
            "datasets_changed": list(self.datasets_changed),
            "datasets_need_data": list(self.datasets_need_data),
            "archs_embedded": self.archs_embedded,
            "archs_current": self.archs_current,
            "indexes": [i.__dict__ for i in self.indexes],
            "skipped_encoders": list(self.skipped_encoders),
        }
