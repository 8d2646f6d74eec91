"""Many processes adding, aliasing and reading one registry at once, on SQLite and on PostgreSQL.

No error reaches a caller ("database is locked", a unique-key collision, a deadlock), no row is lost, and
every process reads its own writes. Also: processes opening a new, unmigrated registry at once.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.context
from pathlib import Path

import pytest

import zoo
from tests.pgserver import PostgresServer

pytestmark = pytest.mark.backends("sqlite", "postgresql")

PROCS = 6  # processes at once (on 2 cores they interleave at every statement)
# rounds per process; each round is an add, two alias moves and four reads (and every third, an add of weights
# every process shares)
ROUNDS = 10


def _ctx() -> multiprocessing.context.BaseContext:
    """Real processes, forked from a server that imported zoo and torch once (a fresh interpreter per worker
    would spend most of the test importing torch on 2 cores)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["zoo", "torch"])
    return ctx


def _work(url: str, blobs: str, wid: int, rounds: int, out: str) -> None:
    """One process: ``rounds`` rounds of add, alias, alias, four reads (every third round a shared add)."""
    import torch

    torch.set_num_threads(1)
    reg = zoo.Registry(url, blob_root=blobs)
    spec = zoo.resolve_arch("cnn-tiny")
    fam = zoo.get_family("cnn")
    errors, ids, ops = [], [], 0
    for i in range(rounds):
        try:
            torch.manual_seed(1000 * wid + i)
            # one name: versions race
            rec = reg.add(
                fam.build(spec),
                name="shared",
                arch=spec,
                tags=[f"w{wid}"],
                dataset=f"ds{i % 2}",
                metrics={"round": i},
            )  # datasets made on first use race too
            ids.append(rec.id)
            reg.alias(rec.ref, "latest")  # every process moves the same alias
            reg.alias(rec.ref, f"w{wid}")
            ops += 3
            assert reg.get(rec.ref).sha256 == rec.sha256
            assert reg.get("shared@latest").name == "shared"
            assert reg.get(f"shared@w{wid}").id == rec.id  # reads its own writes
            assert len(reg.search(tags=[f"w{wid}"])) == i + 1
            ops += 4
            if i % 3 == 0:
                torch.manual_seed(99999)
                # identical weights: one blob
                same = reg.add(fam.build(spec), name=f"same-{wid}-{i}", arch=spec)
                ids.append(same.id)
                ops += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    reg.close()
    Path(out).write_text(json.dumps({"errors": errors, "ids": ids, "ops": ops}))


def run_workers(tmp_path: Path, url: str, blobs: Path, procs: int, rounds: int) -> list[dict]:
    ctx = _ctx()
    outs = [tmp_path / f"worker-{w}.json" for w in range(procs)]
    running = [
        ctx.Process(target=_work, args=(url, str(blobs), w, rounds, str(outs[w]))) for w in range(procs)
    ]
    for p in running:
        p.start()
    for p in running:
        p.join(timeout=600)
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"
    return [json.loads(o.read_text()) for o in outs]


def test_parallel_writers_lose_nothing(registry_url: str, tmp_path: Path) -> None:
    blobs = tmp_path / "registry.blobs"
    zoo.Registry(registry_url, blob_root=blobs).close()  # migrated up front, as a deployed registry would be
    results = run_workers(tmp_path, registry_url, blobs, PROCS, ROUNDS)
    assert [r["errors"] for r in results] == [[]] * PROCS
    same_per_proc = len(range(0, ROUNDS, 3))
    assert sum(r["ops"] for r in results) == PROCS * (7 * ROUNDS + same_per_proc)
    with zoo.Registry(registry_url, blob_root=blobs) as reg:
        versions = reg.versions("shared")
        assert [r.version for r in versions] == list(range(1, PROCS * ROUNDS + 1))  # no gap, no duplicate
        assert len({r.sha256 for r in versions}) == PROCS * ROUNDS
        reported = sorted(i for r in results for i in r["ids"])
        assert sorted(r.id for r in reg.list()) == reported  # every add a process was told of is there
        for w in range(PROCS):
            assert len(reg.search(tags=[f"w{w}"])) == ROUNDS
            assert reg.get(f"shared@w{w}").tags == (f"w{w}",)
        assert {a.alias for a in reg.aliases("shared")} == {"latest", *(f"w{w}" for w in range(PROCS))}
        assert len(reg.search(name="same-*")) == PROCS * same_per_proc
        assert sorted(d.name for d in reg.datasets()) == ["ds0", "ds1"]
        assert reg.stats()["blobs"] == PROCS * ROUNDS + 1  # distinct weights + 1 shared by every "same-*"
        assert reg.verify().clean


def _open(url: str, blobs: str) -> None:
    zoo.Registry(url, blob_root=blobs).close()  # opening migrates


def test_processes_opening_a_new_registry_at_once_migrate_it_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":  # a new database, not a copy of the migrated template
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
        request.addfinalizer(lambda: server.drop_database(url))
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    ctx = _ctx()
    running = [ctx.Process(target=_open, args=(url, str(tmp_path / "blobs"))) for _ in range(PROCS)]
    for p in running:
        p.start()
    for p in running:
        p.join(timeout=300)
        assert p.exitcode == 0, f"a process opening the registry exited with {p.exitcode}"
    from zoo.store.db import current_revision, head_revision

    with zoo.Registry(url, blob_root=tmp_path / "blobs") as reg:
        assert current_revision(reg.db.write_engine) == head_revision()
        assert reg.stats()["checkpoints"] == 0
