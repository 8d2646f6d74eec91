"""From registry checkpoints to what the generator trains on: chunks, conditions, and token crops.

Each checkpoint is flattened through its family plugin, chunked (per-layer padding to K, per-layer
normalisation), and paired with its dataset's embedding and its architecture's text embedding, both read
from the registry (computed and stored there if missing).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from igpg.tokenizer import chunk_coords
from zoo.chunking import Chunks
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
    examples = []
    for rec in tqdm(checkpoints, desc="load zoo", unit="ckpt", disable=not progress, leave=False):
        if rec.dataset not in ds_vecs:
            ds_vecs[rec.dataset] = torch.from_numpy(np.asarray(
                get_embedding(registry, "dataset", rec.dataset, denc.id).vector, dtype=np.float32))
        if rec.arch.key not in arch_vecs:
            arch_vecs[rec.arch.key] = torch.from_numpy(np.asarray(
                embed_arch(registry, rec.arch, encoder=tenc).vector, dtype=np.float32))
        family = get_family(rec.family)
        tensors = family.flatten(rec.arch, registry.load_state_dict(rec))
        examples.append(ZooExample(rec, family.chunk(rec.arch, tensors, k), ds_vecs[rec.dataset],
                                   arch_vecs[rec.arch.key]))
    return ZooData(tuple(examples), k, denc.id, tenc.id)
