"""Many processes adding, aliasing and reading one registry at once, on SQLite and on PostgreSQL.

Each process runs ``--rounds`` rounds of: add a new version of one shared name (versions race), move two
aliases (one that every process moves), four reads (by ref, by alias, its own alias, a tag search), and
every third round an add of weights every process shares (blob dedup races). Prints JSON per backend:
processes x operations, errors raised to the caller, rows lost (adds reported but not found afterwards),
whether the versions are gap-free, wall time and throughput (operations over the span from the first
operation to the last, start-up excluded), with the machine described.

    python bench/bench_concurrency.py [--procs 8] [--rounds 25] [--backends sqlite,postgresql] [--out FILE]

PostgreSQL: ``$ZOO_TEST_POSTGRES_URL`` or a throwaway server (tests/pgserver.py), as in the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def worker(url: str, blobs: str, wid: int, rounds: int) -> None:
    """One process's share of the load; prints ``{"errors", "ids", "ops", "seconds"}`` as JSON."""
    import torch

    import zoo

    torch.set_num_threads(1)
    reg = zoo.Registry(url, blob_root=blobs)
    spec = zoo.resolve_arch("cnn-tiny")
    fam = zoo.get_family("cnn")
    errors: list[str] = []
    ids: list[int] = []
    ops = 0
    start = time.time()  # wall clock: the parent compares processes' spans
    for i in range(rounds):
        try:
            torch.manual_seed(1000 * wid + i)
            rec = reg.add(
                fam.build(spec),
                name="shared",
                arch=spec,
                tags=[f"w{wid}"],
                dataset=f"ds{i % 2}",
                metrics={"round": i},
            )
            ids.append(rec.id)
            reg.alias(rec.ref, "latest")
            reg.alias(rec.ref, f"w{wid}")
            ops += 3
            ok = (
                reg.get(rec.ref).sha256 == rec.sha256
                and reg.get("shared@latest").name == "shared"
                and reg.get(f"shared@w{wid}").id == rec.id
                and len(reg.search(tags=[f"w{wid}"])) == i + 1
            )
            ops += 4
            if not ok:
                errors.append(f"round {i}: a read did not see this process's own write")
            if i % 3 == 0:
                torch.manual_seed(99999)
                ids.append(reg.add(fam.build(spec), name=f"same-{wid}-{i}", arch=spec).id)
                ops += 1
        except Exception as exc:  # counted, not raised: the point is to count them
            errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"errors": errors, "ids": ids, "ops": ops, "start": start, "end": time.time()}))


def run_backend(backend: str, procs: int, rounds: int, work: Path) -> dict[str, Any]:
    import zoo

    server = None
    if backend == "postgresql":
        sys.path.insert(0, str(ROOT))
        from tests.pgserver import PostgresServer

        server = PostgresServer.start()
        url = server.create_database(prefix="zoo_bench")
        version = _server_version(url)
    else:
        url = f"sqlite:///{work / 'registry.db'}"
        import sqlite3

        version = f"SQLite {sqlite3.sqlite_version}"
    blobs = work / f"{backend}.blobs"
    try:
        zoo.Registry(url, blob_root=blobs).close()  # migrated before the clock starts
        start = time.perf_counter()
        running = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", url, str(blobs), str(w), str(rounds)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for w in range(procs)
        ]
        outs = [p.communicate(timeout=3600) for p in running]
        wall = time.perf_counter() - start
        results = []
        for p, (out, err) in zip(running, outs):
            if p.returncode != 0:
                raise SystemExit(f"a worker failed:\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        with zoo.Registry(url, blob_root=blobs) as reg:
            present = {r.id for r in reg.list()}
            versions = [r.version for r in reg.versions("shared")]
            clean = reg.verify().clean
        reported = [i for r in results for i in r["ids"]]
        ops = sum(r["ops"] for r in results)
        span = max(r["end"] for r in results) - min(r["start"] for r in results)  # first op to last op
        return {
            "backend": backend,
            "server": version,
            "processes": procs,
            "rounds_per_process": rounds,
            "operations": ops,
            "errors": sum(len(r["errors"]) for r in results),
            "error_samples": sorted({e for r in results for e in r["errors"]})[:5],
            "rows_reported": len(reported),
            "rows_lost": len(set(reported) - present),
            "versions_gap_free": versions == list(range(1, procs * rounds + 1)),
            "verify_clean": clean,
            "wall_s": round(wall, 2),  # with each process's start-up (importing torch: most of it on 2 cores)
            "ops_span_s": round(span, 2),
            "ops_per_s": round(ops / span, 1),  # from the first op to the last
        }
    finally:
        if server is not None:
            server.drop_database(url)
            server.stop()


def _server_version(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version()")).scalar()).split(" on ")[0]
    finally:
        engine.dispose()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from common import emit, machine

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    runs = []
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
            runs.append(run_backend(backend.strip(), args.procs, args.rounds, Path(tmp)))
    emit({"benchmark": "concurrency", "machine": machine(), "runs": runs}, args.out)


if __name__ == "__main__":
    main()
