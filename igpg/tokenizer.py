"""The weight tokenizer: a VQ-VAE that maps each chunk of K weights to ``levels`` codebook indices.

The encoder and decoder see, besides the chunk's values, which tensor ("slot") it belongs to and where it
sits in that tensor, so one codebook serves all layers. The slot is given either by its absolute layer index
(``coords="layer"``, what generators stored before descriptor coordinates use) or by its slot descriptor
(``coords="descriptor"``: role and kind embeddings, relative depths, fans; :mod:`igpg.structure`), which
carries over to architectures the tokenizer never saw. Reconstruction loss is masked: padding never counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from igpg.quantizers import make_quantizer
from igpg.structure import SlotEncoder, SlotInputs, chunk_slots
from zoo import Chunks
from zoo.errors import GeneratorError

COORDS = ("layer", "descriptor")  # how the models locate a chunk (TokenizerConfig.coords, PriorConfig.coords)


@dataclass
class TokenizerConfig:
    k: int = 16  # chunk size: values per chunk
    latent_dim: int = 32  # dimension of code vectors
    hidden: int = 256  # width of encoder/decoder MLPs
    depth: int = 2  # hidden layers in encoder and decoder
    codebook_size: int = 512  # codes per quantizer level
    levels: int = 10  # residual levels (codes per chunk); 80 cnn-tiny: 6 keep 92% of accuracy, 10 keep 99%
    quantizer: str = "ema"  # "ema" (k-means with dead-code replacement) or "gumbel"
    max_layers: int = 1024  # size of the layer-index embedding (ResNet-152 has 777 generated tensors)
    coords: str = "layer"  # "layer": absolute layer index; "descriptor": slot descriptors (training sets it
    # from TrainConfig.coords; a stored config without this key is a layer-index one)
    num_roles: int = 0  # rows of the role embedding, descriptor mode (vocabulary size + the unknown row)
    num_kinds: int = 0  # rows of the kind embedding, descriptor mode (vocabulary size + the unknown row)
    role_dropout: float = 0.05  # share of training chunks whose role is replaced by the unknown row
    skip: bool = False  # residual encoder and decoder around an identity path (latent_dim must equal k): the
    # codes quantize the chunk's values themselves from the start, the MLPs learn corrections (starting at 0)
    pos_features: int = 16  # sinusoidal features of the chunk's position within its layer
    commitment: float = 0.25  # weight of the commitment loss (EMA)
    ema_decay: float = 0.95  # EMA decay of the codebook statistics

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def position_features(position: torch.Tensor, count: torch.Tensor, n: int) -> torch.Tensor:
    """Sinusoids of a chunk's absolute and relative position within its layer: (N,) -> (N, n)."""
    half = n // 2
    freqs = torch.exp(
        torch.arange(half // 2, device=position.device) * (-math.log(1000.0) / max(1, half // 2))
    )
    absolute = position.float()[:, None] * freqs[None]  # (N, half/2)
    relative = (
        (position.float() / count.clamp_min(1).float())[:, None]
        * math.pi
        * (1 + torch.arange(half // 2, device=position.device))[None]
    )  # (N, half/2)
    return torch.cat([absolute.sin(), absolute.cos(), relative.sin(), relative.cos()], -1)  # (N, n)


def _mlp(inp: int, hidden: int, out: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(inp, hidden), nn.GELU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.GELU()]
    layers.append(nn.Linear(hidden, out))
    return nn.Sequential(*layers)


class WeightTokenizer(nn.Module):
    """VQ-VAE over weight chunks: ``encode`` chunks to indices, ``decode`` indices to chunk values."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        c = self.config = config
        if c.coords not in COORDS:
            raise ValueError(f"coords must be one of {COORDS}, got {c.coords!r}")
        if c.coords == "layer":
            self.layer_emb = nn.Embedding(c.max_layers, c.hidden)
        else:
            self.slot_enc = SlotEncoder(c.num_roles, c.num_kinds, c.hidden, c.role_dropout)
        cond = c.hidden + c.pos_features
        if c.skip and c.latent_dim != c.k:
            raise ValueError(f"a skip tokenizer's latent_dim must equal k ({c.k}), got {c.latent_dim}")
        self.enc_in = nn.Linear(2 * c.k, c.hidden)
        self.encoder = _mlp(c.hidden + cond, c.hidden, c.latent_dim, c.depth)
        self.decoder = _mlp(c.latent_dim + cond, c.hidden, c.k, c.depth)
        if c.skip:  # the corrections start at zero: at first the codes quantize the values themselves
            for mlp in (self.encoder, self.decoder):
                nn.init.zeros_(mlp[-1].weight)
                nn.init.zeros_(mlp[-1].bias)
        kw = {"decay": c.ema_decay, "commitment": c.commitment} if c.quantizer == "ema" else {}
        self.quantizer = make_quantizer(c.quantizer, c.levels, c.codebook_size, c.latent_dim, **kw)

    @property
    def device(self) -> torch.device:
        return self.enc_in.weight.device

    def _cond(
        self,
        layer: torch.Tensor,
        position: torch.Tensor,
        count: torch.Tensor,
        slots: SlotInputs | None = None,
    ) -> torch.Tensor:
        if self.config.coords == "layer":
            where = self.layer_emb(layer % self.config.max_layers)  # (N, H)
        elif slots is None:
            raise GeneratorError(
                "this tokenizer locates chunks by slot descriptors, but the chunks carry none: make them "
                "with igpg.data.chunk_with(..., slots=igpg.structure.slot_table(spec, vocab))"
            )
        else:
            where = self.slot_enc(slots)  # (N, H)
        pos = position_features(position, count, self.config.pos_features)  # (N, P)
        return torch.cat([where, pos], -1)  # (N, H+P)

    def _decode(self, q: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Chunk values (N, K) from quantized vectors (N, D) and conditions."""
        out = self.decoder(torch.cat([q, cond], -1))
        return out + q if self.config.skip else out

    def _encode_latent(self, data: torch.Tensor, mask: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = torch.cat([data * mask, mask.float()], -1)  # (N, 2K)
        z = self.encoder(torch.cat([self.enc_in(x), cond], -1))  # (N, D)
        return z + data * mask if self.config.skip else z

    def forward(
        self,
        data: torch.Tensor,
        mask: torch.Tensor,
        layer: torch.Tensor,
        position: torch.Tensor,
        count: torch.Tensor,
        slots: SlotInputs | None = None,
    ) -> dict[str, torch.Tensor]:
        """Reconstruct a batch of chunks; returns the losses and the codes.

        data, mask: (N, K); layer, position, count: (N,) (count = chunks in the chunk's layer); slots: the
        chunks' slot coordinates (descriptor mode).
        """
        cond = self._cond(layer, position, count, slots)
        q = self.quantizer(self._encode_latent(data, mask, cond))
        recon = self._decode(q.quantized, cond)  # (N, K)
        m = mask.float()
        rec_loss = ((recon - data) ** 2 * m).sum() / m.sum().clamp_min(1)
        return {
            "loss": rec_loss + q.loss,
            "recon_loss": rec_loss,
            "vq_loss": q.loss,
            "perplexity": q.perplexity,
            "indices": q.indices,
            "recon": recon,
        }

    @torch.no_grad()
    def encode(self, chunks: Chunks) -> torch.Tensor:
        """Codes of every chunk: (N, levels) long (descriptor mode: ``chunks`` carry their slots,
        :class:`igpg.structure.SlotChunks`)."""
        layer, position, count = chunk_coords(chunks)
        slots = chunk_slots(chunks)
        dev = self.device
        cond = self._cond(
            layer.to(dev), position.to(dev), count.to(dev), slots.to(dev) if slots is not None else None
        )
        z = self._encode_latent(chunks.data.to(dev), chunks.mask.to(dev), cond)
        return self.quantizer(z).indices.reshape(chunks.num_chunks, -1).cpu()

    @torch.no_grad()
    def decode_indices(
        self,
        indices: torch.Tensor,
        layer: torch.Tensor,
        position: torch.Tensor,
        count: torch.Tensor,
        slots: SlotInputs | None = None,
    ) -> torch.Tensor:
        """Chunk values (N, K) from codes (N, levels) and the chunks' coordinates."""
        dev = self.device
        q = self.quantizer.lookup(indices.to(dev))  # (N, D)
        cond = self._cond(
            layer.to(dev), position.to(dev), count.to(dev), slots.to(dev) if slots is not None else None
        )
        return self._decode(q, cond).float().cpu()

    @torch.no_grad()
    def decode(self, indices: torch.Tensor, like: Chunks) -> Chunks:
        """``like`` with its values replaced by the decoding of ``indices``; padding is zeroed."""
        layer, position, count = chunk_coords(like)
        values = self.decode_indices(indices, layer, position, count, chunk_slots(like)) * like.mask
        return like.with_data(values)


def chunk_coords(chunks: Chunks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(layer, position, chunks-in-layer) per chunk, each (N,) long."""
    per_layer = torch.tensor(chunks.chunks_per_layer, dtype=torch.long)
    return chunks.layer, chunks.position, per_layer[chunks.layer] if chunks.num_chunks else chunks.layer
