"""From registry checkpoints to what the generator trains on: chunks, conditions, and token crops.

Each checkpoint is flattened through its family plugin, chunked (per-layer padding to K), and paired with
its dataset's embedding and its architecture's text embedding, both read from the registry (computed and
stored there if missing). Layers are normalised with statistics pooled over every training checkpoint of
the same architecture (not per checkpoint): all chunks share units, and a generated network is
un-normalised with exactly the statistics its tokens were learnt in.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from igpg.tokenizer import chunk_coords
from zoo.chunking import Chunks, chunk
from zoo.embeddings import embed_arch, get_embedding
from zoo.encoders import get_dataset_encoder, get_text_encoder
from zoo.errors import GeneratorError
from zoo.plugins import get_family
from zoo.records import CheckpointRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ZooExample:
    """One checkpoint as training data."""

    checkpoint: CheckpointRecord
    chunks: Chunks
    ds_emb: torch.Tensor  # (ds_dim,) float32
    arch_emb: torch.Tensor  # (arch_dim,) float32


@dataclass(frozen=True, eq=False)
class ZooData:
    """Training data for the generator: examples plus what was used to make them."""

    examples: tuple[ZooExample, ...]
    k: int
    dataset_encoder: str
    text_encoder: str

    @property
    def ds_dim(self) -> int:
        return int(self.examples[0].ds_emb.shape[0])

    @property
    def arch_dim(self) -> int:
        return int(self.examples[0].arch_emb.shape[0])

    def all_chunks(self) -> tuple[torch.Tensor, ...]:
        """(data, mask, layer, position, count) of every chunk of every example, concatenated."""
        parts = [(e.chunks.data, e.chunks.mask, *chunk_coords(e.chunks)) for e in self.examples]
        return tuple(torch.cat(p) for p in zip(*parts))


def load_zoo(registry, checkpoints: Sequence[CheckpointRecord], *, k: int, dataset_encoder: str | None = None,
             text_encoder: str | None = None, progress: bool = True) -> ZooData:  # type: ignore[no-untyped-def]
    """Flatten, chunk and attach conditions to ``checkpoints`` (which must all name a dataset)."""
    if not checkpoints:
        raise GeneratorError("no checkpoints to train on; add checkpoints with dataset= to the registry first")
    denc = get_dataset_encoder(dataset_encoder)
    tenc = get_text_encoder(text_encoder)
    missing = sorted({c.ref for c in checkpoints if not c.dataset})
    if missing:
        raise GeneratorError(f"checkpoints without a dataset cannot condition the generator: {', '.join(missing[:5])}"
                             "; add them with dataset= (and register the dataset)")
    ds_vecs: dict[str, torch.Tensor] = {}
    arch_vecs: dict[str, torch.Tensor] = {}
    flat: list[list[torch.Tensor]] = []
    for rec in tqdm(checkpoints, desc="load zoo", unit="ckpt", disable=not progress, leave=False):
        if rec.dataset not in ds_vecs:
            ds_vecs[rec.dataset] = torch.from_numpy(np.asarray(
                get_embedding(registry, "dataset", rec.dataset, denc.id).vector, dtype=np.float32))
        if rec.arch.key not in arch_vecs:
            arch_vecs[rec.arch.key] = torch.from_numpy(np.asarray(
                embed_arch(registry, rec.arch, encoder=tenc).vector, dtype=np.float32))
        flat.append(get_family(rec.family).flatten(rec.arch, registry.load_state_dict(rec)))
    stats = {key: pooled_stats([f for f, r in zip(flat, checkpoints) if r.arch.key == key])
             for key in {r.arch.key for r in checkpoints}}
    examples = [ZooExample(rec, chunk_with(tensors, k, *stats[rec.arch.key]), ds_vecs[rec.dataset],
                           arch_vecs[rec.arch.key]) for rec, tensors in zip(checkpoints, flat)]
    return ZooData(tuple(examples), k, denc.id, tenc.id)


def pooled_stats(networks: Sequence[Sequence[torch.Tensor]], std_floor: float = 1e-8
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer mean and std over every value of that layer in every network: (L,), (L,) float64."""
    layers = list(zip(*networks))
    mean = torch.tensor([float(torch.stack(ts).double().mean()) for ts in layers], dtype=torch.float64)
    std = torch.tensor([float(torch.stack(ts).double().std(correction=0)) for ts in layers],
                       dtype=torch.float64).clamp_min(std_floor)
    return mean, std


def chunk_with(tensors: Sequence[torch.Tensor], k: int, mean: torch.Tensor, std: torch.Tensor) -> Chunks:
    """Chunks of ``tensors`` normalised with the given per-layer statistics (``unchunk`` undoes it)."""
    normed = [((t.double() - mean[i]) / std[i]).float() for i, t in enumerate(tensors)]
    raw = chunk(normed, k, normalize=False)
    return dataclasses.replace(raw, mean=mean.clone(), std=std.clone(), dtypes=tuple(t.dtype for t in tensors),
                               normalized=True)
