"""Deprecated path of :mod:`zoo.retrieval` (dataset and architecture vectors, nearest-neighbour retrieval).

Every name this module had is re-exported from the package that now holds it; new code imports from
:mod:`zoo.retrieval`. Setting a name here (``monkeypatch.setattr(zoo.embeddings, "ANN_MIN_VECTORS", 2)``)
sets it in every :mod:`zoo.retrieval` module that uses it, as it did when the code lived here.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from zoo.encoders import get_text_encoder
from zoo.index import ANN_MIN_VECTORS
from zoo.retrieval import base, cache, indexes, ranking, records, refresh, search, vectors
from zoo.retrieval.base import (
    ENV_INDEX_DIR,
    DataLike,
    EncoderChoice,
    Match,
    Method,
    RegistryLike,
    index_dir,
)
from zoo.retrieval.base import invalidate as _invalidate
from zoo.retrieval.cache import TOKEN_TTL_S
from zoo.retrieval.indexes import build_index
from zoo.retrieval.indexes import pgvector_search as _pgvector_search
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
from zoo.retrieval.search import _query_vector, nearest
from zoo.retrieval.vectors import embed_arch, embeddings, get_embedding, register_dataset
from zoo.store.vectors import ARCH, DATASET, VectorRepository

# (session, subject, key, encoder id, version, fingerprint, vector): tests write rows
_upsert = VectorRepository._upsert
_MODULES = (base, cache, indexes, ranking, records, refresh, search, vectors)


class _Shim(types.ModuleType):
    """Forwards assignments to the :mod:`zoo.retrieval` modules that hold the name (settings, test hooks)."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        for module in _MODULES:
            if name in vars(module):
                setattr(module, name, value)


sys.modules[__name__].__class__ = _Shim

__all__ = [
    "ANN_MIN_VECTORS",
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
    "_invalidate",
    "_pgvector_search",
    "_query_vector",
    "_upsert",
    "break_ties",
    "build_index",
    "embed_arch",
    "embeddings",
    "get_embedding",
    "get_text_encoder",
    "index_dir",
    "lower_is_better",
    "nearest",
    "order_by_metric",
    "refresh_stale",
    "register_dataset",
    "tie_metric",
]
