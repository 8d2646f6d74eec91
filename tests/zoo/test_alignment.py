"""Permutation alignment (zoo.align, zoo.average_aligned): weight matching keeps each network's function,
undoes a known permutation exactly, is deterministic, and refuses what it cannot align.

The function tests run on every architecture of every registered family that declares a permutation spec
(the small ones: at most MAX_PARAMS parameters), so a family that declares one is tested the day it does.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import zoo
from zoo import ArchitectureMismatchError, PermutationSpec, ZooError, hookimpl
from zoo.alignment import apply_permutations

MAX_PARAMS = 300_000  # architectures above this are left out of the function tests (CPU time)


def _aligned_archs() -> list[str]:
    out = []
    for name, family in sorted(zoo.families().items()):
        for variant in family.variants():
            spec = family.parse(variant)
            if spec is None or family.permutation_spec(spec) is None:
                continue
            if sum(s.numel for s in family.slots(spec)) <= MAX_PARAMS:
                out.append(f"{name}/{variant}")
    return out


ARCHS = _aligned_archs()


def _random_state(arch: str, seed: int) -> dict[str, torch.Tensor]:
    """A random network of ``arch``, its BatchNorm statistics random too (so that they must follow)."""
    spec = zoo.resolve_arch(arch)
    torch.manual_seed(seed)
    state = zoo.get_family(spec.family).build(spec).state_dict()
    for key, t in state.items():
        if key.endswith("running_var"):
            t.copy_(torch.rand_like(t) + 0.5)
        elif key.endswith(("running_mean", "bias")) or (key.endswith("weight") and t.dim() == 1):
            t.copy_(torch.randn_like(t) * 0.1 + (1.0 if key.endswith("weight") else 0.0))
    return state


def _outputs(arch: str, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    spec = zoo.resolve_arch(arch)
    with torch.no_grad():
        return zoo.get_family(spec.family).load(spec, state, copy=True)(x)


def _input(arch: str) -> torch.Tensor:
    spec = zoo.resolve_arch(arch)
    torch.manual_seed(123)
    return torch.randn(8, *zoo.get_family(spec.family).input_shape(spec))


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a if a[k].dtype.is_floating_point)


def test_the_cnn_family_declares_its_symmetries() -> None:
    assert "cnn/cnn-tiny" in ARCHS
    spec = zoo.permutation_spec("cnn-tiny")
    assert spec is not None
    state = _random_state("cnn-tiny", 0)
    assert spec.sizes(state) == {"conv0": 8, "conv1": 6, "conv2": 4, "fc": 20}
    assert spec.axes["classifier.3.weight"] == (None, "fc")  # the classes are never permuted
    assert "classifier.3.bias" not in spec.axes


@pytest.mark.parametrize("arch", ARCHS)
def test_alignment_keeps_the_function(arch: str) -> None:
    ref, other = _random_state(arch, 0), _random_state(arch, 1)
    (aligned,) = zoo.align(ref, [other])
    assert list(aligned) == list(other)  # canonical: every tensor, in module order
    x = _input(arch)
    torch.testing.assert_close(_outputs(arch, aligned, x), _outputs(arch, other, x), rtol=1e-4, atol=1e-5)
    assert _distance(ref, aligned) < _distance(ref, other)  # closer to the reference than before


@pytest.mark.parametrize("arch", ARCHS)
def test_a_permuted_copy_is_recovered_exactly(arch: str) -> None:
    ref = _random_state(arch, 0)
    perm_spec = zoo.permutation_spec(arch)
    assert perm_spec is not None
    g = torch.Generator().manual_seed(7)
    perms = {p: torch.randperm(n, generator=g) for p, n in perm_spec.sizes(ref).items()}
    shuffled = apply_permutations(perm_spec, ref, perms)
    assert _distance(ref, shuffled) > 0
    x = _input(arch)
    torch.testing.assert_close(_outputs(arch, shuffled, x), _outputs(arch, ref, x), rtol=1e-4, atol=1e-5)
    (back,) = zoo.align(ref, [shuffled])
    assert _distance(ref, back) == 0.0
    assert all(torch.equal(back[k], ref[k]) for k in ref)


def test_alignment_is_deterministic_and_takes_modules() -> None:
    spec = zoo.resolve_arch("cnn-tiny")
    family = zoo.get_family("cnn")
    ref, a, b = (family.load(spec, _random_state("cnn-tiny", s), copy=True) for s in (0, 1, 2))
    first = zoo.align(ref, [a, b], seed=3)
    again = zoo.align(ref.state_dict(), [a.state_dict(), b.state_dict()], spec=spec, seed=3)
    assert len(first) == 2
    for x, y in zip(first, again):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_average_aligned() -> None:
    ref = _random_state("cnn-tiny", 0)
    perm_spec = zoo.permutation_spec("cnn-tiny")
    assert perm_spec is not None
    g = torch.Generator().manual_seed(1)
    shuffled = apply_permutations(
        perm_spec, ref, {p: torch.randperm(n, generator=g) for p, n in perm_spec.sizes(ref).items()}
    )
    mean = zoo.average_aligned([ref, shuffled])  # aligned first: the copy lands on the reference
    torch.testing.assert_close(mean, ref)
    plain = {k: (ref[k] + shuffled[k]) / 2 for k in ref}
    assert _distance(ref, plain) > 0
    # the reference may be any of them; the others are aligned to it
    other = _random_state("cnn-tiny", 1)
    via_second = zoo.average_aligned([other, ref, shuffled], reference=1)
    expected = zoo.average_aligned([ref, other, shuffled])
    torch.testing.assert_close(via_second, expected)


def test_average_keeps_the_reference_integer_buffers() -> None:
    perm_spec = PermutationSpec(
        {"fc1.weight": ("h", None), "fc1.bias": ("h",), "bn.weight": ("h",), "fc2.weight": (None, "h")},
        follow=frozenset({"bn.running_mean"}),
    )
    perm_spec = PermutationSpec({**perm_spec.axes, "bn.running_mean": ("h",)}, follow=perm_spec.follow)

    def state(seed: int, count: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return {
            "fc1.weight": torch.randn(5, 3, generator=g),
            "fc1.bias": torch.randn(5, generator=g),
            "bn.weight": torch.randn(5, generator=g),
            "bn.running_mean": torch.randn(5, generator=g),
            "bn.num_batches_tracked": torch.tensor(count),
            "fc2.weight": torch.randn(2, 5, generator=g),
        }

    mean = zoo.average_aligned([state(0, 7), state(1, 9)], spec=perm_spec)
    assert mean["bn.num_batches_tracked"].item() == 7
    assert mean["bn.running_mean"].dtype == torch.float32


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


MLP_SPEC = PermutationSpec({"fc1.weight": ("h", None), "fc1.bias": ("h",), "fc2.weight": (None, "h")})


def test_a_permutation_spec_aligns_a_network_no_family_describes() -> None:
    torch.manual_seed(0)
    ref, other = MLP(), MLP()
    (aligned,) = zoo.align(ref, [other], spec=MLP_SPEC)
    x = torch.randn(10, 4)
    moved = MLP()
    moved.load_state_dict(aligned)
    with torch.no_grad():
        torch.testing.assert_close(moved(x), other(x))


def test_refuses_mismatched_architectures() -> None:
    tiny, small = _random_state("cnn-tiny", 0), _random_state("cnn-small", 0)
    with pytest.raises(
        ArchitectureMismatchError, match=r"others\[0\]: .*features.0.weight.*one architecture only"
    ):
        zoo.align(tiny, [small])
    with pytest.raises(ArchitectureMismatchError, match=r"states\[0\]: "):
        zoo.average_aligned([small, tiny], reference=1)
    mlp, other = MLP().state_dict(), MLP().state_dict()
    other["fc1.weight"] = torch.zeros(16, 5)
    with pytest.raises(ArchitectureMismatchError, match="fc1.weight"):
        zoo.align(mlp, [other], spec=MLP_SPEC)


def test_refuses_bad_arguments() -> None:
    with pytest.raises(ZooError, match="at least one checkpoint"):
        zoo.average_aligned([])
    with pytest.raises(ZooError, match="reference=2 is out of range for 2 checkpoints"):
        zoo.average_aligned([_random_state("cnn-tiny", 0), _random_state("cnn-tiny", 1)], reference=2)
    with pytest.raises(ArchitectureMismatchError, match="not a multiple"):
        PermutationSpec({"a": ("p",), "b": ("p",)}).sizes({"a": torch.zeros(4), "b": torch.zeros(6)})


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(3, 3)


class PlainFamily(zoo.ArchitectureFamily):
    """A family that declares no symmetry (the default)."""

    name = "plain-test"

    def variants(self) -> list[str]:
        return ["plain-test"]

    def parse(self, name: str, **overrides: Any) -> zoo.ArchSpec | None:
        return zoo.ArchSpec(self.name, name) if name == "plain-test" else None

    def describe(self, spec: zoo.ArchSpec) -> str:
        return "plain"

    def build(self, spec: zoo.ArchSpec) -> nn.Module:
        return Plain()


def test_refuses_an_architecture_without_a_permutation_spec() -> None:
    class Plugin:
        @hookimpl
        def zoo_register_families(self, register) -> None:  # type: ignore[no-untyped-def]
            register(PlainFamily())

    name = zoo.register_plugin(Plugin(), name="test-plain-family")
    try:
        state = Plain().state_dict()
        assert zoo.permutation_spec("plain-test/plain-test") is None
        with pytest.raises(ZooError, match="declares no permutation symmetry.*spec=zoo.PermutationSpec"):
            zoo.align(state, [Plain().state_dict()], spec="plain-test/plain-test")
    finally:
        zoo.unregister_plugin(name)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_imagenet_resnet_blocks_keep_the_function(arch: str) -> None:
    """The ImageNet ResNets (too large for ARCHS): basic and bottleneck blocks, projection shortcuts."""
    spec = zoo.resolve_arch(arch, num_classes=10)
    ref, other = _random_state(spec.to_json(), 0), _random_state(spec.to_json(), 1)
    (aligned,) = zoo.align(ref, [other], max_iter=3)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    out = _outputs(spec.to_json(), aligned, x)
    torch.testing.assert_close(out, _outputs(spec.to_json(), other, x), rtol=1e-4, atol=1e-4)
    assert _distance(ref, aligned) < _distance(ref, other)


def test_align_says_spec_and_takes_a_list() -> None:

    net = zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))
    with pytest.raises(zoo.UnknownFamilyError, match="Pass spec="):
        zoo.align({"a": torch.zeros(3)}, [{"a": torch.zeros(3)}])
    with pytest.raises(zoo.ZooError, match=r"others=\[network\]"):
        zoo.align(net, net)  # type: ignore[arg-type]
