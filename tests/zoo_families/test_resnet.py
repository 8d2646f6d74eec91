"""The resnet family: CIFAR ResNets (real pretrained checkpoints) and ImageNet ResNets (torchvision, timm)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from tests.zoo_families.helpers import random_state, same_bits


def _checkpoint(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True, map_location="cpu")["state_dict"]


@pytest.mark.parametrize(
    ("file", "depth", "params"),
    [("resnet20-12fca82f.th", 20, 269_722), ("resnet56-4bfd9763.th", 56, 853_018)],
)
def test_real_cifar_checkpoints_load_as_they_are(
    pretrained: Path, file: str, depth: int, params: int
) -> None:
    raw = _checkpoint(pretrained / file)
    assert all(k.startswith("module.") for k in raw) and not any("num_batches_tracked" in k for k in raw)
    family = zoo.get_family("resnet")
    spec = family.detect(raw)
    assert spec == zoo.resolve_arch(f"resnet{depth}") and spec.config["style"] == "cifar"
    module = family.load(spec, raw)
    state = module.state_dict()
    for key, value in raw.items():
        assert same_bits(state[key.removeprefix("module.")], value)
    assert all(int(v) == 0 for k, v in state.items() if k.endswith("num_batches_tracked"))
    assert family.layout(spec).num_params == params
    with torch.no_grad():
        logits = module(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    # flatten -> rebuild of real weights is bitwise exact too
    again = family.rebuild(spec, [t.clone() for t in family.flatten(spec, raw)]).state_dict()
    assert all(same_bits(again[k], v) for k, v in state.items())


def test_real_checkpoint_through_the_registry(pretrained: Path, registry: zoo.Registry) -> None:
    rec = registry.add(pretrained / "resnet20-12fca82f.th", dataset="cifar10", metrics={"accuracy": 0.9159})
    assert rec.arch.name == "resnet20" and rec.num_params == 269_722
    module = registry.load(rec.ref)
    raw = _checkpoint(pretrained / "resnet20-12fca82f.th")
    assert all(same_bits(module.state_dict()[k.removeprefix("module.")], v) for k, v in raw.items())


@pytest.mark.parametrize(
    ("name", "style", "label"),
    [
        ("resnet20", "cifar", "resnet20"),
        ("resnet56", "cifar", "resnet56"),
        ("resnet-110", "cifar", "resnet110"),
        ("resnet18", "imagenet", "resnet18"),
        ("ResNet-50", "imagenet", "resnet50"),
        ("resnet101", "imagenet", "resnet101"),
        ("resnet152", "imagenet", "resnet152"),
        ("resnet50_cifar", "cifar", "resnet50_cifar"),
        ("cifar_resnet50", "cifar", "resnet50_cifar"),
        ("resnet32-cifar100", "cifar", "resnet32"),
    ],
)
def test_names_pick_the_style(name: str, style: str, label: str) -> None:
    spec = zoo.resolve_arch(name)
    assert (spec.family, spec.name, spec.config["style"]) == ("resnet", label, style)


def test_invalid_depths_name_the_fix() -> None:
    with pytest.raises(zoo.ZooError, match="6n\\+2"):
        zoo.resolve_arch("resnet21")
    with pytest.raises(zoo.ZooError, match="unknown setting"):
        zoo.resolve_arch("resnet18", width=32)
    with pytest.raises(zoo.ZooError, match="positive integer"):
        zoo.resolve_arch("resnet20", num_classes=0)


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_torchvision_state_dicts_are_recognised_with_their_settings(depth: int) -> None:
    import torchvision

    with torch.device("meta"):
        tv = getattr(torchvision.models, f"resnet{depth}")(num_classes=37)
    spec = zoo.detect_arch(tv.state_dict())
    assert spec == zoo.resolve_arch(f"resnet{depth}", num_classes=37)
    assert spec.config == {
        "depth": depth,
        "num_classes": 37,
        "in_chans": 3,
        "input_size": 224,
        "style": "imagenet",
    }


def test_timm_resnet_and_other_input_channels() -> None:
    import timm

    with torch.device("meta"):
        m = timm.create_model("resnet50", pretrained=False, num_classes=10, in_chans=1)
    assert zoo.detect_arch(m.state_dict()) == zoo.resolve_arch("resnet50", num_classes=10, in_chans=1)


def test_cifar_and_imagenet_of_the_same_depth_are_told_apart() -> None:
    family = zoo.get_family("resnet")
    for name in ("resnet50", "resnet50_cifar"):
        spec = zoo.resolve_arch(name)
        state = random_state(family, spec)
        assert ("linear.weight" in state) == (spec.config["style"] == "cifar")
        assert ("fc.weight" in state) == (spec.config["style"] == "imagenet")
        assert zoo.detect_arch(state) == spec


def test_imagenet_rebuild_computes_like_torchvision() -> None:
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=5).eval()
    family = zoo.get_family("resnet")
    spec = zoo.resolve_arch("resnet18", num_classes=5)
    module = family.rebuild(spec, family.flatten(spec, reference.state_dict()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(module(x), reference(x))


def test_descriptions_name_depth_widths_and_classes() -> None:
    family = zoo.get_family("resnet")
    text = family.describe(zoo.resolve_arch("resnet56", num_classes=100))
    assert (
        "ResNet-56" in text and "9 basic blocks" in text and "16, 32 and 64" in text and "100 classes" in text
    )
    text = family.describe(zoo.resolve_arch("resnet50"))
    assert "ResNet-50" in text and "[3, 4, 6, 3] bottleneck" in text and "2048->1000" in text
