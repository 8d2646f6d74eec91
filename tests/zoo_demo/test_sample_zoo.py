"""`zoo sample-zoo`: a small real zoo on a fresh registry from the command line, idempotent."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import zoo
from zoo.cli import cli


def run(db: Path, *args: str, code: int = 0) -> str:
    res = CliRunner().invoke(cli, ["--registry", str(db), *args])
    assert res.exit_code == code, res.output
    return res.stdout if "--json" in args else res.output  # progress bars go to stderr


def test_sample_zoo_registers_datasets_and_checkpoints_with_metrics_once(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "registry.db"
    db.parent.mkdir()
    args = ("sample-zoo", "--tasks", "digits,digits-invert", "--per-task", "2", "--steps", "3", "--json")
    first = json.loads(run(db, *args))
    assert (
        first["checkpoints"] == 4 and first["new"] == 4 and first["datasets"] == ["digits", "digits-invert"]
    )
    reg = zoo.Registry(db, create=False)
    try:
        recs = reg.search(arch="cnn-tiny")
        assert sorted(r.name for r in recs) == [
            "digits-invert-s0",
            "digits-invert-s1",
            "digits-s0",
            "digits-s1",
        ]
        assert all(r.dataset in ("digits", "digits-invert") and "accuracy" in r.metrics for r in recs)
        assert all("tinyzoo" in r.tags for r in recs)
        datasets = {d.name: d for d in reg.datasets()}
        assert set(datasets) == {"digits", "digits-invert"}
        assert all(d.num_samples for d in datasets.values())
        hashes = sorted(r.sha256 for r in recs)
    finally:
        reg.close()
    again = json.loads(run(db, *args))  # idempotent: nothing trained or added again
    assert again["checkpoints"] == 4 and again["new"] == 0
    reg = zoo.Registry(db, create=False)
    try:
        assert sorted(r.sha256 for r in reg.search(arch="cnn-tiny")) == hashes
        assert reg.stats()["checkpoints"] == 4
    finally:
        reg.close()


def test_sample_zoo_says_what_it_trains_and_what_to_run_next(tmp_path: Path) -> None:
    out = run(tmp_path / "registry.db", "sample-zoo", "--tasks", "digits", "--per-task", "1", "--steps", "2")
    assert "training 1 cnn-tiny network(s) of 2 steps (about" in out  # the expected time, before it starts
    assert "sample zoo: 1 cnn-tiny checkpoints on 1 datasets (1 new)" in out
    assert "next: zoo nearest cnn-tiny digits" in out


def test_sample_zoo_refuses_an_unknown_task_naming_the_grammar(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    out = run(db, "sample-zoo", "--tasks", "digits,nope", code=2)
    assert "unknown task 'nope'" in out and "SOURCE[-STEP]" in out and "digits-rot90" in out
    assert not db.exists()  # nothing was created


def test_sample_zoo_refuses_a_same_named_checkpoint_it_did_not_make(tmp_path: Path) -> None:
    """A user's own `digits-s0` is never taken over nor counted as a member: refused before training."""
    import torch

    db = tmp_path / "registry.db"
    torch.manual_seed(0)
    own = tmp_path / "own.pt"
    torch.save(zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")).state_dict(), own)
    run(db, "add", str(own), "--name", "digits-s0", "--dataset", "cifar10")
    out = run(db, "sample-zoo", "--tasks", "digits", "--per-task", "2", "--steps", "2", code=1)
    assert "digits-s0:v1 (cnn-tiny on cifar10)" in out and "not tiny-zoo members" in out
    assert "`zoo rm digits-s0`" in out and "training" not in out
    with zoo.Registry(db) as reg:
        assert [r.ref for r in reg.search()] == ["digits-s0:v1"]  # nothing trained, nothing added
        reg.remove("digits-s0")
    out = run(db, "sample-zoo", "--tasks", "digits", "--per-task", "1", "--steps", "2")
    assert "(1 new)" in out


def test_a_refused_sample_zoo_is_recorded_in_the_words_of_the_command_line(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    run(db, "datasets", "register", "digits", "digits")  # the raw 8x8 images: not the task's data
    out = run(db, "sample-zoo", "--tasks", "digits", "--per-task", "1", "--steps", "2", code=1)
    assert "`zoo datasets rm digits`" in out
    jobs = run(db, "jobs")
    assert "`zoo datasets rm digits`" in jobs and "registry.remove_dataset" not in jobs


def test_sample_zoo_refuses_an_mnist_folder_without_its_files_and_counts_a_task_once(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run(db, "sample-zoo", "--tasks", "mnist", "--mnist", str(empty), code=2)
    assert "holds no MNIST IDX files" in out and not db.exists()
    out = run(db, "sample-zoo", "--tasks", "digits,digits", "--per-task", "1", "--steps", "2")
    assert "sample zoo: 1 cnn-tiny checkpoints on 1 datasets (1 new)" in out
