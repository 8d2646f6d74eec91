"""The defaults of zoo.ArchitectureFamily: canonical state dicts, fast loading, flatten/unflatten."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import zoo


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
