"""Vector tables and persisted indexes: the exact table of an encoder's vectors, the HNSW index file
(:func:`build_index`) and searching inside PostgreSQL with pgvector (:func:`pgvector_search`)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from zoo.encoders import (
    DatasetEncoder,
    get_dataset_encoder,
)
from zoo.index import ANN_MIN_VECTORS, ExactIndex, SearchHits, USearchIndex
from zoo.retrieval.base import (
    RegistryLike,
    cached_change,
    index_dir,
)
from zoo.retrieval.cache import Table
from zoo.retrieval.records import IndexInfo
from zoo.store import pgvector
from zoo.store.vectors import DATASET, VectorTable

log = logging.getLogger(__name__)


def load_table(registry: RegistryLike, subject: str, encoder_id: str, version: str) -> Table:
    """Every current vector of ``subject`` by the encoder, cached by the registry until the rows change."""
    cache = registry.retrieval_cache
    cache_key = (subject, encoder_id, version)
    change = cached_change(registry, encoder_id)
    table = cache.tables.get(cache_key)
    if table is not None and table.token == change:
        return table
    read: VectorTable = registry.repos.vectors.table(subject, encoder_id, version)
    change = read.change
    table = Table(
        change,
        read.ids,
        read.names,
        {n: i for i, n in enumerate(read.names)},
        ExactIndex(read.ids, read.vectors),
    )
    with cache.lock:
        cache.tables[cache_key] = table
    cache.note_change(encoder_id, change)
    return table


def _setting_key(subject: str, encoder_id: str) -> str:
    return f"index:{subject}:{encoder_id}"


def build_index(
    registry: RegistryLike,
    encoder: str | DatasetEncoder | None = None,
    *,
    force: bool = False,
    dtype: str = "f16",
) -> IndexInfo:
    """Bring the persisted HNSW index of the encoder's dataset vectors up to date, and describe it.

    The index file lives in :func:`index_dir`; its state (file, encoder version, row count, newest row) is
    kept in the registry's ``settings`` table under ``index:dataset:<encoder id>``. An index that only
    lacks newly added vectors is extended; one whose vectors changed (re-embedded, removed, a new encoder
    version) is rebuilt; ``force`` always rebuilds. Files are written under a new name and swapped in.
    """
    enc = get_dataset_encoder(encoder)
    version = enc.version
    key = _setting_key(DATASET, enc.id)
    directory = index_dir(registry)

    def file_of(state: dict[str, Any]) -> Path:
        return directory / state["file"]

    def is_current(token: tuple[int, int, str], state: dict[str, Any]) -> bool:
        return (
            not force
            and state["version"] == version
            and tuple(state["token"]) == token
            and file_of(state).is_file()
        )

    def extendable(token: tuple[int, int, str], state: dict[str, Any]) -> bool:
        return (
            not is_current(token, state)
            and not force
            and state["version"] == version
            and state["dtype"] == dtype
            and file_of(state).is_file()
        )

    found = registry.repos.vectors.index_state(key, DATASET, enc.id, version, extendable)
    token, state, appended = found.token, found.state, found.appended
    old_path = file_of(state) if state else None
    if state and is_current(token, state):
        return IndexInfo(enc.id, version, str(old_path), token[0], state["dim"], state["dtype"], False)
    if appended is not None and old_path is not None:
        index = USearchIndex.open(old_path, view=False)
        if appended:
            index.add(np.array([a[0] for a in appended]), np.stack([a[1] for a in appended]))
        how = f"extended by {len(appended)}"
    else:
        table = load_table(registry, DATASET, enc.id, version)
        index = USearchIndex.build(table.ids, table.index.vectors, dtype=dtype)
        how = f"built over {len(table.ids)}"
    path = directory / f"{DATASET}-{enc.id}-{uuid.uuid4().hex[:12]}.usearch"
    index.save(path)
    new_state = {
        "file": path.name,
        "version": version,
        "token": list(token),
        "dim": index.dim,
        "dtype": dtype,
    }

    registry.repos.vectors.save_setting(key, new_state)
    if old_path is not None and old_path != path:
        old_path.unlink(missing_ok=True)  # an open memory map keeps working on POSIX
    with registry.retrieval_cache.lock:
        registry.retrieval_cache.ann_files[str(path)] = index
    log.info("nearest-neighbour index for %s@%s %s vectors: %s", enc.id, version, how, path)
    return IndexInfo(enc.id, version, str(path), len(index), index.dim, dtype, True)


def ann(registry: RegistryLike, enc: DatasetEncoder, version: str) -> USearchIndex:
    """The encoder's persisted HNSW index, brought up to date when its vectors changed, opened once."""
    cache = registry.retrieval_cache
    key = (enc.id, version)
    change = cached_change(registry, enc.id)
    hit = cache.ann_current.get(key)
    if hit is not None and hit[0] == change:
        return hit[1]
    info = build_index(registry, enc)
    with cache.lock:
        index = cache.ann_files.get(info.path)
    if index is None:
        index = USearchIndex.open(info.path, view=True)
        with cache.lock:
            cache.ann_files[info.path] = index
    with cache.lock:
        cache.ann_current[key] = (change, index)
    return index


def pgvector_search(
    registry: RegistryLike, enc: DatasetEncoder, query: np.ndarray, k: int
) -> SearchHits | None:
    """The ``k`` dataset vectors of ``enc`` nearest to ``query``, found by PostgreSQL with pgvector; None
    where pgvector is not usable (not PostgreSQL, extension missing, ``ZOO_PGVECTOR=0``). See
    :mod:`zoo.store.pgvector`.

    Vectors without an in-database copy yet are copied first (only when this registry sees the encoder's
    vectors changed). From :data:`~zoo.index.ANN_MIN_VECTORS` vectors on, an HNSW index answers.
    """
    if not pgvector.usable(registry.db):
        return None
    version = enc.version
    change = cached_change(registry, enc.id)
    pgvector.sync(registry.db, DATASET, enc.id, version, token=change)
    checked = registry.retrieval_cache.hnsw_checked  # dims whose HNSW index this registry made sure of
    if change[0] >= ANN_MIN_VECTORS and int(query.shape[0]) not in checked:
        pgvector.ensure_hnsw(registry.db, int(query.shape[0]))
        checked.add(int(query.shape[0]))
    ids, sims = pgvector.search(registry.db, DATASET, enc.id, version, query, k)
    return SearchHits(ids, sims, "pgvector")
