"""Retrieval: dataset and architecture vectors in the registry, and nearest-neighbour search over them.

Service functions over a :class:`~zoo.registry.Registry` (any object of the :class:`RegistryLike` protocol):

- :func:`register_dataset` validates a dataset, stores its name, description, class count and content
  fingerprint, and its vector from every requested dataset encoder (:mod:`zoo.retrieval.vectors`).
- :func:`embed_arch` stores the text-encoder vector of an architecture's canonical description.
- :func:`nearest` ranks checkpoints of a compatible architecture by how similar their training dataset is
  to a query dataset, and, when asked, how similar their architecture is (:mod:`zoo.retrieval.search`); ties
  go by recorded metrics (:mod:`zoo.retrieval.ranking`).
- :func:`build_index` keeps the persisted HNSW index current (:mod:`zoo.retrieval.indexes`);
  :func:`refresh_stale` recomputes what is stale and brings the indexes up to date
  (:mod:`zoo.retrieval.refresh`).

Every vector is stored with its encoder's id and version and the fingerprint of what it encodes (the
dataset's content fingerprint; the sha256 of the architecture text). A vector is recomputed only when one
of those changes. Search is exact (NumPy) below :data:`~zoo.index.ANN_MIN_VECTORS` dataset vectors and
uses a persisted HNSW index (usearch) above; on PostgreSQL with the pgvector extension the database searches
(exactly, with an HNSW index from that size on; :mod:`zoo.store.pgvector`). The rows are read and written by
:class:`~zoo.store.vectors.VectorRepository`; what is cached in memory belongs to the registry instance
(:class:`~zoo.retrieval.cache.RetrievalCache`).

The names below are imported on first use (:func:`zoo.lazy_exports`): the registry keeps a
:class:`RetrievalCache` without loading the encoders (and torch) that searching and embedding need.
"""

from typing import TYPE_CHECKING

from zoo.lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports on first use
    from zoo.retrieval.base import (
        ENV_INDEX_DIR,
        DataLike,
        EncoderChoice,
        Match,
        Method,
        RegistryLike,
        index_dir,
    )
    from zoo.retrieval.cache import TOKEN_TTL_S, RetrievalCache
    from zoo.retrieval.indexes import build_index
    from zoo.retrieval.ranking import (
        TIE_METRICS,
        TIE_TOLERANCE,
        break_ties,
        lower_is_better,
        order_by_metric,
        tie_metric,
    )
    from zoo.retrieval.records import IndexInfo, Neighbor, RefreshReport
    from zoo.retrieval.refresh import refresh_stale
    from zoo.retrieval.search import by_name, nearest, why_none
    from zoo.retrieval.vectors import embed_arch, embeddings, get_embedding, register_dataset
    from zoo.store.vectors import ARCH, DATASET

_EXPORTS: dict[str, str] = {  # public name -> the module that defines it
    "DataLike": "zoo.retrieval.base",
    "ENV_INDEX_DIR": "zoo.retrieval.base",
    "EncoderChoice": "zoo.retrieval.base",
    "Match": "zoo.retrieval.base",
    "Method": "zoo.retrieval.base",
    "RegistryLike": "zoo.retrieval.base",
    "index_dir": "zoo.retrieval.base",
    "RetrievalCache": "zoo.retrieval.cache",
    "TOKEN_TTL_S": "zoo.retrieval.cache",
    "build_index": "zoo.retrieval.indexes",
    "TIE_METRICS": "zoo.retrieval.ranking",
    "TIE_TOLERANCE": "zoo.retrieval.ranking",
    "break_ties": "zoo.retrieval.ranking",
    "lower_is_better": "zoo.retrieval.ranking",
    "order_by_metric": "zoo.retrieval.ranking",
    "tie_metric": "zoo.retrieval.ranking",
    "IndexInfo": "zoo.retrieval.records",
    "Neighbor": "zoo.retrieval.records",
    "RefreshReport": "zoo.retrieval.records",
    "refresh_stale": "zoo.retrieval.refresh",
    "by_name": "zoo.retrieval.search",
    "nearest": "zoo.retrieval.search",
    "why_none": "zoo.retrieval.search",
    "embed_arch": "zoo.retrieval.vectors",
    "embeddings": "zoo.retrieval.vectors",
    "get_embedding": "zoo.retrieval.vectors",
    "register_dataset": "zoo.retrieval.vectors",
    "ARCH": "zoo.store.vectors",
    "DATASET": "zoo.store.vectors",
}

__all__ = [
    "ARCH",
    "DATASET",
    "ENV_INDEX_DIR",
    "TIE_METRICS",
    "TIE_TOLERANCE",
    "TOKEN_TTL_S",
    "DataLike",
    "EncoderChoice",
    "IndexInfo",
    "Match",
    "Method",
    "Neighbor",
    "RefreshReport",
    "RegistryLike",
    "RetrievalCache",
    "break_ties",
    "by_name",
    "build_index",
    "embed_arch",
    "embeddings",
    "get_embedding",
    "index_dir",
    "lower_is_better",
    "nearest",
    "order_by_metric",
    "refresh_stale",
    "register_dataset",
    "tie_metric",
    "why_none",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
