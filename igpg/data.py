"""From registry checkpoints to what the generator trains on: chunks, conditions, and token crops.

Each checkpoint is flattened through its family plugin, chunked (per-layer padding to K), and paired with
its dataset's embedding and its architecture's text embedding, both read from the registry (computed and
stored there if missing). Layers are normalised with statistics pooled over every training checkpoint of
the same architecture (not per checkpoint): all chunks share units, and a generated network is
un-normalised with exactly the statistics its tokens were learnt in. Each example's chunks also carry their
slots' descriptor coordinates (:class:`igpg.structure.SlotChunks`) under a vocabulary of the roles and kinds
of every training architecture (:class:`igpg.structure.SlotVocab`), for descriptor-mode models. Tensors of
the kinds in ``log_kinds`` (BatchNorm running variances) are modelled as their logarithm
(:func:`igpg.structure.to_model_space`): statistics and chunks are of those values.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from igpg.structure import (
    LOG_KINDS,
    SlotChunks,
    SlotInputs,
    SlotTable,
    SlotVocab,
    chunk_slots,
    slot_table,
    to_model_space,
)
from igpg.tokenizer import chunk_coords
from zoo import (
    CheckpointRecord,
    Chunks,
    align,
    chunk,
    embed_arch,
    get_dataset_encoder,
    get_embedding,
    get_family,
    get_text_encoder,
    permutation_spec,
)
from zoo.errors import GeneratorError, Hint

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
    vocab: SlotVocab | None = None  # roles and kinds of the examples' architectures (their chunks' slots)
    log_kinds: tuple[str, ...] = ()  # kinds of tensor modelled as their logarithm

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

    def all_slots(self) -> SlotInputs | None:
        """The slot coordinates of every chunk of every example, concatenated (None without a vocabulary)."""
        parts = [chunk_slots(e.chunks) for e in self.examples]
        if any(p is None for p in parts):
            return None
        return SlotInputs(*(torch.cat(t) for t in zip(*parts)))  # type: ignore[misc]


def _check(checkpoints: Sequence[CheckpointRecord]) -> None:
    add = Hint("registry.add(FILE, dataset=NAME)", "`zoo add FILE --dataset NAME`")
    if not checkpoints:
        raise GeneratorError(
            f"no checkpoints to train on; add checkpoints with their dataset to the registry first: {add}"
        ).hinting(add)
    missing = sorted({c.ref for c in checkpoints if not c.dataset})
    if missing:
        raise GeneratorError(
            f"checkpoints without a dataset cannot condition the generator: {', '.join(missing[:5])}; "
            f"add them with their dataset ({add}) and register its data"
        ).hinting(add)


def _flatten(  # type: ignore[no-untyped-def]
    registry,
    rec: CheckpointRecord,
    log_kinds: Sequence[str] = LOG_KINDS,
    reference: Mapping[str, torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """The checkpoint's generated tensors in layout order, in model space (``log_kinds`` as logarithms);
    with ``reference`` (a state dict of the same architecture), its hidden units permuted to match it first
    (:func:`zoo.align`, weight matching)."""
    state = registry.load_state_dict(rec)
    if reference is not None:
        state = align(reference, [state], rec.arch)[0]
    tensors = get_family(rec.family).flatten(rec.arch, state)
    return to_model_space(rec.arch, tensors, log_kinds)


def alignment_references(
    registry, checkpoints: Sequence[CheckpointRecord]
) -> dict[str, dict[str, torch.Tensor]]:  # type: ignore[no-untyped-def]
    """Per architecture key, the state dict its checkpoints are aligned to (the first of them in
    ``checkpoints``), for the architectures whose family declares permutation symmetries
    (:func:`zoo.permutation_spec`); the others are not aligned."""
    refs: dict[str, dict[str, torch.Tensor]] = {}
    for rec in checkpoints:
        if rec.arch.key not in refs and permutation_spec(rec.arch) is not None:
            refs[rec.arch.key] = dict(registry.load_state_dict(rec))
    return refs


def _layer_stats(
    networks: Iterable[tuple[str, Sequence[torch.Tensor]]], std_floor: float = 1e-8
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-architecture pooled per-layer (mean, std) from (arch key, layer tensors) pairs, in float64 sums."""
    sums: dict[str, list[torch.Tensor]] = {}
    for key, tensors in networks:
        s1 = torch.tensor([float(t.double().sum()) for t in tensors], dtype=torch.float64)
        s2 = torch.tensor([float(t.double().square().sum()) for t in tensors], dtype=torch.float64)
        n = torch.tensor([t.numel() for t in tensors], dtype=torch.float64)
        acc = sums.setdefault(key, [torch.zeros_like(s1), torch.zeros_like(s2), torch.zeros_like(n)])
        for a, b in zip(acc, (s1, s2, n)):
            a += b
    out = {}
    for key, (s1, s2, n) in sums.items():
        mean = s1 / n.clamp_min(1)
        out[key] = (mean, (s2 / n.clamp_min(1) - mean.square()).clamp_min(0).sqrt().clamp_min(std_floor))
    return out


def streaming_stats(
    registry,
    checkpoints: Sequence[CheckpointRecord],  # type: ignore[no-untyped-def]
    std_floor: float = 1e-8,
    log_kinds: Sequence[str] = LOG_KINDS,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-architecture pooled per-layer (mean, std) of the model-space values, reading one checkpoint at a
    time (float64 sums)."""
    return _layer_stats(
        ((rec.arch.key, _flatten(registry, rec, log_kinds)) for rec in checkpoints), std_floor
    )


class ZooStream(torch.utils.data.IterableDataset):
    """Training examples streamed from the registry, one checkpoint in memory at a time.

    Each checkpoint is read (hash-verified), flattened by its family, chunked with its architecture's pooled
    statistics (computed in a first streaming pass unless given) and paired with its dataset and
    architecture embeddings. Under a ``DataLoader`` with workers, and under ``torchrun``, every worker and
    rank reads its own share of the checkpoints. ``load_zoo`` collects the whole stream in memory.
    """

    def __init__(
        self,
        registry,
        checkpoints: Sequence[CheckpointRecord],
        *,
        k: int,  # type: ignore[no-untyped-def]
        dataset_encoder: str | None = None,
        text_encoder: str | None = None,
        stats: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        shard: bool = True,
        vocab: SlotVocab | None = None,
        log_kinds: Sequence[str] = LOG_KINDS,
    ) -> None:
        _check(checkpoints)
        self.registry, self.checkpoints, self.k, self.shard = registry, list(checkpoints), k, shard
        self.log_kinds = tuple(log_kinds)
        self.vocab = vocab if vocab is not None else SlotVocab.build(r.arch for r in self.checkpoints)
        self._tables: dict[str, SlotTable] = {}
        self.dataset_encoder = get_dataset_encoder(dataset_encoder)
        self.text_encoder = get_text_encoder(text_encoder)
        self.stats = (
            stats
            if stats is not None
            else streaming_stats(registry, self.checkpoints, log_kinds=self.log_kinds)
        )
        self._ds: dict[str, torch.Tensor] = {}
        self._arch: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.checkpoints)

    def _mine(self) -> list[CheckpointRecord]:
        if not self.shard:
            return self.checkpoints
        from igpg import distributed

        info = torch.utils.data.get_worker_info()
        parts, part = distributed.world_size(), distributed.rank()
        if info is not None:
            parts, part = parts * info.num_workers, part * info.num_workers + info.id
        return self.checkpoints[part::parts]

    def example(self, rec: CheckpointRecord, tensors: Sequence[torch.Tensor] | None = None) -> ZooExample:
        """One checkpoint as training data (``tensors``: its flattened layers in model space, when already
        read)."""
        if rec.dataset not in self._ds:
            self._ds[rec.dataset] = torch.from_numpy(
                np.asarray(
                    get_embedding(  # type: ignore[index]
                        self.registry, "dataset", rec.dataset, self.dataset_encoder.id
                    ).vector,
                    dtype=np.float32,
                )
            )
        if rec.arch.key not in self._arch:
            self._arch[rec.arch.key] = torch.from_numpy(
                np.asarray(
                    embed_arch(self.registry, rec.arch, encoder=self.text_encoder).vector, dtype=np.float32
                )
            )
        if tensors is None:
            tensors = _flatten(self.registry, rec, self.log_kinds)
        if rec.arch.key not in self._tables:
            self._tables[rec.arch.key] = slot_table(rec.arch, self.vocab)
        return ZooExample(
            rec,
            chunk_with(tensors, self.k, *self.stats[rec.arch.key], slots=self._tables[rec.arch.key]),
            self._ds[rec.dataset],
            self._arch[rec.arch.key],
        )  # type: ignore[index]

    def __iter__(self) -> Iterator[ZooExample]:
        for rec in self._mine():
            yield self.example(rec)


def load_zoo(
    registry,
    checkpoints: Sequence[CheckpointRecord],
    *,
    k: int,
    dataset_encoder: str | None = None,
    text_encoder: str | None = None,
    progress: bool = True,
    log_kinds: Sequence[str] = LOG_KINDS,
    align: bool = False,
) -> ZooData:  # type: ignore[no-untyped-def]
    """Flatten, chunk and attach conditions to ``checkpoints`` (which must all name a dataset), in memory.

    Each checkpoint is read once: the pooled statistics come from the flattened layers held for chunking.
    ``log_kinds``: kinds of tensor modelled as their logarithm (``()``: none, as generators before them).
    ``align``: permute every checkpoint's hidden units to match the first checkpoint of its architecture
    (weight matching, Git Re-Basin; :func:`alignment_references`) before chunking, so the zoo's networks
    share one basin per architecture and the tokenizer and prior see fewer modes. Functions are unchanged.
    """
    _check(checkpoints)
    refs = alignment_references(registry, checkpoints) if align else {}
    flat = [
        _flatten(registry, rec, log_kinds, refs.get(rec.arch.key))
        for rec in tqdm(checkpoints, desc="load zoo", unit="ckpt", disable=not progress, leave=False)
    ]
    stats = _layer_stats(zip((rec.arch.key for rec in checkpoints), flat))
    stream = ZooStream(
        registry,
        checkpoints,
        k=k,
        dataset_encoder=dataset_encoder,
        text_encoder=text_encoder,
        stats=stats,
        shard=False,
        log_kinds=log_kinds,
    )
    examples = [stream.example(rec, tensors) for rec, tensors in zip(checkpoints, flat)]
    if refs:
        log.info("aligned %d checkpoints to %d reference(s) by weight matching", len(checkpoints), len(refs))
    return ZooData(
        tuple(examples), k, stream.dataset_encoder.id, stream.text_encoder.id, stream.vocab, tuple(log_kinds)
    )


def pooled_stats(
    networks: Sequence[Sequence[torch.Tensor]], std_floor: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer mean and std over every value of that layer in every network: (L,), (L,) float64."""
    layers = list(zip(*networks))
    mean = torch.tensor([float(torch.stack(ts).double().mean()) for ts in layers], dtype=torch.float64)
    std = torch.tensor(
        [float(torch.stack(ts).double().std(correction=0)) for ts in layers], dtype=torch.float64
    ).clamp_min(std_floor)
    return mean, std


def chunk_with(
    tensors: Sequence[torch.Tensor],
    k: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    slots: SlotTable | None = None,
) -> SlotChunks:
    """Chunks of ``tensors`` normalised with the given per-layer statistics (``unchunk`` undoes it), carrying
    the network's slot coordinates ``slots`` when given."""
    normed = [((t.double() - mean[i]) / std[i]).float() for i, t in enumerate(tensors)]
    raw = chunk(normed, k, normalize=False)
    fields = {f.name: getattr(raw, f.name) for f in dataclasses.fields(raw)}
    fields.update(mean=mean.clone(), std=std.clone(), dtypes=tuple(t.dtype for t in tensors), normalized=True)
    return SlotChunks(**fields, slots=slots)
