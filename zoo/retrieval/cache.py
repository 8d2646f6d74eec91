"""What one registry's retrieval keeps in memory: vector tables, opened ANN indexes and the state of the rows.

A :class:`RetrievalCache` belongs to one :class:`~zoo.registry.Registry` instance
(``registry.retrieval_cache``), never to the module: two registries in one process keep separate caches, and a
registry's cache goes with it. Everything cached is checked against a cheap change key of the rows it came
from, so the cache only ever saves reads; vectors written by other processes (or other registry instances)
become searchable within :data:`TOKEN_TTL_S` seconds, this registry's own writes at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.index import ExactIndex, USearchIndex
from zoo.store.vectors import Compatible

TOKEN_TTL_S = 1.0  # how long a registry trusts its view of the vector tables (its own writes count at once)


@dataclass(frozen=True, eq=False)
class Table:
    """Every current vector of one subject by one encoder version, with an exact index over them."""

    token: tuple[int, int]  # the encoder's change key when loaded
    ids: np.ndarray  # (N,) embedding row ids
    names: tuple[str, ...]  # subject keys, row-aligned
    row_of: Mapping[str, int]  # subject key -> row
    index: ExactIndex


@dataclass(eq=False)
class RetrievalCache:
    """One registry's retrieval caches (each entry checked against its rows' change key before use)."""

    tables: dict[tuple[str, str, str], Table] = field(default_factory=dict)  # (subject, encoder, version)
    ann_files: dict[str, USearchIndex] = field(default_factory=dict)  # index file path -> opened index
    # encoder -> (read at, key)
    changes: dict[str, tuple[float, tuple[int, int]]] = field(default_factory=dict)
    ann_current: dict[tuple[str, str], tuple[tuple[int, int], USearchIndex]] = field(default_factory=dict)
    candidate_rows: dict[tuple[int, int], tuple[Compatible, Table, tuple[np.ndarray, np.ndarray]]] = field(
        default_factory=dict
    )  # (id(candidates), id(table)) -> their aligned arrays; see search._exact_top
    compatible: dict[tuple[Any, ...], tuple[tuple[Any, ...], Compatible]] = field(default_factory=dict)
    hnsw_checked: set[int] = field(default_factory=set)  # dims whose pgvector HNSW index was made sure of
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invalidate(self) -> None:
        """Forget the cached state of the rows (after this registry wrote vectors)."""
        with self.lock:
            self.changes.clear()

    def change_of(self, encoder_id: str, read: Any) -> tuple[int, int]:
        """The encoder's change key, re-read with ``read(encoder_id)`` at most every :data:`TOKEN_TTL_S` s."""
        now = time.monotonic()
        hit = self.changes.get(encoder_id)
        if hit is not None and now - hit[0] < TOKEN_TTL_S:
            return hit[1]
        change: tuple[int, int] = read(encoder_id)
        with self.lock:
            self.changes[encoder_id] = (now, change)
        return change

    def note_change(self, encoder_id: str, change: tuple[int, int]) -> None:
        with self.lock:
            self.changes[encoder_id] = (time.monotonic(), change)


__all__ = ["TOKEN_TTL_S", "RetrievalCache", "Table"]
