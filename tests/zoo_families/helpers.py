"""Helpers shared by the family tests: random weights that fit an architecture, fast."""

from __future__ import annotations

import torch
from torch import nn

import zoo


def random_state(
    family: zoo.ArchitectureFamily, spec: zoo.ArchSpec, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A complete state dict for ``spec`` with random values (no module is built, no init is run).

    Running variances are made positive so the weights also make a working network.
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for slot in family.slots(spec):
        if slot.dtype.is_floating_point:
            t = torch.randn(slot.shape, generator=gen, dtype=torch.float32).to(slot.dtype) * 0.05
            out[slot.name] = t.abs() + 0.5 if slot.name.endswith("running_var") else t
        else:
            out[slot.name] = torch.zeros(slot.shape, dtype=slot.dtype)
    return out


def base_module(family: zoo.ArchitectureFamily, spec: zoo.ArchSpec, seed: int = 1) -> nn.Module | None:
    """A module of ``spec``'s base (random weights) for families that need one, else None."""
    if not family.requires_base(spec):
        return None
    base_spec = family.base_spec(spec)
    base_family = zoo.get_family(base_spec.family)
    return base_family.load(base_spec, random_state(base_family, base_spec, seed))


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits (so that -0.0 != 0.0 and NaN payloads count): bitwise comparisons."""
    t = t.detach().contiguous()
    if t.dtype.is_floating_point:
        return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return t


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))
