"""Nearest-neighbour indexes (zoo.index): exact search and the persisted usearch HNSW index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoo.errors import ConfigError, ZooError
from zoo.index import ExactIndex, USearchIndex


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


def test_usearch_recall_and_persistence(tmp_path: Path) -> None:
    x = _clustered(4000, 32, seed=1)
    keys = np.arange(4000) + 100
    ann = USearchIndex.build(keys, x)
    exact = ExactIndex(keys, x)
    q = _clustered(50, 32, seed=2)
    a, e = ann.search(q, 10), exact.search(q, 10)
    recall = np.mean([len(set(a.keys[i]) & set(e.keys[i])) / 10 for i in range(50)])
    assert recall >= 0.95
    np.testing.assert_allclose(a.similarities[:, 0], e.similarities[:, 0], atol=2e-3)  # f16 vectors
    path = tmp_path / "ix.usearch"
    ann.save(path)
    reopened = USearchIndex.open(path)
    assert len(reopened) == 4000 and reopened.dim == 32
    assert np.array_equal(reopened.search(q, 10).keys, a.keys)
    writable = USearchIndex.open(path, view=False)
    writable.add(np.array([1]), -x[:1])
    assert writable.search(-x[0], 1).keys[0] == 1
    with pytest.raises(ConfigError, match="does not exist"):
        USearchIndex.open(tmp_path / "missing.usearch")


def test_usearch_large_k_and_empty() -> None:
    x = _clustered(300, 8)
    ann = USearchIndex.build(np.arange(300), x)
    hits = ann.search(x[0], 300)
    assert len(set(hits.keys[hits.keys >= 0])) >= 290
    empty = USearchIndex.build(np.zeros(0, dtype=np.int64), np.zeros((0, 8), dtype=np.float32))
    assert (empty.search(x[0], 3).keys == -1).all()
