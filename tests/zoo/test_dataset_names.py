"""One meaning per dataset name (issue 17): derived data stay readable, a registered name always means its
data, a new version keeps its parent's dataset, and an exact name is served before it has vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from zoo.datasets import derived, invert, load_digits, load_source, mirror, rotate


def tiny_cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))


def digits28() -> zoo.ImageDataset:
    return load_digits().resize(28)


def test_derived_datasets_are_read_again_bit_for_bit() -> None:
    base = load_digits()
    made = [
        base.resize(28),
        rotate(base.resize(28), 15),
        rotate(base, 90),
        invert(base),
        mirror(base),
        base.select_classes([5, 6, 7, 8, 9]),
        mirror(invert(base.resize((20, 24)))).select_classes([1, 0]).split(0.8, seed=3)[1],
    ]
    for ds in made:
        assert ds.source is not None and ds.source["kind"] == "derived"
        again = load_source(ds.source)
        assert again.fingerprint == ds.fingerprint and again.image_shape == ds.image_shape
    assert made[0].image_shape == (1, 28, 28)
    assert base.map_images(lambda x: x * 0.5).source is None  # an arbitrary function cannot be replayed
    assert derived(None, "invert") is None
    with pytest.raises(zoo.DatasetError, match="unknown dataset step"):
        derived(base.source, "sharpen")


def test_a_new_version_inherits_its_parents_dataset(registry: zoo.Registry) -> None:
    net = tiny_cnn(0)
    registry.add(net, name="my-cnn", dataset="digits", origin="trained")
    with torch.no_grad():
        net.classifier[-1].bias.add_(0.01)
    v2 = registry.add(net, name="my-cnn", origin="fine-tuned", parent="my-cnn:v1")
    assert v2.ref == "my-cnn:v2" and v2.dataset == "digits" and registry.get("my-cnn:v2").dataset == "digits"
    with torch.no_grad():
        net.classifier[-1].bias.add_(0.01)
    v3 = registry.add(net, name="my-cnn", origin="fine-tuned", parent="my-cnn:v2", dataset="digits-rot90")
    assert v3.dataset == "digits-rot90"  # told otherwise
    assert [n.checkpoint.ref for n in registry.nearest("cnn-tiny", "digits")] == ["my-cnn:v2", "my-cnn:v1"]


def test_a_missing_parent_is_refused_before_anything_is_written(registry: zoo.Registry) -> None:
    with pytest.raises(zoo.NotFoundError, match="parent 'nosuch': no checkpoint named 'nosuch'"):
        registry.add(tiny_cnn(1), name="child", parent="nosuch")
    assert not [p for p in registry.blobs.root.rglob("*") if p.name != "tmp"]  # no blob, no blob folder
    assert registry.stats()["checkpoints"] == 0


def test_an_exact_name_is_served_before_it_has_vectors(registry: zoo.Registry) -> None:
    named = registry.add(tiny_cnn(2), name="named", dataset="cifar10", metrics={"accuracy": 0.9})
    (hit,) = registry.nearest("cnn-tiny", "cifar10")
    assert hit.checkpoint.id == named.id and hit.similarity == 1.0 and hit.method == "name"
    p = zoo.retrieve_or_generate("cnn-tiny", "cifar10", registry=registry)
    assert p.source == "retrieved" and p.checkpoint.id == named.id and p.similarity == 1.0
    assert "registered with exactly dataset 'cifar10', which has no vector yet" in p.reason
    # once its data are registered, the vector is computed and the same checkpoint is the nearest
    registry.register_dataset("cifar10", digits28(), encoders=["pixels"])
    assert registry.nearest("cnn-tiny", "cifar10")[0].method == "exact"


def test_no_vector_anywhere_is_said_as_it_is(registry: zoo.Registry) -> None:
    registry.register_dataset("digits", digits28(), encoders=["pixels"])
    registry.add(tiny_cnn(3), name="named", dataset="cifar10")
    assert registry.nearest("cnn-tiny", "digits") == []
    reason, hints = zoo.retrieval.why_none(registry, zoo.resolve_arch("cnn-tiny"), "digits")
    assert "registered with a dataset ('cifar10'), but none of those datasets has a pixels vector" in reason
    assert "registry.register_dataset('cifar10', data)" in reason
    assert [h.cli for h in hints] == ["`zoo datasets register cifar10 SOURCE`"]
    with pytest.raises(zoo.NoWeightsError) as err:
        zoo.retrieve("cnn-tiny", "digits", registry=registry)
    assert "none of those datasets has a pixels vector" in str(err.value)
    assert "is registered with a dataset" not in str(err.value)  # the old, false, claim


def test_a_registered_name_given_as_labels_means_its_data(registry: zoo.Registry) -> None:
    registry.register_dataset("digits", digits28(), encoders=["pixels"])  # 28x28, readable again
    registry.add(tiny_cnn(4), name="net", dataset="digits")
    p = zoo.retrieve_or_generate("cnn-tiny", "digits", registry=registry, labelled="digits")
    assert p.source == "retrieved" and p.score is not None  # not scikit-learn's raw 8x8 "digits"
    registry.register_dataset("raw", "digits", encoders=["pixels"])  # 8x8
    with pytest.raises(zoo.DatasetError) as err:
        zoo.retrieve_or_generate("cnn-tiny", "digits", registry=registry, labelled="raw")
    message = str(err.value)
    assert "1x8x8 images but cnn-tiny takes 1x28x28" in message and "labelled='digits'" in message
    assert "--labelled digits" in str(err.value.for_cli())
    registry.register_dataset("memory", (digits28().images, digits28().labels), encoders=["pixels"])
    assert registry.get_dataset("memory").meta["source"] is None
    with pytest.raises(zoo.DatasetError, match="cannot read the data of dataset 'memory' again"):
        zoo.retrieve_or_generate("cnn-tiny", "digits", registry=registry, labelled="memory")


def test_registering_the_same_data_from_memory_keeps_the_readable_source(registry: zoo.Registry) -> None:
    data = digits28()
    registry.register_dataset("d", data, encoders=["pixels"])
    registry.register_dataset("d", zoo.datasets.from_arrays(data.images, data.labels), encoders=["pixels"])
    assert registry.get_dataset("d").meta["source"] == data.source


class _Mean(zoo.DatasetEncoder):
    """A cheap second encoder: the vectors it makes exist only where zoo can read the data."""

    id = "mean"
    version = "1"

    @property
    def dim(self) -> int:
        return 2

    def embed(self, dataset: zoo.ImageDataset) -> np.ndarray:
        return np.array([float(dataset.images.mean()), 1.0], dtype=np.float32)


def test_vectors_are_computed_where_the_data_can_be_read_again(registry: zoo.Registry) -> None:
    registry.register_dataset("readable", rotate(digits28(), 15), encoders=["pixels"])  # a derived source
    data = digits28()
    registry.register_dataset("memory", (data.images, data.labels), encoders=["pixels"])
    report = zoo.retrieval.refresh_stale(registry, encoders=[_Mean()], archs=False)
    assert report.datasets_embedded == ("readable/mean",) and report.datasets_need_data == ("memory",)
