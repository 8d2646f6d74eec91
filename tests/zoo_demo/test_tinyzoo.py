"""The tiny zoo builder: real tasks, registered checkpoints with datasets and accuracies, idempotent."""

from __future__ import annotations

import pytest
import torch

import zoo
import zoo_demo.tinyzoo as tinyzoo
from zoo.datasets import blur, invert, load_digits, load_mnist, mirror, rotate, scale
from zoo_demo.tinyzoo import (
    GRAMMAR,
    TASKS,
    Task,
    build_generalisation_zoo,
    build_tiny_zoo,
    default_tasks,
    generalisation_split,
    held_out_tasks,
    mnist_dir,
    task_data,
)


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


# -- parametric task names and the generalisation split (issue 16) -----------------------------------------
def _digits28():  # type: ignore[no-untyped-def]
    return load_digits().resize(28)


def test_a_task_name_is_a_source_and_steps_applied_left_to_right() -> None:
    t = Task.parse("digits-rot60-invert")
    assert (t.source, [s.text for s in t.steps]) == ("digits", ["rot60", "invert"])
    want = invert(rotate(_digits28(), 60)).split(0.8, seed=0)[0]
    got = task_data("digits-rot60-invert")[0]
    assert got.fingerprint == want.fingerprint and got.source == want.source  # replayable, same recipe
    assert task_data("digits-invert-rot60")[0].fingerprint != got.fingerprint  # order matters
    for name, make in [
        ("digits-blur1.5", lambda d: blur(d, 1.5)),
        ("digits-scale0.7", lambda d: scale(d, 0.7)),
        ("digits-mirror-rot90", lambda d: rotate(mirror(d), 90)),
    ]:
        assert task_data(name)[0].fingerprint == make(_digits28()).split(0.8, seed=0)[0].fingerprint, name
    assert "rotated 60 degrees counter-clockwise, then inverted" in t.description


def test_a_class_step_keeps_those_classes_relabelled_in_the_order_written() -> None:
    t = Task.parse("digits-c86420")
    assert t.classes == (8, 6, 4, 2, 0) and t.num_classes == 5
    assert "classes [8, 6, 4, 2, 0] relabelled 0..4" in t.description
    train, test = task_data(t)
    whole = _digits28()
    assert train.num_classes == test.num_classes == 5
    assert train.num_samples + test.num_samples == int(sum(whole.class_counts[[8, 6, 4, 2, 0]]))
    assert [int(n) for n in train.class_names] == [8, 6, 4, 2, 0]  # label 0 is digit 8
    assert Task.parse("digits-0to4").classes == Task.parse("digits-c01234").classes == (0, 1, 2, 3, 4)
    assert task_data("digits-0to4")[0].fingerprint == task_data("digits-c01234")[0].fingerprint


def test_the_classic_task_names_give_the_very_same_data() -> None:
    """The 15 hand-listed tasks before issue 16: transform, then class subset."""
    old = {  # name -> (transform, classes)
        "digits": (None, None),
        "digits-rot90": (lambda d: rotate(d, 90), None),
        "digits-rot180": (lambda d: rotate(d, 180), None),
        "digits-invert": (invert, None),
        "digits-mirror": (mirror, None),
        "digits-0to4": (None, (0, 1, 2, 3, 4)),
        "digits-5to9": (None, (5, 6, 7, 8, 9)),
        "digits-rot270": (lambda d: rotate(d, 270), None),
        "mnist": (None, None),
        "mnist-rot90": (lambda d: rotate(d, 90), None),
        "mnist-invert": (invert, None),
        "mnist-5to9": (None, (5, 6, 7, 8, 9)),
        "mnist-rot180": (lambda d: rotate(d, 180), None),
        "digits-rot15": (lambda d: rotate(d, 15), None),
        "mnist-rot15": (lambda d: rotate(d, 15), None),
    }
    assert list(TASKS) == list(old)
    for name, (fn, classes) in old.items():
        if name.startswith("mnist") and mnist_dir() is None:
            continue
        data = _digits28() if name.startswith("digits") else load_mnist(mnist_dir(), limit=1000)  # type: ignore[arg-type]
        data = fn(data) if fn else data
        data = data.select_classes(classes) if classes else data
        want = data.split(0.8, seed=0)
        got = task_data(name, mnist_limit=1000)
        for g, w in zip(got, want):
            assert g.fingerprint == w.fingerprint and g.source == w.source, name
        assert TASKS[name].name == name and name in TASKS


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("cifar", "the source must be digits or mnist, not 'cifar'"),
        ("Mnist-rot45", "not 'Mnist'"),
        ("mnist--invert", "a step is empty"),
        ("mnist-rot", "cannot read the step 'rot'"),
        ("mnist-rotate45", "cannot read the step 'rotate45'"),
        ("mnist-rot0", "more than 0 and less than 360"),
        ("mnist-rot360", "more than 0 and less than 360"),
        ("mnist-blur0", "positive sigma"),
        ("mnist-scale1", "other than 1"),
        ("mnist-blur1.50", "as blur1.5"),
        ("mnist-rot045", "as rot45"),
        ("mnist-c1", "at least 2 distinct classes"),
        ("mnist-c113", "at least 2 distinct classes"),
        ("mnist-c0123456789", "leave the step out"),
        ("mnist-c01-c10", "one step"),
        ("mnist-4to0", "count up"),
        ("", "non-empty"),
    ],
)
def test_a_name_outside_the_grammar_is_refused_naming_it(name: str, why: str) -> None:
    with pytest.raises(zoo.DatasetError) as err:
        Task.parse(name)
    assert f"unknown task {name!r}: " in str(err.value) and why in str(err.value)
    assert GRAMMAR in str(err.value) and "SOURCE[-STEP]" in GRAMMAR
    with pytest.raises(zoo.DatasetError, match="unknown task"):
        task_data(name)
    assert name not in TASKS and TASKS.get(name) is None


def _check_split(train: tuple[str, ...], near: tuple[str, ...], far: tuple[str, ...]) -> None:
    assert len(train) >= 30 and len(near) >= 3 and len(far) >= 3
    assert (
        len(set(train)) == len(train) and not (set(near) | set(far)) & set(train) and not set(near) & set(far)
    )
    assert any(len(Task.parse(t).steps) >= 2 for t in far) and any(
        len(Task.parse(t).steps) >= 2 for t in train
    )
    seen: dict[str, str] = {}
    for name in train:  # every task loads with its class count; no two names hold the same data
        data, _ = task_data(name, mnist_limit=600)
        assert data.num_classes == Task.parse(name).num_classes and data.image_shape == (1, 28, 28), name
        assert data.fingerprint not in seen, (name, seen.get(data.fingerprint))
        seen[data.fingerprint] = name
    for name in near + far:  # a held-out task is not training data under another name
        data, _ = task_data(name, mnist_limit=600)
        assert data.num_classes == Task.parse(name).num_classes, name
        assert data.fingerprint not in seen, (
            f"held-out {name} is the training task {seen.get(data.fingerprint)}"
        )


def test_the_generalisation_split_holds_out_its_near_and_far_tasks() -> None:
    train, near, far = generalisation_split()
    if mnist_dir() is not None:
        assert (train, near, far) == (
            tinyzoo.GENERALISATION_TRAIN,
            tinyzoo.HELD_OUT_NEAR,
            tinyzoo.HELD_OUT_FAR,
        )
        assert {Task.parse(t).source for t in train} == {"digits", "mnist"}
    _check_split(train, near, far)


def test_the_digits_only_split_needs_no_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tinyzoo, "mnist_dir", lambda: None)
    train, near, far = generalisation_split()
    assert train == tinyzoo.GENERALISATION_TRAIN_DIGITS_ONLY
    assert {Task.parse(t).source for t in train + near + far} == {"digits"}
    _check_split(train, near, far)


def test_the_generalisation_zoo_trains_only_its_training_tasks(
    registry: zoo.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = (("digits-c01", "digits-rot30-c01"), ("digits-rot15-c01",), ("digits-rot45-invert-c01",))
    monkeypatch.setattr(tinyzoo, "generalisation_split", lambda: small)
    recs = build_generalisation_zoo(registry, per_task=1, steps=5, progress=False)
    assert [r.name for r in recs] == ["digits-c01-s1", "digits-rot30-c01-s1"]  # seeds from 1
    again = build_generalisation_zoo(registry, per_task=1, steps=5, progress=False)
    assert [r.id for r in again] == [r.id for r in recs]  # idempotent with seeds from 1 too
    assert {d.name for d in registry.datasets()} == {"digits-c01", "digits-rot30-c01"}
    assert registry.get_dataset("digits-rot30-c01").description == Task.parse("digits-rot30-c01").description
