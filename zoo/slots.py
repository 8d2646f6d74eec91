"""What a family's generator works on: the tensors of an architecture's state dict (:class:`TensorSlot`) and
which of them a generator produces, in order (:class:`Layout`). Families build them
(:meth:`zoo.ArchitectureFamily.slots`, :meth:`~zoo.ArchitectureFamily.layout`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zoo.records import ArchSpec


@dataclass(frozen=True)
class TensorSlot:
    """One tensor of an architecture's state dict."""

    name: str  # state-dict key
    shape: tuple[int, ...]
    dtype: torch.dtype
    is_parameter: bool  # an nn.Parameter (True) or a buffer (False)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Layout:
    """Which tensors of an architecture the generator produces, in order, and how the rest are handled.

    ``generated`` lists the tensors a generator must produce, in generation order. ``fixed`` lists the
    tensors it does not produce; ``fixed_policy`` says in words where they come from when a module is
    rebuilt (e.g. "num_batches_tracked: zero", "base weights: the referenced base checkpoint").
    """

    arch: ArchSpec
    generated: tuple[TensorSlot, ...]
    fixed: tuple[TensorSlot, ...]
    fixed_policy: str

    @property
    def num_generated(self) -> int:
        """Number of scalar values the generator produces for this architecture."""
        return sum(s.numel for s in self.generated)

    @property
    def num_params(self) -> int:
        """Number of parameters (nn.Parameter elements) among the generated tensors."""
        return sum(s.numel for s in self.generated if s.is_parameter)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.generated)
