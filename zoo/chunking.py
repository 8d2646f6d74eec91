"""The default chunker: per-layer tensors -> fixed-size chunks, the generator's unit of work (as in IGPG).

Each layer (one tensor of a family's layout) is, in order:

1. normalised by its own mean and standard deviation (optional; the std is floored so that constant layers
   such as a fresh BatchNorm weight do not divide by zero),
2. flattened and zero-padded to a multiple of ``k``,
3. cut into ``ceil(numel / k)`` chunks of ``k`` values.

:func:`unchunk` inverts this exactly up to float32 rounding of the normalisation (bitwise exactly with
``normalize=False`` for tensors that float32 represents exactly: float32, float16, bfloat16).
Families expose this as :meth:`zoo.ArchitectureFamily.chunk`; a family may override it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

STD_FLOOR = 1e-8  # smallest std a layer is divided by; constant layers normalise to zeros


@dataclass(frozen=True, eq=False)
class Chunks:
    """A network cut into chunks of ``k`` values: what the weight tokenizer (VQ-VAE) reads and writes.

    Rows are ordered by layer, then by position within the layer. To turn generated values back into
    tensors, replace ``data`` (``dataclasses.replace(chunks, data=decoded)`` or :meth:`with_data`) and call
    :func:`unchunk`.
    """

    data: torch.Tensor  # (N, K) float32: normalised values, zero where mask is False
    mask: torch.Tensor  # (N, K) bool: True on real values, False on padding
    layer: torch.Tensor  # (N,) long: index of the layer (tensor) each chunk belongs to
    position: torch.Tensor  # (N,) long: index of the chunk within its layer
    mean: torch.Tensor  # (L,) float64: per-layer mean subtracted before chunking (0 without normalisation)
    std: (
        torch.Tensor
    )  # (L,) float64: per-layer std divided by, floored at std_floor (1 without normalisation)
    # (the statistics are computed in float32 and kept as float64 so that unchunk applies the same numbers)
    shapes: tuple[tuple[int, ...], ...]  # (L,) the layers' shapes
    dtypes: tuple[torch.dtype, ...]  # (L,) the layers' dtypes, restored by unchunk
    k: int  # chunk size
    normalized: bool  # whether per-layer normalisation was applied

    @property
    def num_layers(self) -> int:
        return len(self.shapes)

    @property
    def num_chunks(self) -> int:
        return int(self.data.shape[0])

    @property
    def numels(self) -> list[int]:
        """Number of real values per layer."""
        return [_numel(s) for s in self.shapes]

    @property
    def chunks_per_layer(self) -> list[int]:
        return [-(-n // self.k) for n in self.numels]

    def with_data(self, data: torch.Tensor) -> "Chunks":
        """The same chunking with other values (e.g. decoded by the tokenizer); shape must be (N, K)."""
        if tuple(data.shape) != tuple(self.data.shape):
            raise ValueError(f"chunk data must have shape {tuple(self.data.shape)}, got {tuple(data.shape)}")
        return dataclasses.replace(self, data=data)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def chunk_index(numels: Sequence[int], k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where every chunk of layers of ``numels`` values sits: (layer (N,), position in layer (N,), chunks per
    layer (L,)), without allocating the chunks (a generator lays out a network before it has values)."""
    counts = (torch.as_tensor(list(numels), dtype=torch.long) + k - 1) // k  # (L,) chunks per layer
    layer = torch.repeat_interleave(torch.arange(len(counts)), counts)  # (N,)
    first_row = torch.cumsum(counts, 0) - counts  # (L,) index of each layer's first chunk
    return layer, torch.arange(len(layer)) - first_row[layer], counts


def chunk(
    tensors: Sequence[torch.Tensor], k: int, *, normalize: bool = True, std_floor: float = STD_FLOOR
) -> Chunks:
    """Cut ``tensors`` (one per layer, in layout order) into chunks of ``k`` values.

    With ``normalize`` each layer is first standardised with its own mean and (population) std, floored at
    ``std_floor``. Padding is zero and masked out. Memory: the (N, K) data and mask, nothing per layer.
    """
    if k < 1:
        raise ValueError(f"chunk size k must be a positive integer, got {k}")
    shapes = tuple(tuple(int(d) for d in t.shape) for t in tensors)
    numels = torch.tensor([t.numel() for t in tensors], dtype=torch.long)  # (L,)
    layer, position, counts = chunk_index(numels.tolist(), k)
    n = int(counts.sum())
    data = torch.zeros(n, k, dtype=torch.float32)  # (N, K)
    means = torch.zeros(len(tensors), dtype=torch.float64)  # (L,)
    stds = torch.ones(len(tensors), dtype=torch.float64)  # (L,)
    flat = data.view(-1)
    start = 0
    for i, t in enumerate(tensors):
        numel = t.numel()
        if numel:
            dest = flat[start : start + numel]  # (numel,) this layer's slice of the chunk data
            src = t.detach().reshape(-1)
            if not normalize:
                dest.copy_(src)  # cast to float32
            else:
                if src.dtype != torch.float32:  # statistics in float32, never in half precision
                    dest.copy_(src)
                    src = dest
                std, mean = torch.std_mean(src, correction=0)
                std = std.clamp_min(std_floor)
                torch.sub(src, mean, out=dest)  # one pass each: memory traffic is what this costs
                dest.div_(std)
                means[i], stds[i] = mean, std
        start += int(counts[i]) * k
    filled = numels[layer] - position * k  # (N,) real values from each chunk's start on
    mask = torch.arange(k).unsqueeze(0) < filled.unsqueeze(1)  # (N, K)
    dtypes = tuple(t.dtype for t in tensors)
    return Chunks(data, mask, layer, position, means, stds, shapes, dtypes, k, normalize)


def unchunk(chunks: Chunks) -> list[torch.Tensor]:
    """The per-layer tensors back from ``chunks``: drop padding, undo normalisation, restore shape and dtype.

    Each returned tensor owns its memory (nothing aliases ``chunks.data``).
    """
    k = chunks.k
    need = sum(chunks.chunks_per_layer)
    if need != chunks.num_chunks or chunks.data.shape[-1:] != (k,):
        raise ValueError(
            f"chunks hold {tuple(chunks.data.shape)} values but the shapes need ({need}, {k}); "
            "were data and shapes taken from different chunkings?"
        )
    flat = chunks.data.reshape(-1)
    out: list[torch.Tensor] = []
    row = 0
    for i, (shape, dtype) in enumerate(zip(chunks.shapes, chunks.dtypes)):
        numel = _numel(shape)
        values = flat[row * k : row * k + numel].to(torch.float32)
        if chunks.normalized:  # mean + std * values, in one pass, into a new tensor
            values = torch.add(chunks.mean[i].to(torch.float32), values, alpha=float(chunks.std[i]))
        elif dtype == values.dtype:
            values = values.clone()  # never hand out a view of chunks.data
        if not dtype.is_floating_point:
            values = values.round()
        out.append(values.to(dtype).reshape(shape))
        row += -(-numel // k)
    return out


__all__ = ["STD_FLOOR", "Chunks", "chunk", "chunk_index", "unchunk"]
