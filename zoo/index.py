"""Nearest-neighbour indexes over unit vectors (cosine similarity = inner product).

- :class:`ExactIndex`: brute force with NumPy/BLAS; exact, no build step. The right choice for small
  registries (up to about :data:`ANN_MIN_VECTORS` vectors, where a query still takes a few milliseconds).
- :class:`USearchIndex`: an HNSW graph (the ``usearch`` library), persisted to one file and memory-mapped
  on open; approximate, fast at any size.
- pgvector: searching inside PostgreSQL is the job of the store (``zoo.store.pgvector``, used by
  ``zoo.retrieval``).

All indexes map integer keys (the registry's embedding row ids) to vectors and answer
``search(queries, k) -> SearchHits`` with similarities in descending order.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.atomic import atomic_write
from zoo.errors import ConfigError, ZooError

log = logging.getLogger(__name__)

# below this exact search is used: it stays within a few ms (bench/bench_retrieval.py)
ANN_MIN_VECTORS = 5_000
HNSW_CONNECTIVITY = 16  # graph degree M
HNSW_EXPANSION_ADD = 64  # efConstruction (128: ~2x slower builds, no recall gain measured)
HNSW_EXPANSION_SEARCH = 64  # ef at query time up to 200k vectors (raised to k when k is larger)
# ef above 200k vectors: at 1M recall@10 is 0.83 at ef=64, 0.94 at 256, 0.96 at 512
HNSW_EXPANSION_SEARCH_LARGE = 512


def default_expansion_search(n: int) -> int:
    """The query-time ef that keeps recall@10 at or above 0.95 for ``n`` vectors
    (bench/bench_retrieval.py)."""
    return HNSW_EXPANSION_SEARCH if n <= 200_000 else HNSW_EXPANSION_SEARCH_LARGE


@dataclass(frozen=True, eq=False)
class SearchHits:
    """Results of a search: ``keys`` and ``similarities`` of shape ``(Q, k)`` (or ``(k,)`` for one query).

    Missing results (fewer than ``k`` vectors) have key -1 and similarity -inf.
    """

    keys: np.ndarray  # int64
    similarities: np.ndarray  # float32, descending along the last axis
    method: str = field(default="exact")  # "exact", "usearch" or "pgvector"


def _as_queries(queries: np.ndarray, dim: int) -> tuple[np.ndarray, bool]:
    q = np.asarray(queries, dtype=np.float32)
    single = q.ndim == 1
    q = q[None, :] if single else q
    if q.ndim != 2 or q.shape[1] != dim:
        raise ZooError(f"query of shape {tuple(np.shape(queries))} does not match the index dimension {dim}")
    return np.ascontiguousarray(q), single


class VectorIndex(ABC):
    """A set of (key, unit vector) pairs answering top-k inner-product queries."""

    kind: str  # "exact", "usearch", ...

    @property
    @abstractmethod
    def dim(self) -> int:
        """Vector length."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of vectors held."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> SearchHits:
        """The ``k`` most similar vectors to each query (``(D,)`` or ``(Q, D)``)."""


class ExactIndex(VectorIndex):
    """Brute-force inner product over a float32 matrix: exact results, no build cost."""

    kind = "exact"

    def __init__(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.keys = np.asarray(keys, dtype=np.int64)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, D)
        if self.vectors.ndim != 2 or len(self.keys) != self.vectors.shape[0]:
            raise ZooError(f"{len(self.keys)} keys for vectors of shape {self.vectors.shape}")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """Similarity of one query to every vector, shape ``(N,)``."""
        q, _ = _as_queries(query, self.dim)
        return self.vectors @ q[0]

    def search(self, queries: np.ndarray, k: int) -> SearchHits:
        q, single = _as_queries(queries, self.dim)
        n = len(self)
        kk = min(k, n)
        keys = np.full((q.shape[0], k), -1, dtype=np.int64)
        sims = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        if kk > 0:
            s = q @ self.vectors.T  # (Q, N)
            part = (
                np.argpartition(-s, kk - 1, axis=1)[:, :kk]
                if kk < n
                else np.tile(np.arange(n), (q.shape[0], 1))
            )
            top = np.take_along_axis(s, part, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            idx = np.take_along_axis(part, order, axis=1)
            keys[:, :kk] = self.keys[idx]
            sims[:, :kk] = np.take_along_axis(s, idx, axis=1)
        return SearchHits(keys[0] if single else keys, sims[0] if single else sims, "exact")


class USearchIndex(VectorIndex):
    """An HNSW index (usearch) with inner-product metric, saved to and memory-mapped from one file.

    ``dtype`` is how vectors are stored inside the index: ``"f32"`` (exact vectors), ``"f16"`` (half the
    memory, 2.5x faster builds, recall@10 0.999 in bench/bench_retrieval.py; the default) or ``"i8"`` (faster
    still, recall drops to ~0.86). Similarities from an f16/i8 index are approximate; ``zoo.embeddings``
    rescores the hits with the stored float32 vectors.
    """

    kind = "usearch"

    def __init__(self, index: object) -> None:
        self._index = index

    @classmethod
    def build(
        cls,
        keys: np.ndarray,
        vectors: np.ndarray,
        *,
        dtype: str = "f16",
        connectivity: int = HNSW_CONNECTIVITY,
        expansion_add: int = HNSW_EXPANSION_ADD,
        expansion_search: int | None = None,
        threads: int = 0,
    ) -> "USearchIndex":
        """A new index over ``vectors`` (``(N, D)``, unit rows) under integer ``keys``."""
        from usearch.index import Index

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ef = expansion_search if expansion_search is not None else default_expansion_search(len(vectors))
        index = Index(
            ndim=int(vectors.shape[1]),
            metric="ip",
            dtype=dtype,
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=ef,
        )
        if len(vectors):
            index.add(np.asarray(keys, dtype=np.uint64), vectors, threads=threads)
        return cls(index)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, view: bool = True, expansion_search: int | None = None
    ) -> "USearchIndex":
        """An index saved by :meth:`save`; ``view`` memory-maps it instead of reading it into memory."""
        from usearch.index import Index

        if not Path(path).is_file():
            raise ConfigError(
                f"nearest-neighbour index {path} does not exist; rebuild it (zoo.embeddings.build_index)"
            )
        index = Index.restore(str(path), view=view)
        if index is None:
            raise ConfigError(
                f"{path} is not a usearch index; delete it and rebuild (zoo.embeddings.build_index)"
            )
        index.expansion_search = (
            expansion_search if expansion_search is not None else default_expansion_search(len(index))
        )
        return cls(index)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` through a temporary file renamed into place."""
        with atomic_write(path) as tmp:
            self._index.save(str(tmp))  # type: ignore[attr-defined]

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (an index opened with ``view=True`` is read-only: open it with ``view=False``)."""
        self._index.add(np.asarray(keys, dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32))  # type: ignore[attr-defined]

    @property
    def dim(self) -> int:
        return int(self._index.ndim)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return int(self._index.size)  # type: ignore[attr-defined]

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search)  # type: ignore[attr-defined]

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._index.expansion_search = int(value)  # type: ignore[attr-defined]

    def search(self, queries: np.ndarray, k: int) -> SearchHits:
        q, single = _as_queries(queries, self.dim)
        keys = np.full((q.shape[0], k), -1, dtype=np.int64)
        sims = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        if len(self) and k > 0:
            ef = self.expansion_search
            if k > ef:
                self.expansion_search = k
            try:
                res = self._index.search(q, k)  # type: ignore[attr-defined]
            finally:
                if k > ef:
                    self.expansion_search = ef
            rk = np.atleast_2d(np.asarray(res.keys))
            rd = np.atleast_2d(np.asarray(res.distances, dtype=np.float32))
            counts = np.atleast_1d(np.asarray(res.counts if hasattr(res, "counts") else [rk.shape[1]]))
            for i in range(q.shape[0]):
                c = int(counts[i])
                keys[i, :c] = rk[i, :c].astype(np.int64)
                sims[i, :c] = 1.0 - rd[i, :c]
        return SearchHits(keys[0] if single else keys, sims[0] if single else sims, "usearch")


__all__ = [
    "ANN_MIN_VECTORS",
    "default_expansion_search",
    "ExactIndex",
    "SearchHits",
    "USearchIndex",
    "VectorIndex",
]
