"""What the retrieval modules share: the registry protocol they take, argument types and small helpers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from zoo.encoders import (
    DatasetEncoder,
    TextEncoder,
    dataset_encoders,
    get_dataset_encoder,
    unavailable_reason,
)
from zoo.errors import ZooError
from zoo.records import CheckpointRecord
from zoo.retrieval.cache import RetrievalCache
from zoo.store.blobs import BlobStore
from zoo.store.db import Database
from zoo.store.repositories import Repositories

ENV_INDEX_DIR = "ZOO_INDEX_DIR"
Match = Literal["exact", "family", "any"]
Method = Literal["auto", "exact", "ann", "pgvector"]
# what zoo.datasets.as_dataset reads (ImageDataset, (images, labels), torch Dataset, path, name)
DataLike = Any
EncoderChoice = Iterable[str | DatasetEncoder] | str | DatasetEncoder | None


class RegistryLike(Protocol):
    """What these functions use of a :class:`~zoo.registry.Registry` (a protocol, so that this module never
    imports the registry: the registry imports it)."""

    @property
    def url(self) -> str: ...

    @property
    def db(self) -> Database: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def repos(self) -> Repositories: ...

    def get_many(self, ids: Iterable[int]) -> list[CheckpointRecord]: ...

    @property
    def retrieval_cache(self) -> RetrievalCache: ...


def text_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_vector(vec: np.ndarray, encoder: DatasetEncoder | TextEncoder, what: str) -> np.ndarray:
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    if not np.isfinite(v).all() or not v.any():
        raise ZooError(
            f"encoder {encoder.id!r} returned a zero or non-finite vector for {what}; the encoder is broken"
        )
    return v / np.linalg.norm(v)


def current(state: tuple[str, str] | None, version: str, fingerprint: str) -> bool:
    """Whether a stored vector's ``(encoder version, source fingerprint)`` is current."""
    return state is not None and state == (version, fingerprint)


def resolve_encoders(encoders: EncoderChoice) -> tuple[list[DatasetEncoder], list[str]]:
    """(encoders to use, "id: reason" for registered ones left out because they cannot run here)."""
    if encoders is None:
        out, skipped = [], []
        for enc in dataset_encoders().values():
            if not getattr(enc, "embed_by_default", True):  # opt-in encoders run only when named
                continue
            reason = unavailable_reason(enc)
            (skipped.append(f"{enc.id}: {reason}") if reason else out.append(enc))
        return out, skipped
    if isinstance(encoders, (str, DatasetEncoder)) or hasattr(encoders, "embed"):
        encoders = [encoders]  # type: ignore[list-item]
    return [get_dataset_encoder(e) for e in encoders], []  # type: ignore[union-attr]


def index_dir(registry: RegistryLike) -> Path:
    """Where persisted indexes live: ``$ZOO_INDEX_DIR``, or ``<name>.indexes`` beside the blob store."""
    env = os.environ.get(ENV_INDEX_DIR)
    return Path(env) if env else registry.blobs.root.with_suffix(".indexes")


def invalidate(registry: RegistryLike) -> None:
    """Forget cached table states of ``registry`` (after it wrote vectors)."""
    registry.retrieval_cache.invalidate()


def cached_change(registry: RegistryLike, encoder_id: str) -> tuple[int, int]:
    """The encoder's change key (:meth:`~zoo.store.vectors.VectorRepository.change_key`), re-read at most
    every :data:`~zoo.retrieval.cache.TOKEN_TTL_S` seconds: vectors written by other processes become
    searchable within that time; this registry's own writes count at once."""
    return registry.retrieval_cache.change_of(encoder_id, registry.repos.vectors.change_key)
