"""The vit family: timm Vision Transformers with configurable patch, image size, classes and channels."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.zoo_families.helpers import random_state


@pytest.mark.parametrize(
    ("name", "dim", "heads", "depth"),
    [
        ("vit_tiny_patch16_224", 192, 3, 12),
        ("vit_small_patch16_224", 384, 6, 12),
        ("vit_base_patch16_224", 768, 12, 12),
        ("vit_large_patch16_224", 1024, 16, 24),
    ],
)
def test_sizes_follow_timm(name: str, dim: int, heads: int, depth: int) -> None:
    import timm

    spec = zoo.resolve_arch(name)
    assert (spec.family, spec.name) == ("vit", name)
    assert (spec.config["embed_dim"], spec.config["num_heads"], spec.config["depth"]) == (dim, heads, depth)
    with torch.device("meta"):
        reference = timm.create_model(name, pretrained=False)
    family = zoo.get_family("vit")
    assert family.layout(spec).num_params == sum(p.numel() for p in reference.parameters())
    assert [s.name for s in family.slots(spec)] == list(reference.state_dict())


def test_settings_rename_and_are_detected_back() -> None:
    spec = zoo.resolve_arch("vit_small_patch16_224", img_size=32, patch_size=4, num_classes=10, in_chans=1)
    assert spec.name == "vit_small_patch4_32"
    family = zoo.get_family("vit")
    state = random_state(family, spec)
    assert state["pos_embed"].shape == (1, 65, 384) and state["patch_embed.proj.weight"].shape == (
        384,
        1,
        4,
        4,
    )
    assert state["head.weight"].shape == (10, 384)
    assert zoo.detect_arch(state) == spec
    module = family.load(spec, state)
    with torch.no_grad():
        assert module(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    text = family.describe(spec)
    for part in (
        "ViT-Small/4",
        "32x32",
        "64 patches",
        "384",
        "6 attention heads",
        "12 pre-norm",
        "10 classes",
    ):
        assert part in text


def test_timm_module_with_a_tag_and_without_head() -> None:
    import timm

    with torch.device("meta"):
        m = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=4)
    spec = zoo.detect_arch(m.state_dict())
    assert spec == zoo.resolve_arch("vit_tiny_patch16_224.augreg_in21k", num_classes=0, depth=4)
    assert "no classification head" in zoo.get_family("vit").describe(spec)


def test_rebuild_computes_like_timm() -> None:
    import timm

    torch.manual_seed(0)
    reference = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=3
    ).eval()
    family = zoo.get_family("vit")
    spec = zoo.resolve_arch("vit_tiny_patch8_32", num_classes=3)
    module = family.rebuild(spec, family.flatten(spec, reference.state_dict()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(module(x), reference(x))


def test_invalid_settings_name_the_fix() -> None:
    with pytest.raises(zoo.ZooError, match="not a multiple of patch_size"):
        zoo.resolve_arch("vit_base_patch16_224", img_size=100)
    with pytest.raises(zoo.ZooError, match="unknown setting"):
        zoo.resolve_arch("vit_base_patch16_224", heads=3)
    with pytest.raises(zoo.ZooError, match="contradicts"):
        zoo.resolve_arch("vit_base_patch16_224", embed_dim=192)
