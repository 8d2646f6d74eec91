"""Every registered family and variant, through the public API: the contract a family must keep.

Driven by ``zoo.list_architectures()``: a new plugin's variants are tested the day it is installed.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.zoo_families.helpers import base_module, random_state, same_bits

ARCHS = zoo.list_architectures()
SMALL = (
    30_000_000  # variants with fewer generated values (and tensors) also run a forward pass and the chunker
)
SHALLOW = 1_000  # ... and with fewer generated tensors: resnet1202's forward alone takes ~10 s on 2 cores


def _family_and_spec(arch: str) -> tuple[zoo.ArchitectureFamily, zoo.ArchSpec]:
    family_name, _ = arch.split("/", 1)
    return zoo.get_family(family_name), zoo.resolve_arch(arch)


def test_every_builtin_family_is_installed() -> None:
    assert {"cnn", "resnet", "vit", "lora"} <= set(zoo.list_families())
    infos = {p.name: p for p in zoo.list_plugins()}
    for name in ("cnn", "resnet", "vit", "lora"):
        assert infos[name].module == f"zoo_families.{name}" and not infos[name].error


@pytest.mark.parametrize("arch", ARCHS)
def test_flatten_rebuild_is_bitwise_exact(arch: str) -> None:
    family, spec = _family_and_spec(arch)
    layout = family.layout(spec)
    state = random_state(family, spec)

    tensors = family.flatten(spec, state)
    assert [tuple(t.shape) for t in tensors] == [s.shape for s in layout.generated]
    assert all(t.data_ptr() == state[s.name].data_ptr() for t, s in zip(tensors, layout.generated)), (
        "flatten must return views of the state dict, not copies"
    )

    # rebuild from copies (as a generator hands them over), then compare every bit
    module = family.rebuild(spec, [t.clone() for t in tensors], base=base_module(family, spec))
    rebuilt = module.state_dict()
    for slot in layout.generated:
        assert same_bits(rebuilt[slot.name], state[slot.name]), slot.name
    for slot in layout.fixed:
        assert torch.count_nonzero(rebuilt[slot.name]) == 0, f"{slot.name}: fixed tensors are zero"
    again = family.flatten(spec, rebuilt)
    assert all(same_bits(a, b) for a, b in zip(again, tensors))

    # the parameter count of the layout is the module's (trainable: a LoRA base is frozen)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert layout.num_params == trainable
    with torch.device("meta"):
        fresh = family.build(spec)
    assert layout.num_params == sum(p.numel() for p in fresh.parameters() if p.requires_grad)
    if not family.requires_base(spec):
        assert layout.num_params == sum(p.numel() for p in module.parameters())
        assert {s.name for s in family.slots(spec)} == set(rebuilt)

    # recognition from the state dict alone
    assert family.detect(state) == spec
    assert zoo.detect_arch(state) == spec


@pytest.mark.parametrize("arch", ARCHS)
def test_spec_text_and_parse_round_trip(arch: str) -> None:
    family, spec = _family_and_spec(arch)
    assert family.parse(spec.name, **dict(spec.config)) == spec
    assert zoo.resolve_arch(spec.to_json()) == spec
    assert zoo.resolve_arch(spec) == spec
    text = family.describe(spec)
    assert len(text) > 80 and "classes" in text
    assert family.layout(spec).fixed_policy


@pytest.mark.parametrize("arch", ARCHS)
def test_small_variants_run_and_chunk(arch: str) -> None:
    family, spec = _family_and_spec(arch)
    layout = family.layout(spec)
    if layout.num_generated > SMALL or len(layout.generated) > SHALLOW:
        pytest.skip("forward pass and chunking are covered on the smaller variants")
    module = family.rebuild(
        spec, family.flatten(spec, random_state(family, spec)), base=base_module(family, spec)
    )
    shape = family.input_shape(spec)
    assert shape is not None
    with torch.no_grad():
        out = module(torch.randn(2, *shape))
    assert out.shape[0] == 2 and torch.isfinite(out).all()

    tensors = family.flatten(spec, random_state(family, spec, seed=3))
    chunks = family.chunk(spec, tensors, k=64)
    assert chunks.data.shape[1] == 64 and chunks.mask.sum() == family.layout(spec).num_generated
    back = family.unchunk(spec, chunks)
    for a, b in zip(back, tensors):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert torch.linalg.vector_norm(a - b) <= 1e-6 * torch.linalg.vector_norm(b) + 1e-12


KNOWN_COUNTS = [  # (name, settings, exact parameters, the figure usually quoted)
    ("resnet20", {}, 269_722, 0.27e6),
    ("resnet56", {}, 853_018, 0.86e6),  # He et al. quote 0.85M; 0.86M is also common
    ("resnet110", {}, 1_727_962, 1.7e6),
    ("resnet50", {}, 25_557_032, 25.6e6),
    ("resnet101", {}, 44_549_160, 44.5e6),
    ("vit_base_patch16_224", {}, 86_567_656, 86e6),
    ("cnn-tiny", {}, 2_464, 2_464),
    ("cnn-tiny", {"in_chans": 3}, 2_864, 2_864),
    ("cnn-small", {}, 9_614, 10e3),
]


@pytest.mark.parametrize(("name", "settings", "exact", "quoted"), KNOWN_COUNTS)
def test_parameter_counts_match_known_figures(name: str, settings: dict, exact: int, quoted: float) -> None:
    spec = zoo.resolve_arch(name, **settings)
    family = zoo.get_family(spec.family)
    n = family.layout(spec).num_params
    assert n == exact
    assert abs(n - quoted) / quoted < 0.04
    with torch.device("meta"):
        assert sum(p.numel() for p in family.build(spec).parameters()) == exact


WRONG_SHAPE = [
    "cnn/cnn-tiny",
    "resnet/resnet20",
    "resnet/resnet18",
    "vit/vit_tiny_patch16_224",
    "lora/lora-vit_tiny_patch16_224",
]


@pytest.mark.parametrize("arch", WRONG_SHAPE)
def test_one_wrong_shape_names_the_layer_and_both_shapes(arch: str, registry: zoo.Registry) -> None:
    family, spec = _family_and_spec(arch)
    state = random_state(family, spec)
    slots = family.layout(spec).generated
    slot = slots[len(slots) // 2]
    bad_shape = (slot.shape[0] + 1, *slot.shape[1:])
    state[slot.name] = torch.zeros(bad_shape)

    for attempt in (
        lambda: family.canonicalize(spec, state),
        lambda: family.flatten(spec, state),
        lambda: family.load(spec, state, base=base_module(family, spec)),
    ):
        with pytest.raises(zoo.ArchitectureMismatchError) as info:
            attempt()
        err = info.value
        assert err.layer == slot.name and err.expected == slot.shape and err.got == bad_shape
        assert (
            slot.name in str(err) and str(list(slot.shape)) in str(err) and str(list(bad_shape)) in str(err)
        )

    if family.requires_base(spec):
        registry.add(random_state(*_base_of(family, spec)), name="the-base", arch=family.base_spec(spec))
    with pytest.raises(zoo.ArchitectureMismatchError, match=slot.name.replace(".", r"\.")):
        registry.add(state, name="bad", arch=spec, base="the-base" if family.requires_base(spec) else None)
    assert [r.name for r in registry.list()] == (["the-base"] if family.requires_base(spec) else [])


def _base_of(
    family: zoo.ArchitectureFamily, spec: zoo.ArchSpec
) -> tuple[zoo.ArchitectureFamily, zoo.ArchSpec]:
    base = family.base_spec(spec)
    return zoo.get_family(base.family), base


def test_missing_and_unexpected_keys_are_named() -> None:
    family, spec = _family_and_spec("resnet/resnet20")
    state = random_state(family, spec)
    state.pop("linear.weight")
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(zoo.ArchitectureMismatchError) as info:
        family.canonicalize(spec, state)
    assert info.value.missing == ("linear.weight",) and info.value.unexpected == ("extra.weight",)
    assert "linear.weight" in str(info.value) and "extra.weight" in str(info.value)


def test_unknown_family_names_the_installed_ones(registry: zoo.Registry) -> None:
    installed = zoo.list_families()
    with pytest.raises(zoo.UnknownFamilyError) as info:
        zoo.resolve_arch("mobilenet_v3_large")
    assert all(name in str(info.value) for name in installed) and info.value.installed == sorted(installed)
    with pytest.raises(zoo.UnknownPluginError) as info2:
        zoo.get_family("mobilenet")
    assert all(name in str(info2.value) for name in installed)
    with pytest.raises(zoo.UnknownFamilyError, match="installed families: " + ", ".join(sorted(installed))):
        zoo.detect_arch({"encoder.layers.0.weight": torch.zeros(4, 4)})
    with pytest.raises(zoo.UnknownFamilyError):
        registry.add({"encoder.layers.0.weight": torch.zeros(4, 4)}, name="mystery")
