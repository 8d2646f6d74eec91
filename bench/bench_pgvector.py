"""Nearest-neighbour search inside PostgreSQL with pgvector against exact NumPy search, at a few sizes.

For N unit vectors (a Gaussian mixture, 50 per cluster, as bench_retrieval.py; the pixels encoder's length)
stored as zoo stores dataset vectors: the time to copy them into pgvector's table
(:func:`zoo.store.pgvector.sync`), the latency of an exact in-database scan and whether its top 10 equals
NumPy's, the HNSW index build time, and its latency and recall@10 (the search :func:`zoo.embeddings.nearest`
uses on PostgreSQL from :data:`zoo.index.ANN_MIN_VECTORS` on).

    python bench/bench_pgvector.py [--sizes 1000,20000] [--queries 50] [--out FILE]

PostgreSQL: ``$ZOO_TEST_POSTGRES_URL`` or a throwaway server with pgvector (tests/pgserver.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def mixture(n: int, dim: int, seed: int, centers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors around cluster centres, 50 per cluster (as bench_retrieval.py): (vectors,
    centres)."""
    rng = np.random.default_rng(seed)
    if centers is None:
        centers = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (0.6 / np.sqrt(dim))
    x = centers[rng.integers(0, len(centers), n)] + noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), centers


def run_size(server: Any, n: int, n_queries: int, work: Path) -> dict[str, Any]:
    from sqlalchemy import insert, text

    import zoo
    import zoo.embeddings as E
    from zoo.encoders import get_dataset_encoder
    from zoo.index import HNSW_EXPANSION_SEARCH, ExactIndex
    from zoo.store import models as m
    from zoo.store import pgvector

    enc = get_dataset_encoder("pixels")
    vecs, centers = mixture(n, enc.dim, seed=n)
    queries, _ = mixture(n_queries, enc.dim, seed=n + 1, centers=centers)
    url = server.create_database(prefix="zoo_bench")
    try:
        with zoo.Registry(url, blob_root=work / "blobs") as reg:
            if not pgvector.usable(reg.db):
                raise SystemExit("this PostgreSQL server has no pgvector extension")
            with reg.db.read() as s:
                server_version = str(s.scalar(text("SHOW server_version"))).split()[0]
                pgvector_version = str(
                    s.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
                )
            with reg.db.write() as s:
                s.execute(
                    insert(m.Embedding),
                    [
                        {
                            "subject": E.DATASET,
                            "subject_key": f"d{i}",
                            "encoder_id": enc.id,
                            "encoder_version": enc.version,
                            "source_fingerprint": "",
                            "dim": enc.dim,
                            "vector": vecs[i].astype("<f4").tobytes(),
                            "created_at": m.utcnow(),
                        }
                        for i in range(n)
                    ],
                )
            with reg.db.read() as s:
                ids = np.array(s.scalars(text("SELECT id FROM embeddings ORDER BY id")).all(), dtype=np.int64)
            t = time.perf_counter()
            pgvector.sync(reg.db, E.DATASET, enc.id, enc.version)
            sync_s = time.perf_counter() - t

            exact = ExactIndex(ids, vecs)
            truth = [exact.search(q, 10).keys.tolist() for q in queries]
            t = time.perf_counter()
            for q in queries:
                exact.search(q, 10)
            numpy_ms = (time.perf_counter() - t) / n_queries * 1e3

            def measure() -> tuple[float, float]:
                times, hits = [], 0
                for q, want in zip(queries, truth):
                    t0 = time.perf_counter()
                    got, _ = pgvector.search(reg.db, E.DATASET, enc.id, enc.version, q, 10)
                    times.append(time.perf_counter() - t0)
                    hits += len(set(got.tolist()) & set(want))
                return statistics.median(times) * 1e3, hits / (10 * len(queries))

            scan_ms, scan_recall = measure()
            t = time.perf_counter()
            pgvector.ensure_hnsw(reg.db, enc.dim)
            build_s = time.perf_counter() - t
            hnsw_ms, hnsw_recall = measure()
    finally:
        server.drop_database(url)
    return {
        "postgresql": server_version,
        "pgvector": pgvector_version,
        "vectors": n,
        "dim": enc.dim,
        "queries": n_queries,
        "sync_s": round(sync_s, 3),
        "numpy_exact_ms": round(numpy_ms, 3),
        "pg_exact_scan_ms": round(scan_ms, 3),
        "pg_exact_scan_recall_at_10": scan_recall,
        "hnsw_build_s": round(build_s, 3),
        "hnsw_ms": round(hnsw_ms, 3),
        "hnsw_recall_at_10": hnsw_recall,
        "hnsw_ef_search": HNSW_EXPANSION_SEARCH,
    }


def main() -> None:
    from common import emit, machine

    from tests.pgserver import PostgresServer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,20000")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    server = PostgresServer.start()
    try:
        runs = []
        for n in (int(x) for x in args.sizes.split(",")):
            with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
                runs.append(run_size(server, n, args.queries, Path(tmp)))
    finally:
        server.stop()
    emit({"benchmark": "pgvector", "machine": machine(), "runs": runs}, args.out)


if __name__ == "__main__":
    main()
