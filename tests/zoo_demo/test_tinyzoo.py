"""The tiny zoo builder: real tasks, registered checkpoints with datasets and accuracies, idempotent."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo_demo.tinyzoo import TASKS, build_tiny_zoo, default_tasks, held_out_tasks, mnist_dir, task_data


def test_tasks_are_distinct_real_datasets() -> None:
    assert len(default_tasks()) >= 8 and set(default_tasks()) <= set(TASKS)
    tr, te = task_data("digits-0to4")
    assert tr.num_classes == 5 and tr.image_shape == (1, 28, 28)
    assert len(tr.labels) + len(te.labels) == int(sum((zoo.as_dataset("digits").labels < 5).tolist()))
    plain, _ = task_data("digits")
    rotated, _ = task_data("digits-rot90")
    assert torch.equal(torch.rot90(plain.images, 1, dims=(2, 3)), rotated.images)


def test_held_out_tasks_are_never_training_tasks() -> None:
    held = held_out_tasks()
    assert held and set(held) <= set(TASKS) and not set(held) & set(default_tasks())
    plain, _ = task_data("digits")
    tilted, _ = task_data("digits-rot15")
    assert tilted.images.shape == plain.images.shape and not torch.equal(tilted.images, plain.images)


def test_build_registers_checkpoints_and_datasets_idempotently(registry: zoo.Registry) -> None:
    recs = build_tiny_zoo(registry, ["digits", "digits-invert"], per_task=2, steps=20, progress=False)
    assert [r.name for r in recs] == ["digits-s0", "digits-s1", "digits-invert-s0", "digits-invert-s1"]
    assert all(r.arch.name == "cnn-tiny" and r.origin == "trained" and "tinyzoo" in r.tags for r in recs)
    assert all(0.0 <= r.metrics["accuracy"] <= 1.0 for r in recs)
    assert {d.name for d in registry.datasets()} == {"digits", "digits-invert"}
    again = build_tiny_zoo(registry, ["digits", "digits-invert"], per_task=2, steps=20, progress=False)
    assert [r.id for r in again] == [r.id for r in recs] and registry.stats()["checkpoints"] == 4
    hits = registry.nearest("cnn-tiny", task_data("digits-invert")[1], k=2)
    assert {h.dataset for h in hits} == {"digits-invert"}


def test_mnist_tasks_need_the_files(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if mnist_dir() is None:
        with pytest.raises(zoo.DatasetError, match="ZOO_MNIST_DIR"):
            task_data("mnist")
    else:
        tr, te = task_data("mnist", mnist_limit=500)
        assert len(tr.labels) + len(te.labels) == 500


def test_the_old_import_paths_still_work_with_a_deprecation_warning() -> None:
    import zoo_demo.job
    import zoo_demo.tinyzoo

    with pytest.warns(DeprecationWarning, match="zoo.tinyzoo.build_tiny_zoo moved to zoo_demo.tinyzoo"):
        from zoo.tinyzoo import build_tiny_zoo as old
    assert old is zoo_demo.tinyzoo.build_tiny_zoo
    with pytest.warns(DeprecationWarning, match="zoo.demo.run_demo moved to zoo_demo.job"):
        from zoo.demo import run_demo
    assert run_demo is zoo_demo.job.run_demo
    with pytest.raises(ImportError):
        from zoo.tinyzoo import no_such_name  # noqa: F401


def test_the_demo_command_comes_from_its_plugin() -> None:
    from click.testing import CliRunner

    from zoo.cli import cli

    res = CliRunner().invoke(cli, ["demo", "--help"])
    assert res.exit_code == 0 and "The main job" in res.output
    assert next(p for p in zoo.list_plugins() if p.name == "demo").module == "zoo_demo.plugin"


def test_tasks_are_registered_with_the_data_they_train_on(registry: zoo.Registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 17: the tiny zoo's 'digits' is its 28x28 training split, readable again; a registry where
    'digits' means other data (scikit-learn's raw 8x8 images) is refused, not filed under it."""
    from click.testing import CliRunner

    from zoo.cli import cli
    from zoo.datasets import load_source

    build_tiny_zoo(registry, ["digits", "digits-rot15"], per_task=1, steps=20, progress=False)
    for task in ("digits", "digits-rot15"):
        rec = registry.get_dataset(task)
        assert rec.meta["image_shape"] == [1, 28, 28]
        assert (
            load_source(rec.meta["source"]).fingerprint == rec.fingerprint == task_data(task)[0].fingerprint
        )
    res = CliRunner().invoke(
        cli,
        [
            "--registry",
            registry.url,
            "--blob-root",
            str(registry.blobs.root),
            "get",
            "cnn-tiny",
            "--dataset",
            "digits-rot15",
            "--labelled",
            "digits",
            "--out",
            str(tmp_path / "w.safetensors"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    with zoo.Registry(tmp_path / "other.db") as other:
        other.register_dataset("digits", "digits", encoders=["pixels"])  # the built-in: raw 8x8 images
        with pytest.raises(zoo.DatasetError, match="registered with other data .*1x8x8.*1x28x28") as err:
            build_tiny_zoo(other, ["digits"], per_task=1, steps=20, progress=False)
        assert "`zoo datasets rm digits`" in str(err.value.for_cli())
        assert other.stats()["checkpoints"] == 0  # refused before anything was trained or filed
