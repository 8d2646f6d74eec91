"""Nearest-neighbour indexes (zoo.index): exact search and the persisted usearch HNSW index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoo.errors import ConfigError, ZooError
from zoo.index import ExactIndex, SearchHits, USearchIndex


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, n // 20), dim))
    x = centers[rng.integers(0, len(centers), n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_index_matches_brute_force() -> None:
    x = _clustered(500, 16)
    keys = np.arange(500) * 3 + 7
    idx = ExactIndex(keys, x)
    hits = idx.search(x[:10], 5)
    for i in range(10):
        order = np.argsort(-(x @ x[i]), kind="stable")[:5]
        assert set(hits.keys[i]) == set(keys[order])
        assert np.all(np.diff(hits.similarities[i]) <= 1e-6)
    assert hits.keys[0, 0] == keys[0] and hits.similarities[0, 0] == pytest.approx(1.0, abs=1e-5)
    one = idx.search(x[3], 2)
    assert one.keys.shape == (2,) and one.keys[0] == keys[3]
    short = ExactIndex(keys[:3], x[:3]).search(x[0], 5)
    assert list(short.keys[3:]) == [-1, -1] and np.isneginf(short.similarities[3:]).all()
    with pytest.raises(ZooError, match="dimension"):
        idx.search(np.ones(8, dtype=np.float32), 3)


# What the HNSW index promises, and so what these tests assert: recall@10 at or above RECALL_BOUND over many
# queries (zoo.index.default_expansion_search documents it; bench/bench_retrieval.py measures it), never that
# a given query finds its true neighbours (an approximate index may miss some: 3 top-1s of 50 on one machine);
# and that whatever it returns is real: existing keys, each at most once, in descending order, each with the
# similarity of that key's own vector (exactly for f32 storage, within F16_TOLERANCE for the default f16).
RECALL_BOUND = 0.95
F16_TOLERANCE = 2e-3  # half-precision vectors of unit length: measured error 2.4e-4 on these vectors
QUERIES = 500


def _recall(got: np.ndarray, want: np.ndarray) -> float:
    """Mean over queries of the share of the exact top-k that the approximate top-k holds."""
    return float(np.mean([len(set(g[g >= 0]) & set(w)) / len(w) for g, w in zip(got, want)]))


def _assert_returns_real_hits(
    hits: SearchHits, keys: np.ndarray, x: np.ndarray, q: np.ndarray, atol: float
) -> None:
    row = {int(k): i for i, k in enumerate(keys)}
    for i in range(len(q)):
        found = hits.keys[i][hits.keys[i] >= 0]
        assert len(set(found.tolist())) == len(found) and all(int(k) in row for k in found)
        sims = hits.similarities[i][: len(found)]
        assert np.all(np.diff(sims) <= 1e-6)
        exact = np.array([x[row[int(k)]] @ q[i] for k in found], dtype=np.float32)
        np.testing.assert_allclose(sims, exact, atol=atol, rtol=0)


def test_usearch_recall_and_persistence(tmp_path: Path) -> None:
    x = _clustered(4000, 32, seed=1)
    keys = np.arange(4000) + 100
    ann = USearchIndex.build(keys, x)
    exact = ExactIndex(keys, x)
    q = _clustered(QUERIES, 32, seed=2)
    a, e = ann.search(q, 10), exact.search(q, 10)
    assert _recall(a.keys, e.keys) >= RECALL_BOUND  # measured 0.975-0.98 (the build is multi-threaded)
    _assert_returns_real_hits(a, keys, x, q, F16_TOLERANCE)
    f32 = USearchIndex.build(keys, x, dtype="f32")
    b = f32.search(q, 10)
    assert _recall(b.keys, e.keys) >= RECALL_BOUND
    _assert_returns_real_hits(b, keys, x, q, 1e-5)  # f32 storage: the similarities are the exact ones

    path = tmp_path / "ix.usearch"
    ann.save(path)
    reopened = USearchIndex.open(path)
    assert len(reopened) == 4000 and reopened.dim == 32
    again = reopened.search(q, 10)  # the same graph searched the same way: the very same answers
    assert np.array_equal(again.keys, a.keys) and np.array_equal(again.similarities, a.similarities)
    writable = USearchIndex.open(path, view=False)
    new_keys, new_x = np.arange(10_000, 10_200), -x[:200]  # 200 more vectors, each its own best match
    writable.add(new_keys, new_x)
    assert len(writable) == 4200
    hits = writable.search(new_x, 1)
    # recall@1 of the added vectors (measured 1.0)
    assert np.mean(hits.keys[:, 0] == new_keys) >= RECALL_BOUND
    with pytest.raises(ConfigError, match="does not exist"):
        USearchIndex.open(tmp_path / "missing.usearch")


def test_usearch_large_k_and_empty() -> None:
    x = _clustered(300, 8)
    keys = np.arange(300)
    ann = USearchIndex.build(keys, x)
    q = _clustered(20, 8, seed=3)
    hits = ann.search(q, 300)  # k as large as the index: ef is raised to k
    assert hits.keys.shape == (20, 300)
    assert _recall(hits.keys, np.tile(keys, (20, 1))) >= RECALL_BOUND  # measured 1.0
    _assert_returns_real_hits(hits, keys, x, q, F16_TOLERANCE)
    empty = USearchIndex.build(np.zeros(0, dtype=np.int64), np.zeros((0, 8), dtype=np.float32))
    assert (empty.search(x[0], 3).keys == -1).all()
