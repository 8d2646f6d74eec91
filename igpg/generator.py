"""A trained generator: tokenizer + prior + what is needed to turn tokens back into a network.

Chunks are normalised per layer with statistics pooled over the training checkpoints of each
architecture; the generator keeps those statistics and un-normalises a generated network with them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from igpg.data import ZooData
from igpg.prior import ChunkCoords, PriorConfig, WeightPrior
from igpg.tokenizer import TokenizerConfig, WeightTokenizer, chunk_coords
from zoo.chunking import Chunks, chunk, unchunk
from zoo.errors import GeneratorError
from zoo.plugins import get_family
from zoo.records import ArchSpec


@dataclass
class ArchStats:
    """Per-layer normalisation statistics of the training checkpoints of one architecture."""

    mean: torch.Tensor  # (L,) float64
    std: torch.Tensor  # (L,) float64


@dataclass
class Generator:
    tokenizer: WeightTokenizer
    prior: WeightPrior
    k: int
    dataset_encoder: str
    text_encoder: str
    stats: dict[str, ArchStats] = field(default_factory=dict)  # arch key -> statistics
    info: dict[str, Any] = field(default_factory=dict)  # training facts (steps, losses, checkpoints)

    # -- building from data -------------------------------------------------------------------------
    @staticmethod
    def collect_stats(data: ZooData) -> dict[str, ArchStats]:
        groups: dict[str, list] = {}
        for e in data.examples:
            groups.setdefault(e.checkpoint.arch.key, []).append(e)
        return {key: ArchStats(ex[0].chunks.mean, ex[0].chunks.std) for key, ex in groups.items()}

    # -- sampling -----------------------------------------------------------------------------------
    def _template(self, spec: ArchSpec) -> Chunks:
        family = get_family(spec.family)
        layout = family.layout(spec)
        zeros = [torch.zeros(s.shape, dtype=s.dtype) for s in layout.generated]
        return chunk(zeros, self.k, normalize=False)

    def _stats_for(self, spec: ArchSpec) -> tuple[torch.Tensor, torch.Tensor]:
        st = self.stats.get(spec.key)
        if st is None:
            known = ", ".join(sorted(self.stats)) or "(none)"
            raise GeneratorError(f"this generator was not trained on architecture {spec}; it knows {known}. "
                                 "Train a generator on checkpoints of that architecture (`zoo train`)")
        return st.mean, st.std

    @torch.no_grad()
    def sample(self, spec: ArchSpec, ds_emb: torch.Tensor, arch_emb: torch.Tensor, n: int = 1, *,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               guidance: float = 1.0, seed: int | None = None, progress: Any = None) -> list[nn.Module]:
        """``n`` networks of ``spec`` for a dataset embedding and an architecture embedding."""
        mean, std = self._stats_for(spec)
        template = self._template(spec)
        layer, position, count = chunk_coords(template)
        coords = ChunkCoords(layer, position, count)
        dev = next(self.prior.parameters()).device
        g = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
        ds = ds_emb.float().to(dev)[None].expand(n, -1)
        arch = arch_emb.float().to(dev)[None].expand(n, -1)
        tokens = self.prior.generate(coords.to(dev), ds, arch,
                                     temperature=temperature, top_k=top_k, top_p=top_p, guidance=guidance, generator=g,
                                     progress=progress)  # (n, N, L)
        family = get_family(spec.family)
        out = []
        for i in range(n):
            idx = tokens[i].cpu()
            decoded = self.tokenizer.decode(idx, template)
            normalized = Chunks(decoded.data, template.mask, template.layer, template.position, mean, std,
                                template.shapes, template.dtypes, self.k, True)
            out.append(family.rebuild(spec, unchunk(normalized)))
        return out

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
        meta = {"igpg": json.dumps({
            "tokenizer": self.tokenizer.config.to_dict(), "prior": self.prior.config.to_dict(), "k": self.k,
            "dataset_encoder": self.dataset_encoder, "text_encoder": self.text_encoder, "arch_keys": keys,
            "info": self.info}, sort_keys=True)}
        return st_save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes, device: str | torch.device = "cpu") -> "Generator":
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(json.loads(data[8:8 + header_len])["__metadata__"]["igpg"])
        tensors = st_load(data)
        tok = WeightTokenizer(TokenizerConfig(**meta["tokenizer"]))
        prior = WeightPrior(PriorConfig(**meta["prior"]))
        tok.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("tokenizer.")})
        prior.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("prior.")})
        stats = {key: ArchStats(tensors[f"stats.{i}.mean"], tensors[f"stats.{i}.std"])
                 for i, key in enumerate(meta["arch_keys"])}
        return cls(tok.to(device).eval(), prior.to(device).eval(), meta["k"], meta["dataset_encoder"],
                   meta["text_encoder"], stats, meta.get("info", {}))


__all__ = ["ArchStats", "Generator"]
