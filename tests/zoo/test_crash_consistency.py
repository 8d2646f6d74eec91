"""Crash consistency: real processes SIGKILLed in the middle of registry writes, generator training and
re-indexing never leave a row without its blob or a half-written blob in place; ``verify`` finds the orphans
a kill leaves and ``verify --repair`` removes them.

The workers are forked from a zygote process (tests/zoo/crashkit.py) so that a kill round costs a fork, not
a Python start-up; one round uses a freshly started interpreter as well. Every kill lands where the work
certainly is, on any machine: at a named point the worker reaches inside the operation (it SIGKILLs itself
there; a point never reached is a failure), or, for the random-time kills, inside an endless loop of writes
after the worker has reported finished operations. No verdict depends on how fast the machine is.
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
from tests.zoo.crashkit import POINTS, REINDEX_POINTS, Zygote, check, run_kill_rounds
from tests.zoo.hostile import SPEC, tiny_state
from zoo.datasets import from_arrays
from zoo.jobs import job_runs


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One zygote for the module: it forks the workers of every test (each on its own registry)."""
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def test_sigkill_inside_add_remove_and_generator_writes(tmp_path: Path, zygote: Zygote) -> None:
    """6 kills at named points inside add/remove/add_generator, then 24 of a loop of adds (new weights, shared
    weights, versions), removes, aliases and generator blobs, each after 1-5 finished operations and a seeded
    random delay."""
    reg = zoo.Registry(tmp_path / "registry.db")
    reg.add(tiny_state(0), name="survivor", dataset="d0")
    res = run_kill_rounds(reg, zygote, random_kills=24, seed=0, points=POINTS)
    assert not res["worker_errors"], res["worker_errors"]
    assert not res["inconsistencies"], "\n".join(res["inconsistencies"])
    assert res["kills"] == 30 and res["point_kills"] == dict.fromkeys(POINTS, 1)
    assert res["orphan_files_repaired"] >= 4  # the named points left temp files and orphan blobs...
    assert res["orphan_rows_repaired"] >= 2  # ... and blob rows half-way through removal
    assert len(res["ops_before_kill"]) == 24 and min(res["ops_before_kill"]) >= 1  # killed while writing
    assert reg.stats()["checkpoints"] > 0 and all(reg.load(r) is not None for r in reg.list(limit=10))
    assert reg.verify(grace_s=0).clean
    reg.close()


def test_sigkill_of_a_freshly_started_process(tmp_path: Path) -> None:
    """Not forked: a new interpreter adding in a loop, killed at a random time once it is writing."""
    db = tmp_path / "registry.db"
    reg = zoo.Registry(db)
    script = tmp_path / "adder.py"
    script.write_text(
        textwrap.dedent("""
        import sys, torch, zoo
        reg = zoo.Registry(sys.argv[1])
        spec = zoo.resolve_arch("cnn-tiny")
        torch.manual_seed(0)
        base = zoo.get_family("cnn").build(spec).state_dict()
        for i in range(10**6):
            reg.add({k: v + i * 1e-4 for k, v in base.items()}, arch=spec, name=f"n{i % 4}")
            if i == 3:
                print("writing", flush=True)
    """)
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"  # 4 adds done, 10**6 to go
    time.sleep(random.Random(1).uniform(0.05, 0.3))
    assert proc.poll() is None  # still adding: the loop outlasts any machine
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    found = check(reg, repair="cli")
    assert not found.inconsistencies, found.inconsistencies
    assert reg.stats()["checkpoints"] >= 4
    reg.close()


def test_generator_training_killed_twice_resumes_and_stores_exactly_one(
    tmp_path: Path, zygote: Zygote
) -> None:
    """Killed in stage 1 (before saving the state of a seeded step) and again in stage 2 (between writing the
    state file of a seeded step and renaming it into place): nothing is stored and the state files hold the
    last saved steps; a third run resumes from them, finishes and stores exactly one generator, with the
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
    k1, k2 = rng.randint(2, 39), rng.randint(2, 23)  # steps of 40 (tokenizer) and 24 (prior): see crashkit
    for mode, saved in (
        (f"train-die:stage1:{k1}:before", {"stage1-tokenizer.pt": k1 - 1}),
        (f"train-die:stage2:{k2}:renaming", {"stage1-tokenizer.pt": 40, "stage2-prior.pt": k2 - 1}),
    ):
        pid = zygote.fork(reg_path, 1, mode, str(ckpt))
        assert zygote.wait(pid) == -signal.SIGKILL, f"{mode}: the worker was not killed there"
        found = check(reg)
        assert not found.inconsistencies, found.inconsistencies
        assert reg.generators() == []
        # state files are replaced atomically: each holds the last step saved before the kill,
        # never half of one
        assert {p.name: int(torch.load(p, weights_only=True)["step"]) for p in ckpt.glob("*.pt")} == saved
    assert [p.name for p in ckpt.glob("*.tmp")] != []  # the stage-2 kill left its unrenamed state file behind
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


def test_reindex_killed_at_every_stage_then_finished(tmp_path: Path, zygote: Zygote) -> None:
    """Complements test_reindexing's kill-mid-import test: 6 runs over good and broken files, each killed at a
    named point of the run (inside the N-th import's add at a seeded N, after the N-th import, before the
    examined files are remembered, after verify, before the outcome is recorded), invariants checked after
    each; then a run that finishes imports every good file exactly once and finds every killed run."""
    reg = zoo.Registry(tmp_path / "registry.db")
    watch = tmp_path / "incoming"
    watch.mkdir()
    n = 80
    for i in range(n):
        save_file(
            tiny_state(1000 + i) if i % 10 else tiny_state(999), watch / f"net-{i}.safetensors"
        )  # copies too
    (watch / "broken.pt").write_bytes(b"\x80\x04garbage")
    rng = random.Random(3)
    # the import points count the files a run imports: 3 runs of 20 or fewer stay within the 73 to import
    rounds = [(point, rng.randint(1, 20) if point.startswith("import") else 1) for point in REINDEX_POINTS]
    good = len({f"net-{i}" for i in range(n) if i % 10} | {"net-0"})  # 73: copies are imported once
    registered = 0
    for r, (point, nth) in enumerate(rounds):
        pid = zygote.fork(tmp_path / "registry.db", r, f"reindex-die:{point}:{nth}", str(watch))
        assert zygote.wait(pid) == -signal.SIGKILL, f"run {r} was not killed at {point} #{nth}"
        # killed inside its nth import (before the commit), right after it, or once every file was imported
        registered = {
            "import-blob-renamed": registered + nth - 1,
            "import-row-inserted": registered + nth - 1,
            "imported": registered + nth,
        }.get(point, good)
        assert reg.stats()["checkpoints"] == registered, (point, nth)
        found = check(reg, repair="cli" if r % 2 else "api")
        assert not found.inconsistencies, found.inconsistencies
    pid = zygote.fork(tmp_path / "registry.db", 9, "reindex", str(watch))
    assert zygote.wait(pid) == 0
    runs = job_runs(reg)
    assert runs[0].status in ("succeeded", "skipped")
    assert [r.status for r in runs[1:]] == ["killed"] * len(rounds)  # every killed run found and marked
    names = sorted(r.ref for r in reg.list())
    expected = sorted({f"net-{i}:v1" for i in range(n) if i % 10} | {"net-0:v1"})  # copies: imported once
    assert names == expected, set(names) ^ set(expected)
    found = check(reg)
    assert not found.inconsistencies and reg.verify(grace_s=0).clean
    reg.close()
