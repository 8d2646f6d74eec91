"""Slot descriptors: every family's generated tensors placed in terms that carry over between architectures.

The contract runs over every installed family and variant (``zoo.list_architectures()``); the cross-depth
and cross-width cases check the built-in families' roles, stages and depths.
"""

from __future__ import annotations

import types
from collections import defaultdict
from typing import Any

import pytest
from torch import nn

import zoo
from zoo import SlotDescriptor

ARCHS = zoo.list_architectures()


def _descriptors(name: str, **settings: Any) -> dict[str, SlotDescriptor]:
    spec = zoo.resolve_arch(name, **settings)
    return {d.name: d for d in zoo.get_family(spec.family).descriptors(spec)}


@pytest.mark.parametrize("arch", ARCHS)
def test_one_descriptor_per_generated_slot_in_layout_order(arch: str) -> None:
    spec = zoo.resolve_arch(arch)
    family = zoo.get_family(spec.family)
    slots = family.layout(spec).generated
    descs = family.descriptors(spec)
    assert [(d.name, d.shape) for d in descs] == [(s.name, s.shape) for s in slots]
    assert family.descriptors(spec) is descs, "descriptors are cached per family and spec"
    for d, slot in zip(descs, slots):
        assert d.role and d.kind == d.name.rpartition(".")[2] and d.role.endswith(d.kind), d.name
        assert d.num_stages >= 1 and 0 <= d.stage <= d.num_stages + 1, d.name
        assert 0.0 <= d.depth <= 1.0 and 0.0 <= d.depth_in_stage <= 1.0, d.name
        assert d.fan_in >= 1 and d.fan_out >= 1 and d.numel == slot.numel
    assert len({d.num_stages for d in descs}) == 1
    # in layout order: stages and depths never go back, nor does the block position within a stage
    assert [d.stage for d in descs] == sorted(d.stage for d in descs)
    assert [d.depth for d in descs] == sorted(d.depth for d in descs)
    by_stage: dict[int, list[float]] = defaultdict(list)
    for d in descs:
        by_stage[d.stage].append(d.depth_in_stage)
    assert all(pos == sorted(pos) for pos in by_stage.values())


CIFAR_ROLES = {  # key -> (role, stage) in every CIFAR ResNet (stage 4: the head)
    "conv1.weight": ("stem.conv.weight", 0),
    "bn1.weight": ("stem.bn.weight", 0),
    "bn1.running_var": ("stem.bn.running_var", 0),
    "layer1.0.conv1.weight": ("block.conv1.weight", 1),
    "layer1.0.bn2.running_mean": ("block.bn2.running_mean", 1),
    "layer2.0.conv1.weight": ("block.conv1.weight", 2),
    "layer2.0.bn1.bias": ("block.bn1.bias", 2),
    "layer3.0.conv2.weight": ("block.conv2.weight", 3),
    "linear.weight": ("classifier.weight", 4),
    "linear.bias": ("classifier.bias", 4),
}


@pytest.mark.parametrize("depth", [8, 14, 20])
@pytest.mark.parametrize("width", [8, 16])
def test_cifar_resnet_roles_and_positions_carry_over_depth_and_width(depth: int, width: int) -> None:
    descs = _descriptors(f"resnet{depth}", in_chans=1, width=width)
    reference = _descriptors("resnet8", in_chans=1, width=8)
    assert {d.role for d in descs.values()} == {d.role for d in reference.values()}
    for key, (role, stage) in CIFAR_ROLES.items():
        d = descs[key]
        assert (d.role, d.stage, d.num_stages) == (role, stage, 3), key
    n = (depth - 2) // 6
    for s in (1, 2, 3):
        first, last = descs[f"layer{s}.0.conv1.weight"], descs[f"layer{s}.{n - 1}.bn2.running_var"]
        assert first.depth_in_stage == 0.0
        assert last.depth_in_stage == (1.0 if n > 1 else 0.0), "the last block is 1.0; a single block 0.0"
        # comparable depths: every tensor of stage s lies in the s-th third of the network, at any depth
        stage = [d for d in descs.values() if d.stage == s]
        assert all((s - 1) / 3 <= d.depth <= s / 3 for d in stage), s
    assert descs["conv1.weight"].depth == 0.0 and descs["linear.bias"].depth == 1.0
    assert descs["layer2.0.bn1.weight"].depth == descs["layer2.0.conv1.weight"].depth, (
        "a BN sits with its conv"
    )
    # shapes and fans scale with the width; roles and positions do not
    conv = descs["layer2.0.conv1.weight"]
    assert conv.shape == (2 * width, width, 3, 3)
    assert (conv.fan_in, conv.fan_out) == (width * 9, 2 * width * 9)
    assert descs["linear.bias"].fan_in == 4 * width and descs["conv1.weight"].fan_in == 9


def test_cifar_resnet_blocks_are_spread_evenly_within_a_stage() -> None:
    descs = _descriptors("resnet20", in_chans=1, width=8)
    assert [descs[f"layer2.{j}.conv2.weight"].depth_in_stage for j in range(3)] == [0.0, 0.5, 1.0]
    layers = sorted({d.depth for d in descs.values()})
    assert len(layers) == 20, "resnet20: 19 convolutions and a classifier"


@pytest.mark.parametrize(("name", "blocks"), [("resnet18", (2, 2, 2, 2)), ("resnet50", (3, 4, 6, 3))])
def test_imagenet_resnet_stages_blocks_and_shortcuts(name: str, blocks: tuple[int, ...]) -> None:
    descs = _descriptors(name)
    assert {d.num_stages for d in descs.values()} == {4}
    assert descs["conv1.weight"].role == "stem.conv.weight" and descs["fc.weight"].role == "classifier.weight"
    assert descs["fc.weight"].stage == 5
    for s, n in enumerate(blocks, start=1):
        assert descs[f"layer{s}.{n - 1}.conv1.weight"].depth_in_stage == 1.0
    shortcut = descs["layer2.0.downsample.0.weight"]
    assert shortcut.role == "block.shortcut.conv.weight" and shortcut.stage == 2
    assert descs["layer2.0.downsample.1.running_var"].role == "block.shortcut.bn.running_var"
    last_conv = "layer2.0.conv3.weight" if name == "resnet50" else "layer2.0.conv2.weight"
    assert shortcut.depth == descs[last_conv].depth, "a shortcut joins at its block's last conv"
    if name == "resnet50":
        assert descs["layer1.0.bn3.weight"].role == "block.bn3.weight"
        assert len({d.depth for d in descs.values()}) == 50


def test_cnn_convs_form_a_stage_and_the_head_follows() -> None:
    tiny, small = _descriptors("cnn-tiny"), _descriptors("cnn-small")
    assert {d.role for d in tiny.values()} == {d.role for d in small.values()}
    assert [tiny[f"features.{j}.weight"].depth_in_stage for j in (0, 3, 6)] == [0.0, 0.5, 1.0]
    assert all(tiny[f"features.{j}.bias"].role == "features.conv.bias" for j in (0, 3, 6))
    assert tiny["classifier.1.weight"].role == "head.fc.weight" and tiny["classifier.3.bias"].role == (
        "classifier.bias"
    )
    assert {tiny[k].stage for k in ("classifier.1.weight", "classifier.3.weight")} == {2}
    assert tiny["features.0.weight"].depth == 0.0 and tiny["classifier.3.weight"].depth == 1.0
    assert (tiny["features.3.weight"].fan_in, tiny["features.3.bias"].fan_in) == (8 * 25, 8 * 25)
    deeper = _descriptors("cnn", channels=[8, 8, 6, 4], kernels=[3, 3, 3, 2], hidden=20, input_size=64)
    assert [deeper[f"features.{j}.weight"].depth_in_stage for j in (0, 3, 6, 9)] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert {d.role for d in deeper.values()} == {d.role for d in tiny.values()}


def test_vit_roles_carry_over_depth_and_width() -> None:
    shallow = _descriptors("vit_tiny_patch16_224", depth=2)
    deep = _descriptors("vit_tiny_patch16_224", depth=5)
    wide = _descriptors("vit_small_patch16_224", depth=2)
    assert (
        {d.role for d in shallow.values()}
        == {d.role for d in deep.values()}
        == {d.role for d in wide.values()}
    )
    assert {k: d.role for k, d in shallow.items()} == {k: d.role for k, d in wide.items()}
    expected = {
        "cls_token": ("embed.cls_token", 0),
        "pos_embed": ("embed.pos_embed", 0),
        "patch_embed.proj.weight": ("embed.patch.weight", 0),
        "blocks.0.norm1.weight": ("block.norm1.weight", 1),
        "blocks.0.attn.qkv.weight": ("block.attn.qkv.weight", 1),
        "blocks.1.attn.proj.bias": ("block.attn.proj.bias", 1),
        "blocks.1.mlp.fc1.weight": ("block.mlp.fc1.weight", 1),
        "blocks.1.mlp.fc2.bias": ("block.mlp.fc2.bias", 1),
        "norm.weight": ("head.norm.weight", 2),
        "head.weight": ("classifier.weight", 2),
    }
    for key, (role, stage) in expected.items():
        assert (shallow[key].role, shallow[key].stage, shallow[key].num_stages) == (role, stage, 1), key
    assert [deep[f"blocks.{i}.mlp.fc2.weight"].depth_in_stage for i in range(5)] == [
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    assert deep["blocks.0.norm1.weight"].depth == deep["blocks.0.attn.qkv.weight"].depth, (
        "pre-norm: next layer"
    )
    assert deep["head.weight"].depth == 1.0 and deep["patch_embed.proj.weight"].depth == 0.0
    assert (wide["blocks.0.mlp.fc1.weight"].fan_in, wide["blocks.0.mlp.fc1.weight"].fan_out) == (384, 1536)


def test_lora_factors_take_their_adapted_module_place() -> None:
    spec = zoo.resolve_arch("lora-vit_tiny_patch16_224", depth=3, rank=4)
    family = zoo.get_family("lora")
    base = family.base_spec(spec)
    adapted = {d.name: d for d in zoo.get_family(base.family).descriptors(base)}
    descs = family.descriptors(spec)
    assert {d.role for d in descs} == {
        "block.attn.qkv.lora_A",
        "block.attn.qkv.lora_B",
        "block.attn.proj.lora_A",
        "block.attn.proj.lora_B",
    }
    for d in descs:
        weight = adapted[d.name.rpartition(".")[0] + ".weight"]
        assert (d.stage, d.num_stages, d.depth_in_stage, d.depth) == (
            weight.stage,
            weight.num_stages,
            weight.depth_in_stage,
            weight.depth,
        )
        assert d.module_role == weight.module_role and d.kind in ("lora_A", "lora_B")
    a, b = (next(d for d in descs if d.name == f"blocks.2.attn.qkv.{k}") for k in ("lora_A", "lora_B"))
    assert (a.fan_in, a.fan_out, b.fan_in, b.fan_out) == (192, 4, 4, 576)


class _Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
        self.out = nn.Linear(4, 2)


class _PlainFamily(zoo.ArchitectureFamily):
    name = "test-plain"

    def variants(self) -> list[str]:
        return ["plain-1"]

    def parse(self, name: str, **overrides: Any) -> zoo.ArchSpec | None:
        return zoo.ArchSpec(self.name, name, {}) if name == "plain-1" else None

    def describe(self, spec: zoo.ArchSpec) -> str:
        return "a plain network of three linear layers for 2 classes"

    def build(self, spec: zoo.ArchSpec) -> nn.Module:
        return _Plain()


def test_a_third_party_family_gets_the_default() -> None:
    plugin = types.SimpleNamespace(
        zoo_register_families=zoo.hookimpl(lambda register: register(_PlainFamily()))
    )
    name = zoo.register_plugin(plugin, name="test-plain-plugin")
    try:
        descs = _descriptors("test-plain/plain-1")
    finally:
        zoo.unregister_plugin(name)
    assert {k: d.role for k, d in descs.items()} == {
        "encoder.0.weight": "encoder.weight",
        "encoder.0.bias": "encoder.bias",
        "encoder.2.weight": "encoder.weight",
        "encoder.2.bias": "encoder.bias",
        "out.weight": "out.weight",
        "out.bias": "out.bias",
    }
    assert {(d.stage, d.num_stages) for d in descs.values()} == {(1, 1)}, "no stage keys: one stage"
    assert [descs[k].depth for k in ("encoder.0.bias", "encoder.2.weight", "out.bias")] == [0.0, 0.5, 1.0]
    assert descs["encoder.2.bias"].depth_in_stage == 0.5 and descs["encoder.2.bias"].fan_in == 5
