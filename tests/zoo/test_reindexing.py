"""The nightly re-indexing job (zoo.reindex, `zoo reindex`, `zoo jobs`), run as a scheduler would run it.

Real SQLite files, real safetensors files in watch folders, real processes (killed with SIGKILL, or run
side by side). Generators are trained with a tiny config, so each training takes a second or two.

No verdict depends on the machine's speed: a process is killed while it is paused at a known point of its
run, processes are known to be waiting for the lease because they said so, and lease expiry runs on a clock
the test moves.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import igpg
import zoo
import zoo.embeddings as E
from zoo.cli import cli
from zoo.datasets import ImageDataset, from_arrays
from zoo.encoders import DatasetEncoder
from zoo.jobs import Lease, job_runs, lease_info
from zoo.plugins import register_plugin, unregister_plugin
from zoo.reindexing import accuracy_evaluator
from zoo.store import models as m

SPEC = zoo.resolve_arch("cnn-tiny")
TINY = igpg.TrainConfig(
    tokenizer=igpg.TokenizerConfig(codebook_size=16, levels=1, hidden=32),
    prior=igpg.PriorConfig(block_size=32, n_layer=1, n_head=2, n_embd=32),
    tokenizer_steps=20,
    prior_steps=10,
    tokenizer_batch=128,
    prior_batch=2,
    device="cpu",
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one torch thread avoids OpenMP spin-waiting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def weights(seed: int) -> dict[str, torch.Tensor]:
    """A distinct cnn-tiny state dict per seed (cheap: one template, shifted)."""
    torch.manual_seed(0)
    base = zoo.get_family("cnn").build(SPEC).state_dict()
    return {k: v + seed * 1e-3 if v.dtype.is_floating_point else v for k, v in base.items()}


def write_files(folder: Path, seeds: range, *, dataset: str | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in seeds:
        path = folder / f"net-{seed}.safetensors"
        save_file(weights(seed), path)
        if dataset is not None:
            path.with_suffix(".json").write_text(
                json.dumps(
                    {
                        "name": f"net-{seed}",
                        "dataset": dataset,
                        "metrics": {"accuracy": 0.5},
                        "tags": ["watched"],
                    }
                )
            )
        out.append(path)
    return out


def cli_run(db: Path, *args: str, code: int = 0):  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(cli, ["--registry", str(db), *args], catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res


def zoo_cmd(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "zoo", "--registry", str(db), *args]


def setting(db: Path, key: str) -> str | None:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None
    finally:
        con.close()


def count_rows(db: Path, table: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        con.close()


# ----------------------------------------------------------------------------------------------------
def test_second_run_is_a_noop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "registry.db"
    reg = zoo.Registry(db)
    reg.register_dataset("digits", "digits")
    watch = tmp_path / "incoming"
    files = write_files(watch / "team-a", range(4), dataset="digits")
    (watch / "team-b").mkdir()
    (watch / "team-b" / "copy.safetensors").write_bytes(
        files[0].read_bytes()
    )  # same bytes: not imported twice
    (watch / "broken.pt").write_bytes(b"not a checkpoint")
    (watch / ".partial.safetensors").write_bytes(b"hidden files are left alone")
    monkeypatch.setattr(E, "ANN_MIN_VECTORS", 1)  # a persisted index even for one dataset vector

    first = zoo.reindex(reg, watch=[watch])
    c = first.counts
    assert first.status == "succeeded" and sorted(first.imported) == [f"net-{i}:v1" for i in range(4)]
    assert (c["files_scanned"], c["files_hashed"], c["imported"], c["files_duplicate"], c["files_bad"]) == (
        6,
        6,
        4,
        1,
        1,
    )
    assert first.bad_files[0][0].endswith("broken.pt") and "cannot read checkpoint" in first.bad_files[0][1]
    assert c["archs_embedded"] == 1 and c["indexes_rebuilt"] == 1 and c["blobs_checked"] == 4
    rec = reg.get("net-2")
    assert rec.dataset == "digits" and rec.tags == ("watched",) and rec.meta["source_sha256"]
    index_before = setting(db, "index:dataset:pixels")
    assert Path(E.index_dir(reg) / json.loads(index_before)["file"]).is_file()

    second = json.loads(cli_run(db, "reindex", "--watch", str(watch), "--json").output)
    c2 = second["counts"]
    assert second["status"] == "skipped" and second["imported"] == [] and second["bad_files"] == []
    assert c2.get("files_hashed", 0) == 0 and c2["files_scanned"] == 6 and c2["files_bad_known"] == 1
    assert (
        c2.get("imported", 0),
        c2["datasets_embedded"],
        c2["archs_embedded"],
        c2["indexes_rebuilt"],
        c2.get("generators_trained", 0),
    ) == (0, 0, 0, 0, 0)
    assert setting(db, "index:dataset:pixels") == index_before
    assert reg.stats()["checkpoints"] == 4

    runs = json.loads(cli_run(db, "jobs", "--json").output)
    assert [(r["kind"], r["status"]) for r in runs] == [("reindex", "skipped"), ("reindex", "succeeded")]
    assert runs[1]["counts"]["imported"] == 4 and runs[1]["duration_s"] > 0 and runs[0]["finished_at"]
    table = cli_run(db, "jobs").output
    assert "STATUS" in table and "imported=4" in table and "skipped" in table
    assert lease_info(reg, "reindex") is None  # released
    reg.close()


def test_missing_watch_folder_is_a_config_error(registry: zoo.Registry, tmp_path: Path) -> None:
    with pytest.raises(zoo.ConfigError, match="does not exist.*--watch"):
        zoo.reindex(registry, watch=[tmp_path / "nope"])
    assert job_runs(registry) == []  # refused before anything ran


# `zoo reindex` in a process that pauses once its 10th import has returned (and before the run remembers the
# files it examined), so that the test kills it there: mid-import on any machine, however fast or slow
PAUSING_ZOO = textwrap.dedent("""
    import sys
    from zoo.registry import Registry

    original, imported = Registry.add, []

    def add(self, *args, **kwargs):
        rec = original(self, *args, **kwargs)
        imported.append(rec)
        if len(imported) == 10:
            print("paused", flush=True)
            sys.stdin.read()  # until killed
        return rec

    Registry.add = add
    from zoo.cli import main

    main()
""")


def test_killed_run_is_followed_by_a_clean_run(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    reg = zoo.Registry(db)
    E.embed_arch(reg, SPEC)  # the child then needs no text model: it only imports
    watch = tmp_path / "incoming"
    n = 150
    write_files(watch, range(n))
    script = tmp_path / "pausing_zoo.py"
    script.write_text(PAUSING_ZOO)
    with open(tmp_path / "child.err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), "--registry", str(db), "reindex", "--watch", str(watch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "paused", (
        tmp_path / "child.err"
    ).read_text()
    assert proc.poll() is None  # paused after its 10th import, with 140 files to go
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done = count_rows(db, "checkpoints")
    assert done == 10
    assert [r.status for r in job_runs(reg)] == ["running"]  # it never got to record an outcome
    held = lease_info(reg, "reindex")
    assert held is not None and f":{proc.pid}:" in held.holder  # its lease is still there

    report = zoo.reindex(reg, watch=[watch])  # no wait: the dead holder's lease is taken over at once
    c = report.counts
    assert report.status == "succeeded" and c["runs_found_killed"] == 1
    assert (
        c["imported"] == n - done and c.get("files_already_registered", 0) == done
    )  # found again, not re-added
    assert reg.stats()["checkpoints"] == n
    assert sorted(r.ref for r in reg.list()) == sorted(f"net-{i}:v1" for i in range(n))  # each once, no v2
    assert reg.verify().clean and not report.damaged
    assert count_rows(db, "watched_files") == n
    assert [r.status for r in job_runs(reg)] == ["succeeded", "killed"]
    assert "found killed by run" in job_runs(reg)[1].message
    for rec in reg.list(limit=5):
        reg.load(rec)
    again = zoo.reindex(reg, watch=[watch])
    assert again.status == "skipped" and again.counts.get("files_hashed", 0) == 0
    reg.close()


def test_concurrent_runs_do_not_both_work(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    reg = zoo.Registry(db)
    E.embed_arch(reg, SPEC)
    watch = tmp_path / "incoming"
    n = 30
    write_files(watch, range(n))
    with Lease(reg, "reindex") as held:  # a run in progress, as far as anyone can tell
        # an hour's --wait: only the release below ends their wait, however slow the machine (-v: they say so)
        waiting = [
            subprocess.Popen(
                zoo_cmd(db, "-v", "reindex", "--watch", str(watch), "--wait", "3600", "--json"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        impatient = subprocess.run(
            zoo_cmd(db, "reindex", "--watch", str(watch)), capture_output=True, text=True
        )
        assert impatient.returncode == 1, impatient.stderr
        assert f"Error: job 'reindex' is already running (held by {held.holder}" in impatient.stderr
        assert (
            "pass --wait SECONDS" in impatient.stderr
            and "wait_s=" not in impatient.stderr
            and "Traceback" not in impatient.stderr
        )
        said = []
        for p in waiting:  # each says it is waiting for this holder before the lease is released
            assert p.stderr is not None
            for line in p.stderr:
                said.append(line)
                if "waiting up to 3600 s for the lease held by" in line:
                    assert held.holder in line
                    break
            else:
                pytest.fail(f"a waiting run ended without waiting: {''.join(said)[-2000:]}")
        assert all(p.poll() is None for p in waiting)
    outs = [p.communicate() for p in waiting]
    assert [p.returncode for p in waiting] == [0, 0], [err for _, err in outs]
    reports = sorted((json.loads(out) for out, _ in outs), key=lambda r: r["run_id"])
    assert [len(r["imported"]) for r in reports] == [n, 0]  # exactly one did the work
    assert [r["status"] for r in reports] == ["succeeded", "skipped"]
    runs = {r.id: r for r in job_runs(reg)}
    first, second = runs[reports[0]["run_id"]], runs[reports[1]["run_id"]]
    assert first.finished_at is not None and second.started_at >= first.finished_at  # one after the other
    refused = [r for r in runs.values() if r.message.startswith("not run")]
    assert len(refused) == 1 and refused[0].status == "skipped" and held.holder in refused[0].message
    assert reg.stats()["checkpoints"] == n and reg.verify().clean
    reg.close()


class LeaseClock:
    """The clocks a lease reads (UTC time for its rows; monotonic time and sleep while waiting) under the
    test's control: time passes when the test says so or when a waiting lease sleeps, not with the machine's
    speed."""

    def __init__(self) -> None:
        self.utc: datetime = m.utcnow()
        self.mono = 0.0
        self.slept: list[float] = []

    def advance(self, seconds: float) -> None:
        self.utc += timedelta(seconds=seconds)
        self.mono += seconds

    # the parts of the `time` module zoo.jobs uses, and zoo.store.models.utcnow
    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def utcnow(self) -> datetime:
        return self.utc


@pytest.mark.backends("sqlite", "postgresql")  # PostgreSQL: the lease row is taken under an advisory lock
def test_lease_expires_and_a_stalled_holder_finds_out(
    registry: zoo.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zoo.jobs

    clock = LeaseClock()
    monkeypatch.setattr(zoo.jobs, "time", clock)
    monkeypatch.setattr(m, "utcnow", clock.utcnow)
    stalled = Lease(
        registry, "job", ttl_s=30, holder="elsewhere:1:aaaa", heartbeat=False
    ).acquire()  # not renewed
    clock.advance(29)  # one second short of its expiry
    with pytest.raises(zoo.LeaseHeldError, match=r"held by elsewhere:1:aaaa until .*pass wait_s=SECONDS"):
        Lease(registry, "job").acquire()
    assert clock.slept == []  # no --wait: refused at once
    with Lease(registry, "job", wait_s=60, poll_s=0.5) as taker:  # waits for the expiry, then takes over
        assert clock.slept == [0.5, 0.5]  # held at 29 and 29.5 s, expired (not renewed for 30 s) at 30 s
        assert lease_info(registry, "job").holder == taker.holder  # type: ignore[union-attr]
        assert not stalled.renew()
        with pytest.raises(zoo.LeaseLostError, match="lost its lease.*elsewhere:1:aaaa"):
            stalled.check()
        stalled.release()  # gives back nothing that is not its own
        assert lease_info(registry, "job").holder == taker.holder  # type: ignore[union-attr]
    assert lease_info(registry, "job") is None
    late = Lease(registry, "job", ttl_s=30, holder="elsewhere:2:bbbb", heartbeat=False).acquire()
    clock.advance(25)
    assert late.renew()  # renewed in time: 30 s from now, so not free at 30 s after it was taken
    clock.advance(10)
    with pytest.raises(zoo.LeaseHeldError, match="elsewhere:2:bbbb"):
        Lease(registry, "job").acquire()
    late.release()


class Counting(DatasetEncoder):
    """A cheap dataset encoder that counts its calls and whose version a test changes."""

    id = "counting"
    dim = 3

    def __init__(self) -> None:
        self.version = "1"
        self.calls: list[str] = []

    def embed(self, dataset: ImageDataset) -> np.ndarray:
        self.calls.append(dataset.fingerprint)
        v = np.array([dataset.images.mean(), dataset.images.std(), dataset.num_classes], dtype=np.float32)
        return v / np.linalg.norm(v)


def test_new_encoder_version_reembeds_exactly_the_stale_rows(registry: zoo.Registry) -> None:
    enc = Counting()

    class Plugin:
        @zoo.hookimpl
        def zoo_register_dataset_encoders(self, register) -> None:  # type: ignore[no-untyped-def]
            register(enc)

    g = torch.Generator().manual_seed(0)
    data = {
        name: from_arrays(torch.rand(12, 6, 6, generator=g), [0, 1, 2] * 4) for name in ("a", "b", "c", "d")
    }
    name = register_plugin(Plugin(), name="test-counting-encoder")
    try:
        for ds in ("a", "b", "c"):
            registry.register_dataset(ds, data[ds], encoders=[enc, "pixels"])
        enc.version = "2"  # vectors of a, b and c by this encoder are now stale ...
        registry.register_dataset("c", data["c"], encoders=[enc])  # ... except c's, made again at version 2
        registry.register_dataset("d", data["d"], encoders=[enc, "pixels"])
        pixels_before = {e.subject_key: e.id for e in E.embeddings(registry, encoder_id="pixels")}
        calls = len(enc.calls)

        report = zoo.reindex(registry, sources=data)
        assert report.counts["datasets_embedded"] == 2 and report.status == "succeeded"
        assert enc.calls[calls:] == [data["a"].fingerprint, data["b"].fingerprint]  # exactly the stale ones
        assert "a/counting, b/counting" in report.messages[0]
        assert {e.subject_key: e.encoder_version for e in E.embeddings(registry, encoder_id="counting")} == {
            "a": "2",
            "b": "2",
            "c": "2",
            "d": "2",
        }
        assert {e.subject_key: e.id for e in E.embeddings(registry, encoder_id="pixels")} == pixels_before

        again = zoo.reindex(registry, sources=data)
        assert again.status == "skipped" and again.counts["datasets_embedded"] == 0
        assert len(enc.calls) == calls + 2
    finally:
        unregister_plugin(name)


def test_corrupt_blob_is_reported_and_not_served(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    reg = zoo.Registry(db)
    watch = tmp_path / "incoming"
    write_files(watch, range(3))
    E.embed_arch(reg, SPEC)
    zoo.reindex(reg, watch=[watch])
    bad, gone = reg.get("net-1"), reg.get("net-2")
    blob = reg.blobs.path(bad.sha256)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor: still parses, no longer matches its hash
    blob.write_bytes(bytes(data))
    reg.blobs.path(gone.sha256).unlink()

    report = zoo.reindex(reg, watch=[watch])
    assert report.damaged and report.counts["blobs_corrupt"] == 1 and report.counts["blobs_missing"] == 1
    assert report.corrupt == (f"{bad.sha256} (net-1:v1)",) and report.missing == (
        f"{gone.sha256} (net-2:v1)",
    )
    record = job_runs(reg)[0]
    assert record.counts["blobs_corrupt"] == 1 and "1 corrupt blob(s), not served" in record.message
    with pytest.raises(zoo.IntegrityError, match="does not match its hash.*not served"):
        reg.load("net-1")
    with pytest.raises(zoo.IntegrityError, match="missing"):
        reg.load("net-2")
    assert reg.load("net-0") is not None
    res = cli_run(db, "reindex", "--watch", str(watch), code=1)  # damage makes the scheduler see a failure
    assert f"corrupt  {bad.sha256} (net-1:v1)" in res.output and "missing  " in res.output
    reg.close()


def _by_count(sign: int):  # type: ignore[no-untyped-def]
    """An evaluator preferring generators trained on more (sign 1) or fewer (sign -1) checkpoints."""

    def score(registry, gen, checkpoints, seed):  # type: ignore[no-untyped-def]
        assert checkpoints and seed == 0
        return sign * len(gen.info["checkpoints"])

    return score


def test_generator_retrained_and_promoted_only_when_not_worse(registry: zoo.Registry) -> None:
    g = torch.Generator().manual_seed(0)
    for ds in ("d0", "d1"):
        registry.register_dataset(ds, from_arrays(torch.rand(20, 8, 8, generator=g), [0, 1] * 10))
    seed = iter(range(1000))

    def add(count: int) -> None:
        for i in range(count):
            s = next(seed)
            registry.add(weights(s), arch=SPEC, name=f"ck{s}", dataset=("d0", "d1")[i % 2])

    add(4)
    igpg.train_on_registry(registry, arch="cnn-tiny", k=64, config=TINY, promote=True, progress=False)
    opts = {"retrain_min": 2, "train_config": TINY, "embeddings": False}

    quiet = zoo.reindex(registry, **opts)  # nothing new since v1's watermark: no training, no scoring
    assert quiet.status == "skipped" and quiet.generators[0].outcome == "current"
    assert len(registry.generators()) == 1

    add(1)
    waiting = zoo.reindex(registry, **opts)
    assert waiting.generators[0].outcome == "waiting" and waiting.generators[0].new_checkpoints == 1
    assert waiting.status == "skipped"

    add(1)  # 2 new: retrain; this evaluator prefers fewer checkpoints, so the candidate loses
    rejected = zoo.reindex(registry, evaluator=_by_count(-1), **opts)
    d = rejected.generators[0]
    assert (d.outcome, d.current, d.candidate, d.new_checkpoints) == ("rejected", "igpg:v1", "igpg:v2", 2)
    assert (d.current_score, d.candidate_score) == (-4.0, -6.0)
    assert rejected.counts["generators_trained"] == 1 and rejected.counts["generators_rejected"] == 1
    assert {x.ref: x.status for x in registry.generators()} == {"igpg:v1": "promoted", "igpg:v2": "retired"}
    assert (
        "candidate igpg:v2 scored -6.0000, current -4.0000" in job_runs(registry, kind="reindex")[0].message
    )

    again = zoo.reindex(
        registry, evaluator=_by_count(-1), **opts
    )  # the rejected watermark counts: no retraining
    assert again.status == "skipped" and again.generators[0].outcome == "current"

    add(2)  # default evaluator (weight-space): promoted exactly when the candidate scores at least as well
    scored = zoo.reindex(registry, **opts).generators[0]
    assert scored.candidate == "igpg:v3" and scored.outcome in ("promoted", "rejected")
    assert np.isfinite([scored.current_score, scored.candidate_score]).all()
    assert (scored.outcome == "promoted") == (scored.candidate_score >= scored.current_score)  # type: ignore[operator]
    current = registry.get_generator("igpg@promoted")
    assert current.ref == ("igpg:v3" if scored.outcome == "promoted" else "igpg:v1")

    # a run killed after storing its candidate: the next run judges it instead of training again
    _, pending = igpg.train_on_registry(
        registry,
        arch="cnn-tiny",
        k=64,
        config=TINY,
        progress=False,
        meta={"trained_by": "reindex", "replaces": current.id},
    )
    resumed = zoo.reindex(registry, evaluator=_by_count(1), **opts)
    d = resumed.generators[0]
    assert (d.outcome, d.candidate) == ("promoted", pending.ref) and resumed.counts.get(
        "generators_trained", 0
    ) == 0
    assert registry.get_generator(pending.id).status == "promoted"
    assert registry.get_generator(current.id).status == "retired"
    assert registry.get_generator(pending.id).config["scope"]["arch"] == SPEC.to_json()

    # the accuracy evaluator: mean over datasets and samples of what the evaluate function says
    gen = igpg.load_generator(registry, pending.ref)
    acc = accuracy_evaluator(lambda net, dataset: {"d0": 1.0, "d1": 0.0}[dataset], samples=2)
    assert acc(registry, gen, registry.search(), 0) == pytest.approx(0.5)
    with pytest.raises(zoo.ZooError, match="knows none of the datasets"):
        accuracy_evaluator(lambda net, dataset: {}[dataset])(registry, gen, registry.search(), 0)

    # a run killed between promoting and retiring: the next run finishes the promotion
    registry.set_generator_status(current.id, "promoted")
    finish = zoo.reindex(registry, **opts)
    assert finish.counts["generators_retired"] == 1 and registry.get_generator(current.id).status == "retired"
    assert [x.ref for x in registry.generators(status="promoted")] == [pending.ref]


# ----------------------------------------------------------------------------------------------------
# a refused file is read again once its sidecar changes
# ----------------------------------------------------------------------------------------------------
def two_sets(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """A timm-style checkpoint holding training and EMA weights: refused until told which to take."""
    state = weights(seed)
    return {
        "state_dict": state,
        "state_dict_ema": {k: v * 0.5 if v.dtype.is_floating_point else v for k, v in state.items()},
    }


@pytest.mark.backends("sqlite", "postgresql")
def test_following_a_refusals_sidecar_fix_imports_the_file(registry: zoo.Registry, tmp_path: Path) -> None:
    watch = tmp_path / "incoming"
    watch.mkdir()
    e1 = watch / "e1.pt"
    torch.save(two_sets(1), e1)
    save_file(weights(2), watch / "p2.safetensors")
    (watch / "p2.json").write_text('{"name": ')  # broken JSON: p2 is refused until it is fixed or removed

    def run() -> zoo.ReindexReport:
        return zoo.reindex(registry, watch=[watch], verify=False, embeddings=False, retrain=False)

    first = run()
    bad = dict(first.bad_files)
    assert first.imported == () and set(bad) == {str(e1), str(watch / "p2.safetensors")}
    assert '{"weights": "state_dict_ema"} in the sidecar e1.json' in bad[str(e1)]
    assert "reads e1.pt again once it or its sidecar e1.json changes" in bad[str(e1)]
    second = run()  # nothing changed: not read again, counted as known
    assert second.status == "skipped" and second.counts["files_bad_known"] == 2
    assert second.counts.get("files_hashed", 0) == 0

    # a sidecar whose fix is wrong, then corrected without changing its size or modification time
    side = watch / "e1.json"
    side.write_text(json.dumps({"weights": "state_dict_emx"}))
    third = run()
    assert third.counts["files_sidecar_changed"] == 1 and third.counts["files_bad_known"] == 1
    assert "no weight set 'state_dict_emx'" in dict(third.bad_files)[str(e1)]
    stamp = side.stat()
    side.write_text(json.dumps({"weights": "state_dict_ema"}))
    os.utime(side, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    (watch / "p2.json").unlink()  # a removed sidecar counts as a change too
    fourth = run()
    assert sorted(fourth.imported) == ["e1:v1", "p2:v1"] and fourth.bad_files == ()
    assert fourth.counts["files_sidecar_changed"] == 2
    rec = registry.get("e1")
    assert rec.meta["source_weights"] == "state_dict_ema"
    got = registry.load_state_dict(rec.ref)
    assert all(torch.equal(got[k], v) for k, v in two_sets(1)["state_dict_ema"].items())
    fifth = run()  # imported: its sidecar is not looked at again
    side.write_text(json.dumps({"weights": "state_dict", "name": "other"}))
    sixth = run()
    assert fifth.status == sixth.status == "skipped" and sixth.counts.get("files_hashed", 0) == 0
    assert [r.ref for r in registry.list()] == ["p2:v1", "e1:v1"]


def test_sidecar_fix_through_the_cli_on_a_registry_from_before_0005(tmp_path: Path) -> None:
    """The tester's run: `zoo reindex --watch inc` refuses e1.pt naming the sidecar key; writing that sidecar
    is enough for the next run to import it (no `touch e1.pt`). The registry was made at migration 0004
    (before sidecars were remembered), with e1.pt already remembered as refused: the upgrade keeps that row,
    and the sidecar written after it counts."""
    from tests.zoo.old_schema import registry_at

    watch = tmp_path / "inc"
    watch.mkdir()
    e1 = watch / "e1.pt"
    torch.save(two_sets(3), e1)
    db = tmp_path / "registry.db"
    with registry_at(db, "0004") as conn:
        st = e1.stat()
        conn.exec_driver_sql(
            "INSERT INTO watched_files (path, size, mtime_ns, sha256, status, "
            "checkpoint_id, message, seen_at) VALUES (?, ?, ?, 'x', 'bad', NULL, "
            "'two weight sets', '2026-01-01 00:00:00')",
            (str(e1), st.st_size, st.st_mtime_ns),
        )

    out = json.loads(
        cli_run(db, "reindex", "--watch", str(watch), "--no-embeddings", "--no-retrain", "--json").output
    )
    assert out["status"] == "skipped" and out["counts"]["files_bad_known"] == 1  # remembered; no sidecar yet
    (watch / "e1.json").write_text(json.dumps({"weights": "state_dict_ema"}))
    out = json.loads(
        cli_run(db, "reindex", "--watch", str(watch), "--no-embeddings", "--no-retrain", "--json").output
    )
    assert out["imported"] == ["e1:v1"] and out["counts"]["files_sidecar_changed"] == 1
    shown = json.loads(cli_run(db, "show", "e1", "--json").output)
    assert shown["meta"]["source_weights"] == "state_dict_ema"
    assert count_rows(db, "watched_files") == 1


def test_several_networks_in_one_state_dict_say_the_sidecar_key(tmp_path: Path) -> None:
    """model.* + model_ema.* in one Lightning state_dict: refused naming both prefixes as sidecar keys, and
    imported once the sidecar says which."""
    watch = tmp_path / "incoming"
    watch.mkdir()
    state = weights(4)
    torch.save(
        {
            "state_dict": {
                **{f"model.{k}": v for k, v in state.items()},
                **{f"model_ema.{k}": v * 0.5 for k, v in state.items()},
            }
        },
        watch / "lit.ckpt",
    )
    reg = zoo.Registry(tmp_path / "registry.db")

    def run() -> zoo.ReindexReport:
        return zoo.reindex(reg, watch=[watch], verify=False, embeddings=False, retrain=False)

    [(_, reason)] = run().bad_files
    assert '{"strip_prefix": "model_ema."} in the sidecar lit.json' in reason
    assert '{"strip_prefix": "model."} in the sidecar lit.json' in reason and "strip_prefix=" not in reason
    (watch / "lit.json").write_text(json.dumps({"strip_prefix": "model_ema."}))
    assert run().imported == ("lit:v1",)
    assert reg.get("lit").meta["stripped_prefix"] == "model_ema."
    reg.close()
