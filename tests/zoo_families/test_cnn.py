"""The cnn family: the small zoo CNNs."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.zoo_families.helpers import random_state


def test_tiny_is_the_standard_zoo_cnn() -> None:
    family = zoo.get_family("cnn")
    spec = zoo.resolve_arch("cnn-tiny")
    shapes = {s.name: s.shape for s in family.layout(spec).generated}
    assert shapes == {
        "features.0.weight": (8, 1, 5, 5),
        "features.0.bias": (8,),
        "features.3.weight": (6, 8, 5, 5),
        "features.3.bias": (6,),
        "features.6.weight": (4, 6, 2, 2),
        "features.6.bias": (4,),
        "classifier.1.weight": (20, 36),
        "classifier.1.bias": (20,),
        "classifier.3.weight": (10, 20),
        "classifier.3.bias": (10,),
    }
    assert family.layout(spec).num_params == 2464
    assert family.layout(zoo.resolve_arch("cnn-tiny", in_chans=3)).num_params == 2864
    text = family.describe(spec)
    assert "8@5x5, 6@5x5, 4@2x2" in text and "36->20->10" in text and "1x28x28" in text


def test_settings_are_configurable_and_detected_back() -> None:
    spec = zoo.resolve_arch(
        "cnn",
        channels=[12, 10],
        kernels=[3, 3],
        hidden=32,
        in_chans=3,
        num_classes=100,
        input_size=32,
        activation="gelu",
    )
    assert spec.name == "cnn-custom"
    family = zoo.get_family("cnn")
    module = family.load(spec, random_state(family, spec))
    assert isinstance(module.features[1], torch.nn.GELU)
    with torch.no_grad():
        assert module(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    detected = zoo.detect_arch(module.state_dict())
    # the activation has no weights: detection assumes relu, everything else is read from shapes
    assert detected == zoo.resolve_arch("cnn", **{**dict(spec.config), "activation": "relu"})


def test_specs_are_named_after_their_structure() -> None:
    assert zoo.resolve_arch("cnn-tiny", channels=[16, 12, 8], hidden=48).name == "cnn-small"
    assert zoo.resolve_arch("cnn-tiny", channels=[3, 3, 3]).name == "cnn-custom"
    assert zoo.resolve_arch("tiny", in_chans=3).name == "cnn-tiny"


def test_small_is_about_ten_thousand_parameters() -> None:
    n = zoo.get_family("cnn").layout(zoo.resolve_arch("cnn-small")).num_params
    assert 9_000 <= n <= 11_000


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"activation": "swish2"}, "unknown activation"),
        ({"channels": [8, 6]}, "same length"),
        ({"input_size": 8}, "too small"),
        ({"dropout": 0.1}, "unknown setting"),
    ],
)
def test_invalid_settings_name_the_fix(settings: dict, message: str) -> None:
    with pytest.raises(zoo.ZooError, match=message):
        zoo.resolve_arch("cnn-tiny", **settings)
