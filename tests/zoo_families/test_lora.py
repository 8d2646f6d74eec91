"""The lora family: adapters on a ViT base, stored and generated without the base."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.zoo_families.helpers import random_state, same_bits
from zoo_families.lora import LoRALinear, lora_state_dict, merge

BASE = {"img_size": 32, "patch_size": 8, "num_classes": 10}  # a small ViT-Tiny: quick to run


@pytest.fixture
def base_spec() -> zoo.ArchSpec:
    return zoo.resolve_arch("vit_tiny_patch16_224", **BASE)


def _adapters(spec: zoo.ArchSpec, seed: int = 0) -> dict[str, torch.Tensor]:
    return random_state(zoo.get_family("lora"), spec, seed)


def test_spec_holds_the_base_and_the_layout_only_the_adapters(base_spec: zoo.ArchSpec) -> None:
    family = zoo.get_family("lora")
    spec = zoo.resolve_arch("lora-vit_tiny_patch16_224", rank=8, alpha=16, **BASE)
    assert family.requires_base(spec) and family.base_spec(spec) == base_spec
    assert zoo.ArchSpec.from_json(spec.config["base"]) == base_spec
    assert spec.config["targets"] == ["attn.proj", "attn.qkv"]
    layout = family.layout(spec)
    assert all(s.name.endswith((".lora_A", ".lora_B")) for s in layout.generated) and layout.fixed == ()
    assert layout.generated[0].name == "blocks.0.attn.qkv.lora_A" and layout.generated[0].shape == (8, 192)
    assert layout.generated[1].name == "blocks.0.attn.qkv.lora_B" and layout.generated[1].shape == (576, 8)
    assert layout.num_params == 12 * (8 * 192 + 576 * 8 + 8 * 192 + 192 * 8) == 110_592
    assert "base" in layout.fixed_policy
    text = family.describe(spec)
    assert "rank 8" in text and "alpha 16" in text and "24 linear layers" in text and "ViT-Tiny/8" in text
    # the same spec from 'lora' + base=, from its JSON, and from another base spec
    assert zoo.resolve_arch("lora", base=base_spec, rank=8, alpha=16) == spec
    assert zoo.resolve_arch(spec.to_json()) == spec
    other = family.with_base(spec, zoo.resolve_arch("vit_tiny_patch16_224", num_classes=3))
    assert other.config["rank"] == 8 and family.base_spec(other).config["num_classes"] == 3


def test_registry_stores_only_adapters_and_loads_them_onto_the_base(
    base_spec: zoo.ArchSpec, registry: zoo.Registry
) -> None:
    vit = zoo.get_family("vit")
    base_weights = random_state(vit, base_spec, seed=1)
    base_rec = registry.add(base_weights, name="vit-tiny", arch=base_spec)
    spec = zoo.resolve_arch("lora", base=base_spec, rank=4, alpha=8)
    adapters = _adapters(spec)
    rec = registry.add(adapters, name="vit-tiny-lora", arch=spec, base="vit-tiny")

    assert rec.base_id == base_rec.id and rec.num_params == zoo.get_family("lora").layout(spec).num_params
    stored = registry.load_state_dict(rec.ref)
    assert set(stored) == set(adapters)  # the base is referenced, never copied into the adapter's blob
    assert rec.size_bytes < base_rec.size_bytes / 10

    module = registry.load(rec.ref)
    state = module.state_dict()
    assert isinstance(module.blocks[0].attn.qkv, LoRALinear) and isinstance(
        module.blocks[0].mlp.fc1, torch.nn.Linear
    )
    assert all(same_bits(state[k], v) for k, v in adapters.items())
    assert all(same_bits(state[k], v) for k, v in base_weights.items())
    assert lora_state_dict(module).keys() == adapters.keys()
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable == set(adapters)

    # merged: a plain ViT of the base architecture computing the same function
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        adapted = module(x)
        plain = registry.load(base_rec.ref)(x)
        merged_module = merge(module)
        merged = merged_module(x)
        assert torch.equal(zoo.get_family("lora").merge(module)(x), merged)
    assert not torch.allclose(adapted, plain, atol=1e-4)  # the adapters do something
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, LoRALinear) for m in merged_module.modules())
    assert zoo.detect_arch(merged_module.state_dict()) == base_spec
    assert isinstance(module.blocks[0].attn.qkv, LoRALinear)  # merge() copies unless inplace=True


def test_adding_an_adapted_module_keeps_only_its_adapters(
    base_spec: zoo.ArchSpec, registry: zoo.Registry
) -> None:
    vit = zoo.get_family("vit")
    registry.add(random_state(vit, base_spec, seed=1), name="vit-tiny", arch=base_spec)
    spec = zoo.resolve_arch("lora", base=base_spec, rank=4)
    module = registry.load(registry.add(_adapters(spec), name="a", arch=spec, base="vit-tiny").ref)
    rec = registry.add(module, name="b", base="vit-tiny")  # detected from the full state dict
    assert rec.arch == spec and set(registry.load_state_dict(rec.ref)) == set(_adapters(spec))
    assert rec.sha256 == registry.get("a").sha256  # the same adapters: the same blob


def test_lora_linear_computes_the_low_rank_update() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 5)
    layer = LoRALinear(lin, rank=2, alpha=6.0)
    x = torch.randn(4, 6)
    with torch.no_grad():
        assert torch.equal(layer(x), lin(x))  # B starts at zero
        layer.lora_B.normal_()
        want = lin(x) + 3.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
        torch.testing.assert_close(layer(x), want)
        torch.testing.assert_close(layer.merged()(x), want)
    assert layer.weight is lin.weight  # the base's own parameter, not a copy


def test_settings_and_targets(base_spec: zoo.ArchSpec) -> None:
    family = zoo.get_family("lora")
    spec = zoo.resolve_arch("lora", base=base_spec, rank=2, targets=["mlp.fc1", "mlp.fc2"])
    names = [s.name for s in family.layout(spec).generated]
    assert names[:4] == [
        "blocks.0.mlp.fc1.lora_A",
        "blocks.0.mlp.fc1.lora_B",
        "blocks.0.mlp.fc2.lora_A",
        "blocks.0.mlp.fc2.lora_B",
    ]
    assert spec.config["alpha"] == 2.0  # alpha defaults to the rank
    only_last = zoo.resolve_arch("lora", base=base_spec, targets=["blocks.11.attn.qkv"])
    assert [s.name for s in family.layout(only_last).generated] == [
        "blocks.11.attn.qkv.lora_A",
        "blocks.11.attn.qkv.lora_B",
    ]
    assert zoo.detect_arch(_adapters(only_last)).config["targets"] == ["blocks.11.attn.qkv"]
    with pytest.raises(zoo.ZooError, match="no nn.Linear layer .* matches LoRA targets"):
        zoo.resolve_arch("lora", base=base_spec, targets=["attn.qkvz"])
    with pytest.raises(zoo.ZooError, match="rank must be a positive integer"):
        zoo.resolve_arch("lora", base=base_spec, rank=0)
    with pytest.raises(zoo.ZooError, match="needs its base"):
        zoo.resolve_arch("lora", rank=4)


def test_a_base_is_required_and_must_fit(base_spec: zoo.ArchSpec, registry: zoo.Registry) -> None:
    family = zoo.get_family("lora")
    spec = zoo.resolve_arch("lora", base=base_spec, rank=4)
    adapters = _adapters(spec)
    with pytest.raises(zoo.ZooError, match="needs its base module"):
        family.load(spec, adapters)
    with pytest.raises(zoo.ZooError, match="base"):
        registry.add(adapters, name="orphan", arch=spec)
    small_spec = zoo.resolve_arch("vit_small_patch16_224", **BASE)
    small = zoo.get_family("vit").load(small_spec, random_state(zoo.get_family("vit"), small_spec))
    with pytest.raises(zoo.ArchitectureMismatchError) as info:
        family.load(spec, adapters, base=small)
    assert info.value.layer == "blocks.0.attn.qkv.weight"
    assert info.value.expected == (576, 192) and info.value.got == (1152, 384)
    assert not any(isinstance(m, LoRALinear) for m in small.modules())  # a refused base is left untouched


def test_adapter_only_detection_assumes_the_default_vit(base_spec: zoo.ArchSpec) -> None:
    spec = zoo.resolve_arch("lora", base=base_spec, rank=4)
    detected = zoo.detect_arch(_adapters(spec))
    family = zoo.get_family("lora")
    assert detected.family == "lora" and detected.config["rank"] == 4
    assert family.layout(detected).generated == family.layout(spec).generated  # the same adapter layout
    assert family.base_spec(detected).name == "vit_tiny_patch16_224"  # patch/image/classes are not visible


def test_detected_adapters_take_the_registered_base_architecture(
    base_spec: zoo.ArchSpec, registry: zoo.Registry
) -> None:
    vit = zoo.get_family("vit")
    base_rec = registry.add(random_state(vit, base_spec, seed=1), name="vit-tiny", arch=base_spec)
    spec = zoo.resolve_arch("lora", base=base_spec, rank=4, alpha=8)
    rec = registry.add(_adapters(spec), name="detected-lora", base="vit-tiny")  # no arch=: detected
    assert zoo.get_family("lora").base_spec(rec.arch) == base_rec.arch
    assert registry.load(rec.ref) is not None
