"""The prior: a GPT over weight chunks' codes, conditioned on a dataset and an architecture embedding.

One position per chunk. A window holds two conditioning positions (the projected dataset and architecture
embeddings) followed by up to ``block_size`` chunk positions. Each position's input is the sum of the previous
chunk's code embeddings (its ``input_levels`` coarsest residual levels) plus the coordinates of the chunk it
predicts (its slot: absolute layer index, or in ``coords="descriptor"`` mode the slot's descriptor features
of :mod:`igpg.structure`; and its position in that tensor), which the architecture's layout fixes in
advance; so a window that starts in the middle of a network knows where it is, and networks longer than a
window are generated window by window, each seeded with the tail of the previous one. A small depth head then
predicts the chunk's residual levels one after another (as in the RQ-Transformer): level ``l`` sees the
trunk's output plus the codes already chosen at levels ``< l``. Sampling uses a KV cache, temperature, top-k,
nucleus (top-p) and optional classifier-free guidance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from igpg.structure import ChunkCoords, SlotEncoder
from igpg.tokenizer import COORDS, position_features


@dataclass
class PriorConfig:
    vocab_size: int = 512  # codes per quantizer level
    levels: int = 6  # residual levels per chunk (predicted by the depth head)
    block_size: int = 256  # chunk positions per window
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 192  # model width
    dropout: float = 0.0  # dropout in attention and MLP
    ds_dim: int = 64  # dataset embedding size (input)
    arch_dim: int = 384  # architecture embedding size (input)
    max_layers: int = 1024  # layer-index embedding size (networks with more generated tensors are refused)
    coords: str = "layer"  # "layer": absolute layer index; "descriptor": slot descriptors (training sets it
    # from TrainConfig.coords; a stored config without this key is a layer-index one)
    num_roles: int = 0  # rows of the role embedding, descriptor mode (vocabulary size + the unknown row)
    num_kinds: int = 0  # rows of the kind embedding, descriptor mode (vocabulary size + the unknown row)
    role_dropout: float = 0.05  # share of training positions whose role is replaced by the unknown row
    pos_features: int = 16  # sinusoidal features of a chunk's position within its layer
    cond_dropout: float = 0.1  # probability of replacing a condition by its null embedding (for guidance)
    input_levels: int = 3  # residual levels of the previous chunk fed to the trunk (coarse codes carry the
    # network's identity; fine codes are near-noise, and a stray one must not derail what follows)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, c: PriorConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = c.n_head, c.dropout
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd)
        self.proj = nn.Linear(c.n_embd, c.n_embd)

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None) -> torch.Tensor:
        b, t, e = x.shape
        q, k, v = self.qkv(x).split(e, dim=2)
        shape = (b, t, self.n_head, e // self.n_head)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        past = 0
        if cache is not None:
            if cache:
                past = cache[0].shape[2]
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
                cache[0], cache[1] = k, v
            else:
                cache.extend([k, v])
        if past == 0:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        else:  # new queries attend to all cached keys and causally among themselves
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(b, t, e))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, c: PriorConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.attn = CausalSelfAttention(c)
        self.mlp = nn.Sequential(
            nn.Linear(c.n_embd, 4 * c.n_embd),
            nn.GELU(),
            nn.Linear(4 * c.n_embd, c.n_embd),
            nn.Dropout(c.dropout),
        )

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class DepthHead(nn.Module):
    """Predicts a chunk's residual levels in order from the trunk state and the codes chosen so far."""

    def __init__(self, c: PriorConfig) -> None:
        super().__init__()
        self.code_emb = nn.ModuleList([nn.Embedding(c.vocab_size, c.n_embd) for _ in range(c.levels - 1)])
        self.level_emb = nn.Embedding(c.levels, c.n_embd)
        self.mlp = nn.Sequential(
            nn.LayerNorm(c.n_embd),
            nn.Linear(c.n_embd, 2 * c.n_embd),
            nn.GELU(),
            nn.Linear(2 * c.n_embd, c.n_embd),
            nn.LayerNorm(c.n_embd),
        )
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)

    def level_logits(self, h: torch.Tensor, level: int, acc: torch.Tensor) -> torch.Tensor:
        """Logits of ``level`` from trunk state ``h`` (..., C) and the sum ``acc`` of earlier levels'
        embeddings."""
        return self.head(self.mlp(h + acc + self.level_emb.weight[level]))  # (..., V)

    def forward(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of every level: h (B, T, C), codes (B, T, L) -> (B, T, L, V)."""
        acc = torch.zeros_like(h)
        out = []
        for level in range(codes.shape[-1]):
            out.append(self.level_logits(h, level, acc))
            if level < len(self.code_emb):
                acc = acc + self.code_emb[level](codes[..., level])
        return torch.stack(out, -2)


class WeightPrior(nn.Module):
    """GPT over chunk codes with dataset/architecture conditioning prefixes and a residual depth head."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        c = self.config = config
        self.code_emb = nn.ModuleList(
            [
                nn.Embedding(c.vocab_size + 1, c.n_embd)  # +BOS
                for _ in range(max(1, min(c.input_levels, c.levels)))
            ]
        )
        if c.coords not in COORDS:
            raise ValueError(f"coords must be one of {COORDS}, got {c.coords!r}")
        if c.coords == "layer":
            self.layer_emb = nn.Embedding(c.max_layers, c.n_embd)
        else:
            self.slot_enc = SlotEncoder(c.num_roles, c.num_kinds, c.n_embd, c.role_dropout)
        self.pos_proj = nn.Linear(c.pos_features, c.n_embd)
        self.win_emb = nn.Embedding(c.block_size + 2, c.n_embd)
        self.ds_proj = nn.Linear(c.ds_dim, c.n_embd)
        self.arch_proj = nn.Linear(c.arch_dim, c.n_embd)
        self.null_ds = nn.Parameter(torch.zeros(c.n_embd))
        self.null_arch = nn.Parameter(torch.zeros(c.n_embd))
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.depth = DepthHead(c)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") and "blocks" in name:
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    @property
    def bos(self) -> int:
        return self.config.vocab_size

    def _cond(
        self,
        ds: torch.Tensor,
        arch: torch.Tensor,
        drop_ds: torch.Tensor | None = None,
        drop_arch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        d = self.ds_proj(ds)  # (B, C)
        a = self.arch_proj(arch)  # (B, C)
        if drop_ds is not None:
            d = torch.where(drop_ds[:, None], self.null_ds.expand_as(d), d)
        if drop_arch is not None:
            a = torch.where(drop_arch[:, None], self.null_arch.expand_as(a), a)
        return torch.stack([d, a], 1) + self.win_emb.weight[:2]  # (B, 2, C)

    def _where(self, coords: ChunkCoords) -> torch.Tensor:
        """Embeddings of the chunks' coordinates: (T, C), or (B, T, C) for batched coordinates."""
        c = self.config
        if c.coords == "layer":
            slot = self.layer_emb(coords.layer % c.max_layers)
        else:
            if coords.slots is None:
                raise ValueError("this prior locates chunks by slot descriptors; the coordinates carry none")
            slot = self.slot_enc(coords.slots)
        pos = position_features(coords.position.reshape(-1), coords.count.reshape(-1), c.pos_features)
        return slot + self.pos_proj(pos).reshape(*coords.position.shape, -1)

    def _inputs(self, prev: torch.Tensor, coords: ChunkCoords, offset: int) -> torch.Tensor:
        """Embeddings of positions whose previous chunk has codes ``prev`` (B, T, L) and targets at
        ``coords`` ((T,) for every row alike, or (B, T) per row)."""
        c = self.config
        t = prev.shape[1]
        used = self.code_emb[: max(1, min(c.input_levels, c.levels))]
        codes = sum(emb(prev[..., level]) for level, emb in enumerate(used))  # (B, T, C)
        where = self._where(coords)  # (T, C) or (B, T, C)
        win = self.win_emb(torch.arange(2 + offset, 2 + offset + t, device=prev.device))  # (T, C)
        return codes + where + win  # (B, T, C)

    def _begin(self, b: int, device: torch.device) -> torch.Tensor:
        return torch.full((b, 1, self.config.levels), self.bos, dtype=torch.long, device=device)

    def forward(
        self,
        prev: torch.Tensor,
        coords: ChunkCoords,
        ds: torch.Tensor,
        arch: torch.Tensor,
        targets: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and loss for one window.

        prev, targets: (B, T, L) codes with T <= block_size (``prev[:, j]`` is the chunk before target j:
        the begin codes at the start of a network); coords: the targets' coordinates, (T,) shared or (B, T)
        per window; ds: (B, ds_dim); arch: (B, arch_dim). In training each
        condition is dropped with probability ``cond_dropout`` (classifier-free guidance).
        """
        b = prev.shape[0]
        drop_ds = drop_arch = None
        if self.training and self.config.cond_dropout > 0:
            drop_ds = torch.rand(b, device=prev.device) < self.config.cond_dropout
            drop_arch = torch.rand(b, device=prev.device) < self.config.cond_dropout
        x = torch.cat(
            [self._cond(ds, arch, drop_ds, drop_arch), self._inputs(prev, coords, 0)], 1
        )  # (B, 2+T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.depth(self.ln_f(x[:, 2:]), targets)  # (B, T, L, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    # -- sampling ---------------------------------------------------------------------------------------
    def _trunk(self, caches: list[list[torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        for block, cache in zip(self.blocks, caches):
            x = block(x, cache)
        return self.ln_f(x[:, -1])  # (B, C)

    def _window_start(
        self, cond: torch.Tensor, prev: torch.Tensor, coords: ChunkCoords
    ) -> tuple[list[list[torch.Tensor]], torch.Tensor]:
        caches: list[list[torch.Tensor]] = [[] for _ in self.blocks]
        return caches, self._trunk(caches, torch.cat([cond, self._inputs(prev, coords, 0)], 1))

    def _pick_chunk(
        self,
        h: torch.Tensor,
        b: int,
        guided: bool,
        guidance: float,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator | None,
        top_p: float | None = None,
    ) -> torch.Tensor:
        """Codes of one chunk, level by level: h (B or 2B, C) -> (B, L)."""
        acc = torch.zeros_like(h)
        codes = []
        for level in range(self.config.levels):
            logits = self.depth.level_logits(h, level, acc).float()  # (B or 2B, V)
            if guided:
                cond, uncond = logits[:b], logits[b:]
                logits = uncond + guidance * (cond - uncond)
            tok = _sample(logits, temperature, top_k, generator, top_p)  # (B,)
            codes.append(tok)
            if level < len(self.depth.code_emb):
                emb = self.depth.code_emb[level](tok)
                acc = acc + (torch.cat([emb, emb], 0) if guided else emb)
        return torch.stack(codes, -1)

    @torch.no_grad()
    def generate(
        self,
        coords: ChunkCoords,
        ds: torch.Tensor,
        arch: torch.Tensor,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance: float = 1.0,
        overlap: int | None = None,
        generator: torch.Generator | None = None,
        progress: object | None = None,
    ) -> torch.Tensor:
        """Sample a whole network's codes, window by window. Returns (B, N, L) long for B conditions.

        ``temperature`` 0 is greedy decoding; ``top_k`` keeps the k likeliest codes and ``top_p`` the smallest
        set whose probability reaches p (nucleus sampling: confident steps become greedy, so a sample does
        not drift off the training manifold through many unlikely picks). ``guidance`` > 1 applies
        classifier-free guidance against the unconditional prediction. When the network has more chunks than
        ``block_size``, generation proceeds in windows: each new window starts from the last ``overlap``
        chunks of the previous one (default: half a window), so memory stays bounded by the window, not the
        network.
        """
        was_training = self.training
        self.eval()
        c = self.config
        total, b, dev = len(coords), ds.shape[0], ds.device
        overlap = c.block_size // 2 if overlap is None else max(0, min(overlap, c.block_size - 1))
        guided = guidance != 1.0
        cond = self._cond(ds, arch)
        if guided:
            nul = torch.ones(b, dtype=torch.bool, device=dev)
            cond = torch.cat([cond, self._cond(ds, arch, nul, nul)], 0)
        dup = (lambda t: torch.cat([t, t], 0)) if guided else (lambda t: t)
        out = torch.empty(b, total, c.levels, dtype=torch.long, device=dev)
        begin = self._begin(b, dev)
        pos, win_start = 0, 0  # next chunk to produce; global index of the window's first target
        caches: list[list[torch.Tensor]] = []
        h = None
        while pos < total:
            if pos == win_start:  # (re)start a window after a slide with no overlap
                prev = begin if pos == 0 else out[:, pos - 1 : pos]
                caches, h = self._window_start(cond, dup(prev), coords.slice(pos, pos + 1))
            assert h is not None
            out[:, pos] = self._pick_chunk(h, b, guided, guidance, temperature, top_k, generator, top_p)
            pos += 1
            if progress is not None:
                progress.update(1)  # type: ignore[attr-defined]
            if pos >= total:
                break
            if pos - win_start >= c.block_size:  # window full: slide, keeping `overlap` chunks of context
                win_start = pos - overlap
                if overlap == 0:
                    continue
                prev = torch.cat([begin, out], 1)[
                    :, win_start : pos + 1
                ]  # chunks before targets win_start..pos
                caches, h = self._window_start(cond, dup(prev), coords.slice(win_start, pos + 1))
                continue
            x = self._inputs(dup(out[:, pos - 1 : pos]), coords.slice(pos, pos + 1), pos - win_start)
            h = self._trunk(caches, x)
        self.train(was_training)
        return out

    @torch.no_grad()
    def generate_reference(self, coords: ChunkCoords, ds: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        """Greedy decoding by full recomputation at every step, no cache, no windows (for tests)."""
        was_training = self.training
        self.eval()
        b, total, dev = ds.shape[0], len(coords), ds.device
        out = torch.empty(b, 0, self.config.levels, dtype=torch.long, device=dev)
        for pos in range(total):
            prev = torch.cat([self._begin(b, dev), out], 1)
            x = torch.cat([self._cond(ds, arch), self._inputs(prev, coords.slice(0, pos + 1), 0)], 1)
            for block in self.blocks:
                x = block(x)
            h = self.ln_f(x[:, -1])
            out = torch.cat([out, self._pick_chunk(h, b, False, 1.0, 0.0, None, None)[:, None]], 1)
        self.train(was_training)
        return out


def _sample(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None,
    top_p: float | None = None,
) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)  # mass of likelier codes
        drop = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, before >= top_p)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
