"""The defaults of zoo.ArchitectureFamily: canonical state dicts, fast loading, flatten/unflatten,
descriptors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

import zoo
from zoo import SlotDescriptor


class Toy(nn.Module):
    def __init__(self, width: int, nonpersistent: bool = False, eager: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(3, width)
        self.bn = nn.BatchNorm1d(width)
        if nonpersistent:
            self.register_buffer("scale", torch.full((width,), 2.0), persistent=False)
        if eager:
            self.offset = float(torch.ones(1).sum().item())  # data-dependent: impossible on 'meta'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.fc(x))
        return out * self.scale if hasattr(self, "scale") else out


class ToyFamily(zoo.ArchitectureFamily):
    name = "toy"

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.builds = 0

    def variants(self) -> list[str]:
        return ["toy-4"]

    def parse(self, name: str, **overrides: Any) -> zoo.ArchSpec | None:
        return (
            zoo.ArchSpec("toy", name, {"width": int(name.split("-")[1])}) if name.startswith("toy-") else None
        )

    def describe(self, spec: zoo.ArchSpec) -> str:
        return f"toy {spec.config['width']}"

    def build(self, spec: zoo.ArchSpec) -> nn.Module:
        self.builds += 1
        return Toy(spec.config["width"], **self.kwargs)


def _state(width: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    m = Toy(width)
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.dtype.is_floating_point:
                t.copy_(torch.randn_like(t).abs() + 0.1)
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_layout_generates_floats_and_fixes_counters() -> None:
    fam = ToyFamily()
    spec = fam.parse("toy-4")
    lay = fam.layout(spec)
    assert lay.names == ("fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
    assert [s.name for s in lay.fixed] == ["bn.num_batches_tracked"]
    assert lay.num_params == 4 * 3 + 4 + 4 + 4 and lay.num_generated == lay.num_params + 8
    assert [s.is_parameter for s in lay.generated] == [True] * 4 + [False] * 2


def test_load_assigns_without_copy_and_copies_on_request() -> None:
    fam = ToyFamily()
    spec = fam.parse("toy-4")
    state = _state()
    fam.load(spec, state)  # warm the template
    builds = fam.builds
    shared = fam.load(spec, state)
    assert fam.builds == builds, "loading reuses the meta template; it never rebuilds the module"
    assert shared.fc.weight.data_ptr() == state["fc.weight"].data_ptr()
    assert isinstance(shared.fc.weight, nn.Parameter) and shared.fc.weight.requires_grad
    assert not shared.training
    owned = fam.load(spec, state, copy=True)
    assert owned.fc.weight.data_ptr() != state["fc.weight"].data_ptr()
    for m in (shared, owned):
        assert all(torch.equal(m.state_dict()[k], v) for k, v in state.items())


def test_canonicalize_strips_prefixes_fills_counters_and_keeps_dtypes() -> None:
    fam = ToyFamily()
    spec = fam.parse("toy-4")
    state = {
        f"module._orig_mod.{k}": v.half() if v.dtype.is_floating_point else v
        for k, v in _state().items()
        if not k.endswith("num_batches_tracked")
    }
    canon = fam.canonicalize(spec, state)
    assert list(canon) == [s.name for s in fam.slots(spec)]
    assert canon["fc.weight"].dtype == torch.float16  # stored as given
    assert canon["bn.num_batches_tracked"].dtype == torch.int64 and int(canon["bn.num_batches_tracked"]) == 0
    module = fam.load(spec, state)
    assert module.fc.weight.dtype == torch.float32  # the module gets its own dtype
    assert fam.detect(state) is None  # ToyFamily has no candidates
    assert fam.mismatch(spec, state) is None


def test_a_tensor_of_the_wrong_kind_is_refused() -> None:
    fam = ToyFamily()
    spec = fam.parse("toy-4")
    state = _state()
    state["fc.weight"] = torch.zeros(4, 3, dtype=torch.int64)
    with pytest.raises(zoo.ArchitectureMismatchError, match="fc.weight"):
        fam.canonicalize(spec, state)


def test_unflatten_takes_flat_tensors_and_names_a_bad_one() -> None:
    fam = ToyFamily()
    spec = fam.parse("toy-4")
    state = _state()
    flat = [t.reshape(-1) for t in fam.flatten(spec, state)]
    module = fam.rebuild(spec, flat)
    assert torch.equal(module.fc.weight, state["fc.weight"])
    flat[0] = torch.zeros(13)
    with pytest.raises(zoo.ArchitectureMismatchError) as info:
        fam.rebuild(spec, flat)
    assert info.value.layer == "fc.weight" and info.value.expected == (4, 3) and info.value.got == (13,)
    with pytest.raises(zoo.ArchitectureMismatchError, match="expected 6 generated tensors, got 5"):
        fam.rebuild(spec, flat[:5])


@pytest.mark.parametrize("kwargs", [{"nonpersistent": True}, {"eager": True}])
def test_modules_that_cannot_use_a_meta_template_still_load(kwargs: dict[str, bool]) -> None:
    fam = ToyFamily(**kwargs)
    spec = fam.parse("toy-4")
    state = _state()
    module = fam.load(spec, state)
    assert all(not t.is_meta for t in [*module.parameters(), *module.buffers()])
    assert all(torch.equal(module.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        out = module(torch.randn(2, 3))
    assert torch.isfinite(out).all()
    if kwargs.get("nonpersistent"):
        assert torch.equal(module.scale, torch.full((4,), 2.0))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight  # tied
        self.names = ["a", "b"]


class CustomLoad(nn.Linear):
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        key = prefix + "weight"
        if key in state_dict:
            state_dict[key] = state_dict[key] * 1  # custom logic that must run
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ModuleFamily(ToyFamily):
    def __init__(self, factory: Any) -> None:
        super().__init__()
        self.factory = factory

    def build(self, spec: zoo.ArchSpec) -> nn.Module:
        self.builds += 1
        return self.factory()


def test_loaded_modules_are_independent_of_the_template_and_keep_ties() -> None:
    fam = ModuleFamily(Tied)
    spec = fam.parse("toy-4")
    state = {k: torch.randn(v.shape) for k, v in Tied().state_dict().items()}
    state["b.weight"] = state["a.weight"]
    first = fam.load(spec, state)
    assert first.b.weight is first.a.weight  # shared parameters stay shared
    first.register_forward_hook(lambda *args: None)
    first.names.append("c")
    second = fam.load(spec, {k: v.clone() for k, v in state.items()})
    assert not second._forward_hooks and second.names == ["a", "b"]  # nothing leaked through the template
    assert second.a.weight.data_ptr() != first.a.weight.data_ptr()
    assert all(not t.is_meta for t in second.state_dict().values())


def test_custom_loading_logic_still_runs() -> None:
    fam = ModuleFamily(lambda: CustomLoad(3, 2))
    spec = fam.parse("toy-4")
    state = {"weight": torch.randn(2, 3), "bias": torch.randn(2)}
    module = fam.load(spec, state)
    assert (
        torch.equal(module.weight, state["weight"]) and module.weight.data_ptr() != state["weight"].data_ptr()
    )


# -- default descriptors ---------------------------------------------------------------------------------


def test_default_descriptors_read_kinds_roles_depths_and_fans() -> None:
    fam = ToyFamily()
    spec = fam.parse("toy-4")
    descs = fam.descriptors(spec)
    assert [d.name for d in descs] == list(fam.layout(spec).names)
    assert [(d.role, d.kind) for d in descs] == [
        ("fc.weight", "weight"),
        ("fc.bias", "bias"),
        ("bn.weight", "weight"),
        ("bn.bias", "bias"),
        ("bn.running_mean", "running_mean"),
        ("bn.running_var", "running_var"),
    ]
    assert {(d.stage, d.num_stages) for d in descs} == {(1, 1)}, "without stage keys: one stage"
    assert [d.depth for d in descs] == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]  # each module is a layer
    assert [d.depth_in_stage for d in descs] == [d.depth for d in descs]
    assert [(d.fan_in, d.fan_out) for d in descs] == [(3, 4), (3, 4)] + [(4, 4)] * 4  # a bias: its layer's
    assert [d.shape for d in descs] == [s.shape for s in fam.layout(spec).generated]
    assert descs[4].module_role == "bn" and descs[0].numel == 12


class Staged(nn.Module):
    """A stem, stages ``layer1`` (2 blocks) and ``layer2`` (1 block), a transition between them, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3))
        self.transition = nn.Conv2d(4, 4, 1)
        self.layer2 = nn.Sequential(nn.Sequential(nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8)))
        self.fc = nn.Linear(8, 2)


class Blocks(nn.Module):
    """A transformer-like stack: an embedding, ``blocks.{i}`` and a norm."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 6)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 6)) for _ in range(3))
        self.norm = nn.LayerNorm(6)


class TimmStages(nn.Module):
    """``stages.{N}.blocks.{M}`` keys (timm's ConvNeXt and friends), a per-stage downsample first."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.ModuleDict(
                {"downsample": nn.Linear(3, 3), "blocks": nn.ModuleList(nn.Linear(3, 3) for _ in range(n))}
            )
            for n in (2, 3)
        )


def _by_name(factory: Any) -> dict[str, SlotDescriptor]:
    fam = ModuleFamily(factory)
    return {d.name: d for d in fam.descriptors(fam.parse("toy-4"))}


def test_default_descriptors_of_a_top_level_layer() -> None:
    d = _by_name(lambda: nn.Linear(3, 2))
    assert (d["weight"].role, d["weight"].module_role, d["bias"].kind) == ("weight", "", "bias")
    assert (d["bias"].fan_in, d["bias"].fan_out) == (3, 2) and d["bias"].depth == 0.0


def test_default_descriptors_find_layer_stages_and_blocks() -> None:
    d = _by_name(Staged)
    assert {x.num_stages for x in d.values()} == {2}
    assert [
        d[k].stage
        for k in ("stem.weight", "layer1.0.weight", "layer1.1.bias", "layer2.0.0.weight", "fc.weight")
    ] == [0, 1, 1, 2, 3]
    assert (
        d["layer1.0.weight"].role == "layer.weight"
        and d["layer2.0.1.running_var"].role == "layer.running_var"
    )
    # a module between two stages is the last block of the stage before
    assert [d[k].depth_in_stage for k in ("layer1.0.weight", "layer1.1.weight", "transition.weight")] == [
        0,
        0.5,
        1,
    ]
    assert d["transition.bias"].stage == 1 and d["transition.bias"].role == "transition.bias"
    assert d["layer2.0.1.weight"].depth_in_stage == 0.0, "one block: 0.0"
    assert d["stem.weight"].depth == 0.0 and d["fc.bias"].depth == 1.0
    assert (d["layer1.0.weight"].fan_in, d["layer1.0.weight"].fan_out) == (4 * 9, 4 * 9)


def test_default_descriptors_find_a_stage_of_blocks() -> None:
    d = _by_name(Blocks)
    assert {x.num_stages for x in d.values()} == {1}
    assert (d["embed.weight"].stage, d["blocks.1.0.weight"].stage, d["norm.bias"].stage) == (0, 1, 2)
    assert [d[f"blocks.{i}.1.weight"].depth_in_stage for i in range(3)] == [0.0, 0.5, 1.0]
    assert d["blocks.2.0.bias"].role == "blocks.bias" and d["norm.weight"].depth_in_stage == 0.0


def test_default_descriptors_read_timm_stages() -> None:
    d = _by_name(TimmStages)
    assert {x.num_stages for x in d.values()} == {2}
    assert (d["stages.0.downsample.weight"].stage, d["stages.1.blocks.2.weight"].stage) == (1, 2)
    assert d["stages.1.blocks.2.bias"].role == "stages.blocks.bias"
    # the downsample, outside the indexed blocks, is a block of its own: the stage's first
    assert d["stages.1.downsample.weight"].depth_in_stage == 0.0
    assert [d[f"stages.1.blocks.{i}.weight"].depth_in_stage for i in range(3)] == [1 / 3, 2 / 3, 1.0]


class CountingFamily(ToyFamily):
    def __init__(self, broken: str = "") -> None:
        super().__init__()
        self.broken = broken
        self.computed = 0

    def compute_descriptors(self, spec: zoo.ArchSpec) -> tuple[Any, ...]:
        self.computed += 1
        descs = list(super().compute_descriptors(spec))
        if self.broken == "depth":
            descs[1] = dataclasses.replace(descs[1], depth=1.5)
        elif self.broken == "missing":
            descs.pop()
        elif self.broken == "order":
            descs[0], descs[1] = descs[1], descs[0]
        return tuple(descs)


def test_descriptors_are_cached_per_family_and_spec() -> None:
    fam = CountingFamily()
    first = fam.descriptors(fam.parse("toy-4"))
    assert fam.descriptors(fam.parse("toy-4")) is first and fam.computed == 1
    wider = fam.descriptors(fam.parse("toy-6"))
    assert fam.computed == 2 and wider[0].shape == (6, 3) and first[0].shape == (4, 3)
    assert [d.role for d in wider] == [d.role for d in first], "the same roles at another width"


@pytest.mark.parametrize(
    ("broken", "match"),
    [("depth", "'fc.bias' has depth 1.5"), ("missing", "5 descriptors for 6 slots"), ("order", "'fc.bias'")],
)
def test_a_broken_override_is_refused_with_the_slot_named(broken: str, match: str) -> None:
    fam = CountingFamily(broken)
    with pytest.raises(zoo.ZooError, match=match) as info:
        fam.descriptors(fam.parse("toy-4"))
    assert "compute_descriptors" in str(info.value) and "'toy'" in str(info.value)
