"""Vector quantizers for the weight tokenizer: EMA k-means, Gumbel-softmax, and residual stacks of either.

Every quantizer maps vectors ``z`` of shape (..., D) to codes (...,) and back: ``forward`` returns the
straight-through quantized vectors, the indices and an auxiliary loss; ``lookup`` maps indices to vectors.
Codebook state lives in buffers (EMA) or parameters (Gumbel); dead codes are replaced only in training.

Under a ``torch.distributed`` process group (see :mod:`igpg.distributed`) the EMA quantizer keeps every
rank's codebook identical itself: its batch statistics are summed over ranks, and the initial codebook and
dead-code replacements are rank 0's, broadcast. Train it in DDP with ``broadcast_buffers=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from igpg import distributed


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (..., D) straight-through quantized vectors
    indices: torch.Tensor  # (...,) or (..., levels) long
    loss: torch.Tensor  # scalar auxiliary loss (commitment / codebook / KL)
    perplexity: torch.Tensor  # scalar: exp(entropy of code usage in this batch)


def _perplexity(indices: torch.Tensor, size: int) -> torch.Tensor:
    counts = torch.bincount(indices.reshape(-1), minlength=size).float()
    p = counts / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())


class EMAQuantizer(nn.Module):
    """k-means codebook updated by exponential moving averages (VQ-VAE-2), with dead-code replacement.

    A code whose EMA usage falls below ``dead_threshold`` is re-seeded from a random vector of the current
    batch. The codebook is initialised from the first training batch.

    Distributed (a process group of several ranks): the assignment counts and sums of each batch are summed
    over ranks before the EMA update, so the statistics are those of the global batch and every rank holds
    the same codebook; the initial codebook and dead-code replacements are drawn on rank 0 and broadcast.
    """

    straight_through = True  # the codebook learns by EMA; gradients pass straight through to the encoder

    def __init__(
        self,
        size: int,
        dim: int,
        decay: float = 0.99,
        commitment: float = 0.25,
        dead_threshold: float = 0.5,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.size, self.dim, self.decay, self.commitment = size, dim, decay, commitment
        self.dead_threshold, self.eps = dead_threshold, eps
        self.register_buffer("codebook", torch.randn(size, dim) * 0.1)  # (V, D)
        self.register_buffer("cluster_size", torch.ones(size))  # (V,) EMA of assignments
        self.register_buffer("embed_sum", self.codebook.clone())  # (V, D) EMA of assigned vectors
        self.register_buffer("initted", torch.tensor(False))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.codebook)  # (..., D)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        d = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.codebook.t()
            + self.codebook.pow(2).sum(1)[None]
        )  # (M, V)
        return d.argmin(1)  # (M,)

    @torch.no_grad()
    def _init(self, flat: torch.Tensor) -> None:
        idx = torch.randint(0, flat.shape[0], (self.size,), device=flat.device)
        self.codebook.copy_(flat[idx] + 1e-3 * torch.randn_like(flat[idx]))
        distributed.broadcast_(self.codebook)  # every rank starts from rank 0's draw
        self.embed_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.size).type(flat.dtype)  # (M, V)
        counts, sums = onehot.sum(0), onehot.t() @ flat  # (V,), (V, D): this batch's statistics
        if distributed.is_distributed():  # the global batch's statistics, identical on every rank
            both = distributed.all_reduce_sum_(torch.cat([counts[:, None], sums.to(counts.dtype)], 1))
            counts, sums = both[:, 0], both[:, 1:]
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.size * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        dead = self.cluster_size < self.dead_threshold  # the same codes on every rank
        if dead.any():
            pick = torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)
            fresh = distributed.broadcast_(flat[pick].contiguous())  # rank 0's vectors, on every rank
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        flat = z.reshape(-1, self.dim).float()  # (M, D)
        if self.training and not bool(self.initted):
            self._init(flat.detach())
        idx = self.nearest(flat.detach())  # (M,)
        if self.training:
            self._update(flat.detach(), idx)
        q = self.lookup(idx).view_as(z)  # (..., D)
        loss = self.commitment * F.mse_loss(z, q.detach())
        return QuantizerOutput(
            z + (q - z).detach(), idx.view(z.shape[:-1]), loss, _perplexity(idx, self.size)
        )


class GumbelQuantizer(nn.Module):
    """The Gumbel-softmax quantizer (as in the IGPG paper): soft relaxed codes in training, argmax in eval.

    ``kl_weight`` pulls the average code distribution towards uniform, keeping the codebook in use.
    """

    def __init__(self, size: int, dim: int, tau: float = 1.0, kl_weight: float = 5e-4) -> None:
        super().__init__()
        self.size, self.dim, self.tau, self.kl_weight = size, dim, tau, kl_weight
        self.proj = nn.Linear(dim, size)
        self.codebook = nn.Parameter(torch.randn(size, dim) * 0.1)  # (V, D)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.codebook)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        logits = self.proj(z)  # (..., V)
        if self.training:
            soft = F.gumbel_softmax(logits, tau=self.tau, hard=False, dim=-1)
            q = soft @ self.codebook  # (..., D)
        else:
            q = self.lookup(logits.argmax(-1))
        idx = logits.argmax(-1)
        probs = logits.softmax(-1).reshape(-1, self.size).mean(0)
        kl = (probs * torch.log(probs * self.size + 1e-10)).sum()
        return QuantizerOutput(q, idx, self.kl_weight * kl, _perplexity(idx, self.size))


class ResidualQuantizer(nn.Module):
    """``levels`` quantizers in sequence, each coding what the previous ones left (residual VQ).

    Indices have a trailing ``levels`` axis; the quantized vector is the sum of the levels' vectors.
    """

    def __init__(self, levels: int, make: type[nn.Module] | None = None, **kwargs: object) -> None:
        super().__init__()
        make = make or EMAQuantizer
        self.levels = levels
        self.stages = nn.ModuleList([make(**kwargs) for _ in range(levels)])  # type: ignore[arg-type]
        self.size = self.stages[0].size  # type: ignore[assignment]

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return sum(stage.lookup(indices[..., i]) for i, stage in enumerate(self.stages))  # type: ignore[return-value]

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        residual = z
        total = torch.zeros_like(z)
        idxs, loss, perp = [], z.new_zeros(()), z.new_zeros(())
        for stage in self.stages:
            out = stage(residual)
            total = total + out.quantized
            residual = residual - out.quantized.detach()
            idxs.append(out.indices)
            loss = loss + out.loss
            perp = perp + out.perplexity / self.levels
        if all(getattr(st, "straight_through", False) for st in self.stages):
            # EMA codebooks learn without gradients: pass them to z as if quantization were identity
            total = z + (total - z).detach()
        return QuantizerOutput(total, torch.stack(idxs, -1), loss, perp)


def make_quantizer(kind: str, levels: int, size: int, dim: int, **kwargs: float) -> nn.Module:
    """A quantizer by name: ``"ema"`` or ``"gumbel"``, residual over ``levels`` (1 = plain)."""
    cls = {"ema": EMAQuantizer, "gumbel": GumbelQuantizer}.get(kind)
    if cls is None:
        raise ValueError(f"unknown quantizer {kind!r}; choose 'ema' or 'gumbel'")
    return ResidualQuantizer(levels, cls, size=size, dim=dim, **kwargs)
