"""A trained generator: tokenizer + prior + what is needed to turn tokens back into a network.

Chunks are normalised per layer with statistics pooled over the training checkpoints of each
architecture; the generator keeps those statistics and un-normalises a generated network with them.

A generator in descriptor mode (``tokenizer.config.coords == "descriptor"``, what training makes by
default) also serves architectures it was not trained on: any spec of a family it was trained on across at
least two architectures (distinct layouts), provided every slot can be normalised (:meth:`normalisation`:
the exact statistics of a trained architecture, else statistics pooled over same-role slots of the trained
architectures, see :mod:`igpg.structure`). With one architecture of a family, nothing in training shows
what changes with depth or width, so such a generator serves that architecture alone (and specs with
exactly its layout). A layer-index generator (stored before descriptor coordinates) serves exactly the
architectures it was trained on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from igpg.data import ZooData
from igpg.heads import ClassHead
from igpg.prior import PriorConfig, WeightPrior
from igpg.structure import (
    ChunkCoords,
    SlotStats,
    SlotVocab,
    arch_label,
    from_model_space,
    log_slots,
    slot_table,
)
from igpg.tokenizer import TokenizerConfig, WeightTokenizer
from zoo import ArchSpec, Chunks, chunk_index, get_family, unchunk
from zoo.datasets import ImageDataset
from zoo.errors import GeneratorError, Hint

log = logging.getLogger(__name__)

FORMAT = 2  # stored layout: 1 (no "format" key) layer-index generators; 2 adds vocab and slot statistics


@dataclass
class ArchStats:
    """Per-layer normalisation statistics of the training checkpoints of one architecture."""

    mean: torch.Tensor  # (L,) float64
    std: torch.Tensor  # (L,) float64


@dataclass(frozen=True)
class Normalisation:
    """The statistics a spec's generated values are un-normalised with, and where each slot's came from."""

    mean: torch.Tensor  # (L,) float64
    std: torch.Tensor  # (L,) float64
    levels: tuple[str, ...]  # per slot, one of igpg.structure.LEVELS ("arch": exact per-architecture)


@dataclass
class Generator:
    tokenizer: WeightTokenizer
    prior: WeightPrior
    k: int
    dataset_encoder: str
    text_encoder: str
    stats: dict[str, ArchStats] = field(default_factory=dict)  # arch key -> statistics
    info: dict[str, Any] = field(default_factory=dict)  # training facts (steps, losses, checkpoints)
    vocab: SlotVocab | None = None  # roles and kinds the descriptor-mode models embed
    slot_stats: SlotStats | None = None  # per-slot statistics of the trained architectures, for pooling
    log_kinds: tuple[str, ...] = ()  # kinds of tensor modelled as their logarithm (igpg.structure.LOG_KINDS)
    class_head: ClassHead | None = None  # makes classifiers from the condition's examples (igpg.heads)

    # -- building from data -------------------------------------------------------------------------
    @staticmethod
    def collect_stats(data: ZooData) -> dict[str, ArchStats]:
        groups: dict[str, list] = {}
        for e in data.examples:
            groups.setdefault(e.checkpoint.arch.key, []).append(e)
        return {key: ArchStats(ex[0].chunks.mean, ex[0].chunks.std) for key, ex in groups.items()}

    @staticmethod
    def collect_slot_stats(data: ZooData) -> SlotStats:
        """Every training architecture's per-slot statistics, with their descriptors, for pooling."""
        groups: dict[str, list] = {}
        for e in data.examples:
            groups.setdefault(e.checkpoint.arch.key, []).append(e)
        return SlotStats.build(
            (ex[0].checkpoint.arch, ex[0].chunks.mean, ex[0].chunks.std, len(ex)) for ex in groups.values()
        )

    @property
    def coords(self) -> str:
        """How the models locate a chunk: ``"layer"`` (absolute index) or ``"descriptor"``."""
        return self.tokenizer.config.coords

    # -- what it serves -----------------------------------------------------------------------------
    def _refuse(self, spec: ArchSpec, why: str) -> GeneratorError:
        return GeneratorError(f"this generator was not trained on architecture {spec}: {why}")

    def normalisation(self, spec: ArchSpec) -> Normalisation:
        """The per-slot statistics for ``spec``; raises :class:`~zoo.errors.GeneratorError` naming what
        to train when this generator cannot serve it."""
        n = len(get_family(spec.family).layout(spec).generated)
        st = self.stats.get(spec.key)
        if st is None and self.slot_stats is not None:
            twin = self.slot_stats.same_layout(spec)
            st = self.stats.get(twin) if twin is not None else None
        if st is not None:
            return Normalisation(st.mean, st.std, ("arch",) * n)
        fix = f"`zoo train --family {spec.family}`"
        if self.coords == "layer" or self.slot_stats is None or self.vocab is None:
            known = "; ".join(sorted(arch_label(k) for k in self.stats)) or "(none)"
            raise self._refuse(
                spec,
                f"it knows {known}, and it locates chunks by absolute layer index, which does not carry "
                f"over to other architectures. Train a generator on checkpoints of that architecture or "
                f"family ({fix})",
            )
        families = self.slot_stats.families
        if spec.family not in families:
            raise self._refuse(
                spec,
                f"it knows no architecture of family {spec.family!r} (it was trained on "
                f"{', '.join(sorted(families))}). Train one on that family: {fix}",
            )
        archs = self.slot_stats.architectures(spec.family)
        if len(archs) < 2:
            trained = "; ".join(sorted(map(arch_label, archs)))
            raise self._refuse(
                spec,
                f"of family {spec.family!r} it was trained on {trained} alone, and a "
                "generator serves other architectures of a family only when trained across two or more "
                f"(depths or widths). Train it on checkpoints of several architectures of the family ({fix})",
            )
        pooled = self.slot_stats.lookup(spec)
        if pooled is None:
            raise self._refuse(
                spec,
                f"some of its tensors are of a kind no {spec.family} architecture it was trained on has, so "
                f"they cannot be normalised. Train it on checkpoints that have them ({fix})",
            )
        mean, std, levels = pooled
        return Normalisation(mean, std, tuple(levels))

    def knows(self, spec: ArchSpec) -> bool:
        """Whether :meth:`sample` serves ``spec`` (see the module docstring)."""
        try:
            self.normalisation(spec)
        except GeneratorError:
            return False
        return True

    # -- sampling -----------------------------------------------------------------------------------
    def _coords(self, spec: ArchSpec) -> tuple[list[Any], ChunkCoords]:
        """The layout's generated slots and every chunk's coordinates, computed from sizes (no template)."""
        slots = list(get_family(spec.family).layout(spec).generated)
        layer, position, counts = chunk_index([s.numel for s in slots], self.k)
        if self.coords == "descriptor":
            assert self.vocab is not None, "a descriptor-mode generator has a vocabulary"
            table = slot_table(spec, self.vocab)
            return slots, ChunkCoords(layer, position, counts[layer], table.per_chunk(layer))
        limit = min(self.tokenizer.config.max_layers, self.prior.config.max_layers)
        if len(slots) > limit:
            raise GeneratorError(
                f"{spec} has {len(slots)} generated tensors but this generator tells apart only "
                f"{limit} layers (max_layers); train one with a larger max_layers"
            )
        return slots, ChunkCoords(layer, position, counts[layer])

    def _stats_for(self, spec: ArchSpec) -> tuple[torch.Tensor, torch.Tensor]:
        norm = self.normalisation(spec)
        return norm.mean, norm.std

    @torch.no_grad()
    def decode(self, spec: ArchSpec, codes: torch.Tensor, *, batch: int = 8192) -> nn.Module:
        """A network from one sample's codes (N, levels), decoded layer by layer in batches of chunks.

        Peak memory beyond the network itself is one batch of decoder activations, whatever its size.
        """
        mean, std = self._stats_for(spec)
        slots, coords = self._coords(spec)
        logs = log_slots(spec, self.log_kinds)
        tensors = []
        row = 0
        for i, slot in enumerate(slots):
            n = -(-slot.numel // self.k)
            flat = torch.empty(n * self.k, dtype=torch.float32)
            for a in range(0, n, batch):
                b = min(n, a + batch)
                part = coords.slice(row + a, row + b)
                values = self.tokenizer.decode_indices(
                    codes[row + a : row + b], part.layer, part.position, part.count, part.slots
                )
                flat[a * self.k : b * self.k] = values.reshape(-1)
            values = flat[: slot.numel].mul_(float(std[i])).add_(float(mean[i]))
            if logs[i]:
                values = values.exp_()
            if not slot.dtype.is_floating_point:
                values = values.round()
            tensors.append(values.to(slot.dtype).reshape(slot.shape))
            row += n
        return get_family(spec.family).rebuild(spec, tensors)

    @torch.no_grad()
    def reconstruct(self, spec: ArchSpec, chunks: Chunks) -> nn.Module:
        """A network of ``spec`` from its own chunks through the tokenizer (encode, decode): what survives
        tokenization (``chunks`` as training made them, e.g. ``ZooExample.chunks``)."""
        decoded = self.tokenizer.decode(self.tokenizer.encode(chunks), chunks)
        tensors = from_model_space(spec, unchunk(decoded), self.log_kinds)
        return get_family(spec.family).rebuild(spec, tensors)

    def check_conditions(self, ds_emb: torch.Tensor, arch_emb: torch.Tensor) -> None:
        """Refuse condition vectors of another size than training saw (a dataset encoder whose new version
        makes longer vectors, e.g. ``pixels`` 1 -> 2): :class:`~zoo.errors.GeneratorError` saying to train
        the generator again."""
        for what, vec, want, enc in (
            ("dataset", ds_emb, self.prior.config.ds_dim, self.dataset_encoder),
            ("architecture", arch_emb, self.prior.config.arch_dim, self.text_encoder),
        ):
            if vec.shape[-1] != want:
                train = Hint("igpg.train_on_registry(registry)", "`zoo train`")
                raise GeneratorError(
                    f"this generator was trained on {what} vectors of {want} values, and encoder {enc!r} now "
                    f"makes {vec.shape[-1]} (a newer version of it is installed); train the generator again "
                    f"on this registry ({train})"
                ).hinting(train)

    @torch.no_grad()
    def sample(
        self,
        spec: ArchSpec,
        ds_emb: torch.Tensor,
        arch_emb: torch.Tensor,
        n: int = 1,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance: float = 1.0,
        seed: int | None = None,
        progress: Any = None,
        examples: ImageDataset | None = None,
    ) -> list[nn.Module]:
        """``n`` networks of ``spec`` for a dataset embedding and an architecture embedding.

        The prior generates window by window (memory bounded by the window) and each network is decoded
        layer by layer in bounded batches, so the peak is close to the size of the networks themselves.

        ``examples``: the labelled dataset the embedding was made from (or any labelled sample of it). With
        it, a generator that has a :attr:`class_head` gives each network the classifier made from those
        examples through its generated body, where that scores better on held-back examples than the
        decoded classifier (:meth:`igpg.heads.ClassHead.choose_for`): how a network for a class order,
        class subset or input distribution the prior never saw gets a classifier that fits it.
        """
        self._stats_for(spec)
        self.check_conditions(ds_emb, arch_emb)
        _, coords = self._coords(spec)
        dev = next(self.prior.parameters()).device
        g = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
        ds = ds_emb.float().to(dev)[None].expand(n, -1)
        arch = arch_emb.float().to(dev)[None].expand(n, -1)
        tokens = self.prior.generate(
            coords.to(dev),
            ds,
            arch,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            guidance=guidance,
            generator=g,
            progress=progress,
        ).cpu()  # (n, N, L)
        return self.with_class_heads(spec, [self.decode(spec, tokens[i]) for i in range(n)], examples)

    def with_class_heads(
        self, spec: ArchSpec, nets: list[nn.Module], examples: ImageDataset | None
    ) -> list[nn.Module]:
        """``nets`` (decoded samples of ``spec``) each with the classifier :attr:`class_head` makes from
        ``examples`` where it scores better (:meth:`igpg.heads.ClassHead.choose_for`); ``nets`` as they are
        without examples or a class head. What :meth:`sample` does with ``examples``."""
        if examples is None or self.class_head is None:
            return nets
        chosen = [self.class_head.choose_for(net, spec, examples) for net in nets]
        log.info(
            "class head: %d of %d samples took the classifier made from the examples",
            sum(used for _, used in chosen),
            len(nets),
        )
        return [net for net, _ in chosen]

    # -- persistence --------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """safetensors bytes: tokenizer and prior weights, statistics, and configs as metadata."""
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("tokenizer", self.tokenizer), ("prior", self.prior)):
            for k, v in module.state_dict().items():
                tensors[f"{prefix}.{k}"] = v.detach().cpu().contiguous()
        keys = sorted(self.stats)
        for i, key in enumerate(keys):
            st = self.stats[key]
            tensors[f"stats.{i}.mean"], tensors[f"stats.{i}.std"] = st.mean.contiguous(), st.std.contiguous()
        meta: dict[str, Any] = {
            "format": FORMAT,
            "tokenizer": self.tokenizer.config.to_dict(),
            "prior": self.prior.config.to_dict(),
            "k": self.k,
            "dataset_encoder": self.dataset_encoder,
            "text_encoder": self.text_encoder,
            "arch_keys": keys,
            "info": self.info,
        }
        if self.vocab is not None:
            meta["vocab"] = self.vocab.to_dict()
        if self.slot_stats is not None:
            meta["slot_stats"] = self.slot_stats.to_dict()
        if self.log_kinds:
            meta["log_kinds"] = list(self.log_kinds)
        if self.class_head is not None:
            meta["class_head"] = self.class_head.to_dict()
        return st_save(tensors, metadata={"igpg": json.dumps(meta, sort_keys=True)})

    @classmethod
    def from_bytes(cls, data: bytes, device: str | torch.device = "cpu") -> Generator:
        """A generator from :meth:`to_bytes` output (this version's, or a layer-index one stored before
        descriptor coordinates); raises :class:`~zoo.errors.GeneratorError` for what it cannot read."""
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(json.loads(data[8 : 8 + header_len])["__metadata__"]["igpg"])
        fix = "; train a new one with this version (`zoo train`)"
        if int(meta.get("format", 1)) > FORMAT:
            raise GeneratorError(
                f"this generator was stored in format {meta['format']}, newer than this igpg reads "
                f"({FORMAT}): upgrade igpg{fix}"
            )
        tensors = st_load(data)
        try:
            tok = WeightTokenizer(TokenizerConfig(**meta["tokenizer"]))
            prior = WeightPrior(PriorConfig(**meta["prior"]))
            tok.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("tokenizer.")})
            prior.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("prior.")})
        except (TypeError, ValueError, RuntimeError) as e:
            why = " ".join(str(e).split())  # one line
            raise GeneratorError(
                f"this stored generator does not fit this version of igpg ({why}){fix}"
            ) from e
        vocab = SlotVocab.from_dict(meta["vocab"]) if "vocab" in meta else None
        slot_stats = SlotStats.from_dict(meta["slot_stats"]) if "slot_stats" in meta else None
        if tok.config.coords == "descriptor" and (vocab is None or slot_stats is None):
            raise GeneratorError(f"this stored descriptor-mode generator lacks its role vocabulary{fix}")
        stats = {
            key: ArchStats(tensors[f"stats.{i}.mean"], tensors[f"stats.{i}.std"])
            for i, key in enumerate(meta["arch_keys"])
        }
        return cls(
            tok.to(device).eval(),
            prior.to(device).eval(),
            meta["k"],
            meta["dataset_encoder"],
            meta["text_encoder"],
            stats,
            meta.get("info", {}),
            vocab,
            slot_stats,
            tuple(meta.get("log_kinds", ())),
            ClassHead.from_dict(meta["class_head"]) if "class_head" in meta else None,
        )


__all__ = ["FORMAT", "ArchStats", "Generator", "Normalisation"]
