"""Comparing two sets of weights tensor by tensor (:meth:`zoo.registry.Registry.diff`, ``zoo diff``).

For each tensor name: added, removed, reshaped, or how far apart the values are: the relative L2 distance
``||b - a|| / ||a||`` (``||b - a||`` when ``a`` is all zeros) and the largest absolute difference. Integer
tensors (BatchNorm's ``num_batches_tracked``) are compared the same way, as floats. torch is imported
inside the functions, so that importing this module costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

CHANGES = ("changed", "same", "reshaped", "added", "removed")  # TensorDiff.change values


@dataclass(frozen=True)
class TensorDiff:
    """How one tensor differs between two sets of weights."""

    name: str
    change: str  # one of CHANGES
    shape_a: tuple[int, ...] | None  # None when the tensor is only in b
    shape_b: tuple[int, ...] | None  # None when the tensor is only in a
    rel_l2: float | None = None  # ||b - a|| / ||a|| (same shape only)
    max_abs: float | None = None  # max |b - a| (same shape only)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "change": self.change,
            "shape_a": list(self.shape_a) if self.shape_a is not None else None,
            "shape_b": list(self.shape_b) if self.shape_b is not None else None,
            "rel_l2": self.rel_l2,
            "max_abs": self.max_abs,
        }


@dataclass(frozen=True)
class WeightsDiff:
    """Every tensor of two sets of weights compared, by name (digit runs sorted as numbers)."""

    a: str  # what was compared: refs, or "a"/"b" for plain state dicts
    b: str
    tensors: tuple[TensorDiff, ...]
    rel_l2: float | None  # over every tensor both have with the same shape, taken together

    def count(self, change: str) -> int:
        return sum(1 for t in self.tensors if t.change == change)

    @property
    def identical(self) -> bool:
        return all(t.change == "same" for t in self.tensors)

    @property
    def differing(self) -> list[TensorDiff]:
        """The tensors that are not the same, in order."""
        return [t for t in self.tensors if t.change != "same"]

    def summary(self) -> str:
        """One line, e.g. ``12 tensors: 3 changed, 1 reshaped, 0 added, 0 removed; relative L2 0.0123``."""
        if self.identical:
            return f"identical ({len(self.tensors)} tensors)"
        counts = ", ".join(f"{self.count(c)} {c}" for c in ("changed", "reshaped", "added", "removed"))
        rel = f"; relative L2 {self.rel_l2:.4g}" if self.rel_l2 is not None else ""
        return f"{len(self.tensors)} tensors: {counts}{rel}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "identical": self.identical,
            "rel_l2": self.rel_l2,
            "counts": {c: self.count(c) for c in CHANGES},
            "tensors": [t.to_dict() for t in self.differing],
        }


def _natural(name: str) -> list[tuple[int, int | str]]:
    """Sort key reading digit runs as numbers: ``layer.2`` before ``layer.10``."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name)]


def diff_state_dicts(
    a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], *, names: tuple[str, str] = ("a", "b")
) -> WeightsDiff:
    """Compare ``a`` and ``b`` tensor by tensor (see the module's docstring)."""
    import torch

    out: list[TensorDiff] = []
    sq_diff = sq_norm = 0.0
    for name in sorted(set(a) | set(b), key=_natural):
        ta, tb = a.get(name), b.get(name)
        if ta is None:
            assert tb is not None
            out.append(TensorDiff(name, "added", None, tuple(tb.shape)))
            continue
        shape_a = tuple(ta.shape)
        if tb is None:
            out.append(TensorDiff(name, "removed", shape_a, None))
            continue
        shape_b = tuple(tb.shape)
        if shape_a != shape_b:
            out.append(TensorDiff(name, "reshaped", shape_a, shape_b))
            continue
        fa, fb = ta.detach().to(torch.float64), tb.detach().to(torch.float64)
        delta = fb - fa
        d2 = float(delta.square().sum())
        n2 = float(fa.square().sum())
        sq_diff += d2
        sq_norm += n2
        max_abs = float(delta.abs().max()) if delta.numel() else 0.0
        rel = (d2**0.5) / (n2**0.5) if n2 > 0 else d2**0.5
        same = d2 == 0.0 and ta.dtype == tb.dtype
        out.append(TensorDiff(name, "same" if same else "changed", shape_a, shape_b, rel, max_abs))
    compared = any(t.rel_l2 is not None for t in out)
    overall = ((sq_diff**0.5) / (sq_norm**0.5) if sq_norm > 0 else sq_diff**0.5) if compared else None
    return WeightsDiff(names[0], names[1], tuple(out), overall)


__all__ = ["CHANGES", "TensorDiff", "WeightsDiff", "diff_state_dicts"]
