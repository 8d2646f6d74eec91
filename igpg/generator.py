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
from igpg.tokenizer import TokenizerConfig, WeightTokenizer
from zoo import ArchSpec, chunk_index, get_family
from zoo.errors import GeneratorError


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
    def _coords(self, spec: ArchSpec) -> tuple[list[Any], ChunkCoords]:
        """The layout's generated slots and every chunk's coordinates, computed from sizes (no template)."""
        slots = list(get_family(spec.family).layout(spec).generated)
        limit = min(self.tokenizer.config.max_layers, self.prior.config.max_layers)
        if len(slots) > limit:
            raise GeneratorError(
                f"{spec} has {len(slots)} generated tensors but this generator tells apart only "
                f"{limit} layers (max_layers); train one with a larger max_layers"
            )
        layer, position, counts = chunk_index([s.numel for s in slots], self.k)
        return slots, ChunkCoords(layer, position, counts[layer])

    def _stats_for(self, spec: ArchSpec) -> tuple[torch.Tensor, torch.Tensor]:
        st = self.stats.get(spec.key)
        if st is None:
            known = ", ".join(sorted(self.stats)) or "(none)"
            raise GeneratorError(
                f"this generator was not trained on architecture {spec}; it knows {known}. "
                "Train a generator on checkpoints of that architecture (`zoo train`)"
            )
        return st.mean, st.std

    @torch.no_grad()
    def decode(self, spec: ArchSpec, codes: torch.Tensor, *, batch: int = 8192) -> nn.Module:
        """A network from one sample's codes (N, levels), decoded layer by layer in batches of chunks.

        Peak memory beyond the network itself is one batch of decoder activations, whatever its size.
        """
        mean, std = self._stats_for(spec)
        slots, coords = self._coords(spec)
        tensors = []
        row = 0
        for i, slot in enumerate(slots):
            n = -(-slot.numel // self.k)
            flat = torch.empty(n * self.k, dtype=torch.float32)
            for a in range(0, n, batch):
                b = min(n, a + batch)
                part = coords.slice(row + a, row + b)
                values = self.tokenizer.decode_indices(
                    codes[row + a : row + b], part.layer, part.position, part.count
                )
                flat[a * self.k : b * self.k] = values.reshape(-1)
            values = flat[: slot.numel].mul_(float(std[i])).add_(float(mean[i]))
            if not slot.dtype.is_floating_point:
                values = values.round()
            tensors.append(values.to(slot.dtype).reshape(slot.shape))
            row += n
        return get_family(spec.family).rebuild(spec, tensors)

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
    ) -> list[nn.Module]:
        """``n`` networks of ``spec`` for a dataset embedding and an architecture embedding.

        The prior generates window by window (memory bounded by the window) and each network is decoded
        layer by layer in bounded batches, so the peak is close to the size of the networks themselves.
        """
        self._stats_for(spec)
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
        return [self.decode(spec, tokens[i]) for i in range(n)]

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
        meta = {
            "igpg": json.dumps(
                {
                    "tokenizer": self.tokenizer.config.to_dict(),
                    "prior": self.prior.config.to_dict(),
                    "k": self.k,
                    "dataset_encoder": self.dataset_encoder,
                    "text_encoder": self.text_encoder,
                    "arch_keys": keys,
                    "info": self.info,
                },
                sort_keys=True,
            )
        }
        return st_save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes, device: str | torch.device = "cpu") -> Generator:
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(json.loads(data[8 : 8 + header_len])["__metadata__"]["igpg"])
        tensors = st_load(data)
        tok = WeightTokenizer(TokenizerConfig(**meta["tokenizer"]))
        prior = WeightPrior(PriorConfig(**meta["prior"]))
        tok.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("tokenizer.")})
        prior.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("prior.")})
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
        )


__all__ = ["ArchStats", "Generator"]
