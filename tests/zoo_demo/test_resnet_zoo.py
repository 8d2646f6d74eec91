"""The CIFAR ResNet zoo builder: members with metrics, idempotent, deterministic, no held-out task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from zoo_demo.resnet_zoo import (
    build_resnet_zoo,
    default_resnet_tasks,
    limit_train_set,
    resnet_spec,
    train_resnet,
)
from zoo_demo.tinyzoo import HELD_OUT, default_tasks, held_out_tasks, task_data

TINY: dict[str, Any] = {  # a zoo that builds in seconds: resnet8 at widths 4 and 2, 40 images, one epoch
    "depths": (8,),
    "widths": (4,),
    "extra_widths": ((8, (2,)),),
    "tasks": ("digits-0to4", "digits-5to9"),
    "seeds": (0,),
    "epochs": 1,
    "train_limit": 40,
    "progress": False,
}


def test_members_are_registered_with_metrics_arch_task_and_datasets(registry: zoo.Registry) -> None:
    build = build_resnet_zoo(registry, **TINY)
    names = [r.name for r in build.records]
    assert names == [
        "resnet8-w4-digits-0to4-s0",
        "resnet8-w2-digits-0to4-s0",
        "resnet8-w4-digits-5to9-s0",
        "resnet8-w2-digits-5to9-s0",
    ]
    assert build.added == build.records and not build.skipped
    assert [r.dataset for r in build.records] == ["digits-0to4"] * 2 + ["digits-5to9"] * 2
    assert [r.arch.config["width"] for r in build.records] == [4, 2, 4, 2]
    for r in build.records:
        assert r.arch == resnet_spec(8, r.arch.config["width"])
        assert dict(r.arch.config) == {
            "depth": 8,
            "style": "cifar",
            "in_chans": 1,
            "input_size": 28,
            "num_classes": 10,
            "width": r.arch.config["width"],
        }
        assert 0.0 <= r.metrics["accuracy"] <= 1.0 and r.origin == "trained"
        assert set(r.tags) == {"resnetzoo", f"task-{r.dataset}"}
        assert r.meta["seed"] == 0 and r.meta["epochs"] == 1 and r.meta["train_samples"] <= 41
    assert {d.name for d in registry.datasets()} == {"digits-0to4", "digits-5to9"}
    assert len(registry.search(family="resnet", tags=["resnetzoo"])) == 4
    assert set(build.mean_accuracy()) == {(f"resnet8-w{w}", t) for w in (4, 2) for t in TINY["tasks"]}
    model = registry.load(build.records[0].ref)  # a loadable network that takes the task's images
    test_set = task_data("digits-0to4")[1]
    assert model(test_set.images[:3]).shape == (3, 10)


def test_a_second_build_adds_nothing(registry: zoo.Registry) -> None:
    first = build_resnet_zoo(registry, **TINY)
    again = build_resnet_zoo(registry, **TINY)
    assert not again.added and [r.id for r in again.skipped] == [r.id for r in first.records]
    assert registry.stats()["checkpoints"] == 4
    more = build_resnet_zoo(registry, **{**TINY, "seeds": (0, 1)})  # only the new seed trains
    assert {r.name for r in more.added} == {r.name.replace("-s0", "-s1") for r in first.records}


def test_same_seed_same_weights(registry: zoo.Registry, tmp_path: Path) -> None:
    one = build_resnet_zoo(registry, **{**TINY, "tasks": ("digits-0to4",), "extra_widths": ()})
    other = zoo.Registry(f"sqlite:///{tmp_path / 'other.db'}", blob_root=tmp_path / "other.blobs")
    try:
        two = build_resnet_zoo(other, **{**TINY, "tasks": ("digits-0to4",), "extra_widths": ()})
    finally:
        other.close()
    assert [r.sha256 for r in one.records] == [r.sha256 for r in two.records]
    train_set = limit_train_set(task_data("digits-0to4")[0], 40)
    a, b = (train_resnet(resnet_spec(8, 4), train_set, s, epochs=1) for s in (0, 1))
    assert not torch.equal(a.state_dict()["conv1.weight"], b.state_dict()["conv1.weight"])


def test_held_out_tasks_are_refused_and_never_default(registry: zoo.Registry) -> None:
    tasks = default_resnet_tasks()
    assert len(tasks) == 4 and set(tasks) <= set(default_tasks())
    assert not set(tasks) & set(HELD_OUT) and not set(tasks) & set(held_out_tasks())
    with pytest.raises(zoo.ConfigError, match="held out"):
        build_resnet_zoo(registry, **{**TINY, "tasks": ("digits", "digits-rot15")})
    with pytest.raises(zoo.ConfigError, match="unknown task"):
        build_resnet_zoo(registry, **{**TINY, "tasks": ("no-such-task",)})
    with pytest.raises(zoo.ZooError, match="6n\\+2"):
        build_resnet_zoo(registry, **{**TINY, "depths": (9,)})
    assert registry.stats()["checkpoints"] == 0 and not registry.datasets()


def test_train_limit_takes_a_fixed_stratified_subset() -> None:
    train_set = task_data("digits")[0]
    small = limit_train_set(train_set, 200)
    assert abs(small.num_samples - 200) <= 10 and small.num_classes == 10
    assert (small.class_counts > 0).all()
    assert torch.equal(small.images, limit_train_set(train_set, 200).images)
    assert limit_train_set(train_set, None) is train_set
