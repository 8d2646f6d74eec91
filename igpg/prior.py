"""The prior: a GPT over weight tokens, conditioned on a dataset and an architecture embedding.

A window holds two conditioning positions (the projected dataset and architecture embeddings) followed by
up to ``block_size`` weight tokens. Each token position also receives the coordinates of the token it
predicts (layer, position in layer, quantizer level), which the architecture's layout fixes in advance;
so a window that starts in the middle of a network knows where it is, and networks longer than a window
are generated window by window, each window seeded with the tail of the previous one. Sampling uses a
KV cache, temperature, top-k and optional classifier-free guidance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from igpg.tokenizer import position_features


@dataclass
class PriorConfig:
    vocab_size: int = 512  # codes per quantizer level
    levels: int = 2  # tokens per chunk
    block_size: int = 256  # weight tokens per window
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 192  # model width
    dropout: float = 0.0  # dropout in attention and MLP
    ds_dim: int = 64  # dataset embedding size (input)
    arch_dim: int = 384  # architecture embedding size (input)
    max_layers: int = 512  # layer-index embedding size (wraps beyond)
    pos_features: int = 16  # sinusoidal features of a chunk's position within its layer
    cond_dropout: float = 0.1  # probability of replacing a condition by its null embedding (for guidance)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class TokenCoords:
    """Where each token of a network sits: layer, position in layer, chunks in layer, level. All (T,) long."""

    def __init__(self, layer: torch.Tensor, position: torch.Tensor, count: torch.Tensor, level: torch.Tensor):
        self.layer, self.position, self.count, self.level = layer, position, count, level

    @classmethod
    def from_chunks(cls, layer: torch.Tensor, position: torch.Tensor, count: torch.Tensor, levels: int
                    ) -> "TokenCoords":
        rep = lambda t: t.repeat_interleave(levels)  # noqa: E731  (N,) -> (N*levels,)
        level = torch.arange(levels).repeat(layer.shape[0])
        return cls(rep(layer), rep(position), rep(count), level)

    def __len__(self) -> int:
        return int(self.layer.shape[0])

    def to(self, device: torch.device | str) -> "TokenCoords":
        return TokenCoords(self.layer.to(device), self.position.to(device), self.count.to(device),
                           self.level.to(device))

    def slice(self, start: int, end: int) -> "TokenCoords":
        return TokenCoords(self.layer[start:end], self.position[start:end], self.count[start:end],
                           self.level[start:end])


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
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:  # new queries attend to all cached keys and causally among themselves
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(b, t, e))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, c: PriorConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.attn = CausalSelfAttention(c)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU(), nn.Linear(4 * c.n_embd, c.n_embd),
                                 nn.Dropout(c.dropout))

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class WeightPrior(nn.Module):
    """GPT over weight tokens with dataset/architecture conditioning prefixes."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        c = self.config = config
        self.tok_emb = nn.Embedding(c.vocab_size + 1, c.n_embd)  # last index: begin-of-network
        self.level_emb = nn.Embedding(c.levels, c.n_embd)
        self.layer_emb = nn.Embedding(c.max_layers, c.n_embd)
        self.pos_proj = nn.Linear(c.pos_features, c.n_embd)
        self.win_emb = nn.Embedding(c.block_size + 2, c.n_embd)
        self.ds_proj = nn.Linear(c.ds_dim, c.n_embd)
        self.arch_proj = nn.Linear(c.arch_dim, c.n_embd)
        self.null_ds = nn.Parameter(torch.zeros(c.n_embd))
        self.null_arch = nn.Parameter(torch.zeros(c.n_embd))
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
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

    def _cond(self, ds: torch.Tensor, arch: torch.Tensor, drop_ds: torch.Tensor | None = None,
              drop_arch: torch.Tensor | None = None) -> torch.Tensor:
        d = self.ds_proj(ds)  # (B, C)
        a = self.arch_proj(arch)  # (B, C)
        if drop_ds is not None:
            d = torch.where(drop_ds[:, None], self.null_ds.expand_as(d), d)
        if drop_arch is not None:
            a = torch.where(drop_arch[:, None], self.null_arch.expand_as(a), a)
        return torch.stack([d, a], 1) + self.win_emb.weight[:2]  # (B, 2, C)

    def _tokens(self, prev: torch.Tensor, coords: TokenCoords, offset: int) -> torch.Tensor:
        """Embeddings of positions whose previous token is ``prev`` (B, T) and target coordinates ``coords``."""
        c = self.config
        t = prev.shape[1]
        where = (self.level_emb(coords.level) + self.layer_emb(coords.layer % c.max_layers)
                 + self.pos_proj(position_features(coords.position, coords.count, c.pos_features)))  # (T, C)
        win = self.win_emb(torch.arange(2 + offset, 2 + offset + t, device=prev.device))  # (T, C)
        return self.tok_emb(prev) + (where + win)[None]  # (B, T, C)

    def forward(self, prev: torch.Tensor, coords: TokenCoords, ds: torch.Tensor, arch: torch.Tensor,
                targets: torch.Tensor | None = None, target_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for one window. prev, targets: (B, T) with T <= block_size; ds: (B, ds_dim); arch: (B, arch_dim).

        ``prev[:, j]`` is the token before target j (the begin token at the start of a network). In training
        each condition is dropped with probability ``cond_dropout`` (classifier-free guidance).
        """
        b = prev.shape[0]
        drop_ds = drop_arch = None
        if self.training and self.config.cond_dropout > 0:
            drop_ds = torch.rand(b, device=prev.device) < self.config.cond_dropout
            drop_arch = torch.rand(b, device=prev.device) < self.config.cond_dropout
        x = torch.cat([self._cond(ds, arch, drop_ds, drop_arch), self._tokens(prev, coords, 0)], 1)  # (B, 2+T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x[:, 2:]))  # (B, T, V)
        loss = None
        if targets is not None:
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
            if target_mask is not None:
                w = target_mask.reshape(-1).float()
                loss = (ce * w).sum() / w.sum().clamp_min(1)
            else:
                loss = ce.mean()
        return logits, loss

    # -- sampling ---------------------------------------------------------------------------------------
    def _step_logits(self, caches: list[list[torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        for block, cache in zip(self.blocks, caches):
            x = block(x, cache)
        return self.head(self.ln_f(x[:, -1]))  # (B, V)

    def _window_start(self, cond: torch.Tensor, prev: torch.Tensor, coords: TokenCoords
                      ) -> tuple[list[list[torch.Tensor]], torch.Tensor]:
        caches: list[list[torch.Tensor]] = [[] for _ in self.blocks]
        x = torch.cat([cond, self._tokens(prev, coords, 0)], 1)
        return caches, self._step_logits(caches, x)

    @torch.no_grad()
    def generate(self, coords: TokenCoords, ds: torch.Tensor, arch: torch.Tensor, *, temperature: float = 1.0,
                 top_k: int | None = None, guidance: float = 1.0, overlap: int | None = None,
                 generator: torch.Generator | None = None, progress: object | None = None) -> torch.Tensor:
        """Sample a whole network's tokens, window by window. Returns (B, T) long for B conditions.

        ``temperature`` 0 is greedy decoding. ``guidance`` > 1 applies classifier-free guidance against the
        unconditional prediction. When the network has more tokens than ``block_size``, generation
        proceeds in windows: each new window starts from the last ``overlap`` tokens of the previous one
        (default: half a window), so memory stays bounded by the window, not the network.
        """
        was_training = self.training
        self.eval()
        c = self.config
        total = len(coords)
        b = ds.shape[0]
        dev = ds.device
        overlap = c.block_size // 2 if overlap is None else max(0, min(overlap, c.block_size - 1))
        guided = guidance != 1.0
        cond = self._cond(ds, arch)
        if guided:
            nul = torch.ones(b, dtype=torch.bool, device=dev)
            cond = torch.cat([cond, self._cond(ds, arch, nul, nul)], 0)
        out = torch.empty(b, total, dtype=torch.long, device=dev)
        pos = 0  # next token to produce
        win_start = 0  # global index of the window's first target
        caches: list[list[torch.Tensor]] = []
        logits = None
        while pos < total:
            if pos == win_start:  # (re)start a window: feed its known prefix (the tail of the last one)
                prev = torch.full((b, 1), self.bos, dtype=torch.long, device=dev) if win_start == 0 else \
                    out[:, win_start - 1:win_start]
                prefix = torch.cat([prev, out[:, win_start:pos]], 1)  # (B, 1) at a window start
                rep = torch.cat([prefix, prefix], 0) if guided else prefix
                caches, logits = self._window_start(cond, rep, coords.slice(win_start, win_start + 1))
            assert logits is not None
            tok = self._pick(logits, b, guided, guidance, temperature, top_k, generator)
            out[:, pos] = tok
            pos += 1
            if progress is not None:
                progress.update(1)  # type: ignore[attr-defined]
            if pos >= total:
                break
            if pos - win_start >= c.block_size:  # window full: slide, keeping `overlap` tokens of context
                win_start = pos - overlap
                if overlap == 0:
                    win_start = pos
                    continue
                prev = out[:, win_start - 1:pos - 1 + 1]  # tokens before each target in [win_start, pos]
                rep = torch.cat([prev, prev], 0) if guided else prev
                caches, logits = self._window_start(cond, rep[:, :pos - win_start + 1],
                                                    coords.slice(win_start, pos + 1))
                continue
            x = self._tokens(torch.cat([tok, tok], 0)[:, None] if guided else tok[:, None],
                             coords.slice(pos, pos + 1), pos - win_start)
            logits = self._step_logits(caches, x)
        self.train(was_training)
        return out

    @staticmethod
    def _pick(logits: torch.Tensor, b: int, guided: bool, guidance: float, temperature: float,
              top_k: int | None, generator: torch.Generator | None) -> torch.Tensor:
        logits = logits.float()
        if guided:
            cond, uncond = logits[:b], logits[b:]
            logits = uncond + guidance * (cond - uncond)
        if temperature <= 0:
            return logits.argmax(-1)
        logits = logits / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    @torch.no_grad()
    def generate_reference(self, coords: TokenCoords, ds: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        """Greedy decoding by full recomputation at every step, no cache, no windows (for tests)."""
        was_training = self.training
        self.eval()
        b, total = ds.shape[0], len(coords)
        out = torch.empty(b, 0, dtype=torch.long, device=ds.device)
        for pos in range(total):
            prev = torch.cat([torch.full((b, 1), self.bos, dtype=torch.long, device=ds.device), out], 1)
            logits, _ = self.forward(prev, coords.slice(0, pos + 1), ds, arch)
            out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], 1)
        self.train(was_training)
        return out
