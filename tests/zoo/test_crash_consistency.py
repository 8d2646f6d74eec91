"""Crash consistency: real processes SIGKILLed in the middle of registry writes, generator training and
re-indexing never leave a row without its blob or a half-written blob in place; ``verify`` finds the orphans
a kill leaves and ``verify --repair`` removes them.

The workers are forked from a zygote process (tests/zoo/crashkit.py) so that a kill round costs a fork, not
a Python start-up; one round uses a freshly started interpreter as well. Kill times are seeded: the same
rounds run every time. The named kill points are reached by the worker killing itself inside the operation.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from tests.zoo.crashkit import Zygote, check, run_kill_rounds
from tests.zoo.hostile import SPEC, tiny_state
from zoo.datasets import from_arrays
from zoo.jobs import job_runs

POINTS = ("temp-written", "blob-renamed", "row-inserted", "removed-row", "file-deleted", "generator-renamed")


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One zygote for the module: it forks the workers of every test (each on its own registry)."""
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def test_sigkill_inside_add_remove_and_generator_writes(tmp_path: Path, zygote: Zygote) -> None:
    """6 kills at named points inside add/remove/add_generator, then 24 at seeded random times of a loop of
    adds (new weights, shared weights, versions), removes, aliases and generator blobs."""
    reg = zoo.Registry(tmp_path / "registry.db")
    reg.add(tiny_state(0), name="survivor", dataset="d0")
    res = run_kill_rounds(reg, zygote, random_kills=24, seed=0, points=POINTS)
    assert not res["worker_errors"], res["worker_errors"]
    assert not res["inconsistencies"], "\n".join(res["inconsistencies"])
    assert res["kills"] == 30 and res["point_kills"] == dict.fromkeys(POINTS, 1)
    assert res["orphan_files_repaired"] >= 4  # the named points left temp files and orphan blobs...
    assert res["orphan_rows_repaired"] >= 2  # ... and blob rows half-way through removal
    assert sum(1 for n in res["ops_between_kills"][len(POINTS):] if n != 0) >= 12  # workers did work
    assert reg.stats()["checkpoints"] > 0 and all(reg.load(r) is not None for r in reg.list(limit=10))
    assert reg.verify(grace_s=0).clean
    reg.close()


def test_sigkill_of_a_freshly_started_process(tmp_path: Path) -> None:
    """Not forked: a new interpreter adding in a loop, killed at a random time once it is writing."""
    db = tmp_path / "registry.db"
    reg = zoo.Registry(db)
    script = tmp_path / "adder.py"
    script.write_text(textwrap.dedent("""
        import sys, torch, zoo
        reg = zoo.Registry(sys.argv[1])
        spec = zoo.resolve_arch("cnn-tiny")
        torch.manual_seed(0)
        base = zoo.get_family("cnn").build(spec).state_dict()
        for i in range(10**6):
            reg.add({k: v + i * 1e-4 for k, v in base.items()}, arch=spec, name=f"n{i % 4}")
            if i == 3:
                print("writing", flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    time.sleep(random.Random(1).uniform(0.05, 0.3))
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    found = check(reg, repair="cli")
    assert not found.inconsistencies, found.inconsistencies
    assert reg.stats()["checkpoints"] >= 4
    reg.close()


def _wait_for(path: Path, pid: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pytest.fail(f"the worker ended before writing {path.name}")
        time.sleep(0.01)


def test_generator_training_killed_twice_resumes_and_stores_exactly_one(tmp_path: Path, zygote: Zygote) -> None:
    """Killed in stage 1 and again in stage 2 (random times after the first state file of each): nothing is
    stored; a third run resumes from the state files, finishes and stores exactly one generator, with the
    same weights as a run that was never interrupted."""
    reg_path = tmp_path / "registry.db"
    reg = zoo.Registry(reg_path)
    g = torch.Generator().manual_seed(0)
    for ds in ("d0", "d1"):
        reg.register_dataset(ds, from_arrays(torch.rand(20, 8, 8, generator=g), [0, 1] * 10))
    for i in range(4):
        reg.add(tiny_state(10 + i), arch=SPEC, name=f"ck{i}", dataset=("d0", "d1")[i % 2])
    ckpt = tmp_path / "train-state"
    rng = random.Random(2)
    for stage_file in ("stage1-tokenizer.pt", "stage2-prior.pt"):
        pid = zygote.fork(reg_path, 1, "train", str(ckpt))
        _wait_for(ckpt / stage_file, pid)
        assert zygote.kill_after(pid, rng.uniform(0.0, 0.25)) == -signal.SIGKILL
        found = check(reg)
        assert not found.inconsistencies, found.inconsistencies
        assert reg.generators() == []
        for state in ckpt.glob("*.pt"):  # state files are replaced atomically: never half-written
            assert int(torch.load(state, weights_only=True)["step"]) > 0
    pid = zygote.fork(reg_path, 1, "train", str(ckpt))
    assert zygote.wait(pid) == 0
    [resumed] = reg.generators()
    found = check(reg)
    assert not found.inconsistencies, found.inconsistencies
    pid = zygote.fork(reg_path, 1, "train", str(tmp_path / "uninterrupted"))
    assert zygote.wait(pid) == 0
    straight = next(x for x in reg.generators() if x.id != resumed.id)
    a = E_tensors(reg, resumed.ref)
    b = E_tensors(reg, straight.ref)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "a resumed run must continue exactly"
    reg.close()


def E_tensors(reg: zoo.Registry, ref: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(reg.load_generator_bytes(ref))


def test_reindex_killed_at_random_times_then_finished(tmp_path: Path, zygote: Zygote) -> None:
    """Complements test_reindexing's kill-mid-import test: 4 kills at seeded random times of whole runs (import
    and verify stages) over good and broken files, invariants checked after each, then a run that finishes
    imports every good file exactly once."""
    reg = zoo.Registry(tmp_path / "registry.db")
    watch = tmp_path / "incoming"
    watch.mkdir()
    n = 80
    for i in range(n):
        save_file(tiny_state(1000 + i) if i % 10 else tiny_state(999), watch / f"net-{i}.safetensors")  # copies too
    (watch / "broken.pt").write_bytes(b"\x80\x04garbage")
    rng = random.Random(3)
    kills = 0
    for r in range(4):
        pid = zygote.fork(tmp_path / "registry.db", r, "reindex", str(watch))
        code = zygote.kill_after(pid, rng.uniform(0.1, 0.8))
        kills += code == -signal.SIGKILL
        found = check(reg, repair="cli" if r % 2 else "api")
        assert not found.inconsistencies, found.inconsistencies
    assert kills >= 3
    pid = zygote.fork(tmp_path / "registry.db", 9, "reindex", str(watch))
    assert zygote.wait(pid) == 0
    runs = job_runs(reg)
    assert runs[0].status in ("succeeded", "skipped")
    names = sorted(r.ref for r in reg.list())
    expected = sorted({f"net-{i}:v1" for i in range(n) if i % 10} | {"net-0:v1"})  # copies: imported once
    assert names == expected, set(names) ^ set(expected)
    found = check(reg)
    assert not found.inconsistencies and reg.verify(grace_s=0).clean
    assert all(r.status != "running" for r in runs)  # killed runs were marked killed
    reg.close()
