"""Training the generator: stage 1 the tokenizer on chunks, stage 2 the prior on frozen token sequences.

Device-agnostic: CUDA with bf16 autocast when present, CPU otherwise. Progress bars for both stages.

Multi-process (DDP): launched by ``torchrun`` (see :mod:`igpg.distributed`), each rank holds the whole zoo
and draws its own share of every global batch (``tokenizer_batch`` and ``prior_batch`` are global: split
over ranks, so the optimisation sees the same batch size as one process), from a data seed of its own
(``cfg.seed`` on rank 0). Models start identical on every rank (same seed, and DDP broadcasts rank 0's
parameters and buffers); DDP averages gradients, the EMA quantizer sums its codebook statistics over ranks.
Rank 0 alone shows progress, logs and saves the training state; every rank resumes from the same file
(``checkpoint_dir`` must be visible to all of them). Reported losses are means over ranks. Single-process
training does none of this.

Across architectures (mixed depths, widths and families), the tokenizer draws chunks uniformly from all
networks, and the prior's batches are length-bucketed windows: each step draws one network with probability
proportional to its length (so every chunk of the zoo is equally likely to be a target), fills the batch
from networks of the same length bucket (the bit length of ``min(length, block_size)``), and crops every
member's own random window to the shortest member's ``min(length, block_size)``: nothing is padded, and
networks longer than a window (all but the smallest) always give full windows. Windows are placed so that
every chunk is equally often a target, the first chunks of a network (where sampling begins) included.
Each window keeps its network's own dataset and architecture embeddings as conditions.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from igpg import distributed
from igpg.data import ZooData
from igpg.generator import Generator
from igpg.presets import PRESETS
from igpg.prior import PriorConfig, WeightPrior
from igpg.structure import ChunkCoords, chunk_slots
from igpg.tokenizer import COORDS, TokenizerConfig, WeightTokenizer, chunk_coords
from zoo import GeneratorRecord, atomic_write, current_run
from zoo.errors import GeneratorError

log = logging.getLogger(__name__)
expected = logging.getLogger(f"{__name__}.expected")  # how long each stage expects (`zoo train` shows it)

JOB = "train"  # generator training's runs in `zoo jobs` (igpg.train_on_registry records them)


@dataclass
class TrainConfig:
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # stage-1 model
    prior: PriorConfig = field(default_factory=PriorConfig)  # stage-2 model (sizes of inputs are filled in)
    tokenizer_steps: int = 3000  # optimizer steps of stage 1
    tokenizer_batch: int = 512  # chunks per step
    tokenizer_lr: float = 2e-3  # Adam learning rate of stage 1
    prior_steps: int = 1500  # optimizer steps of stage 2
    prior_batch: int = 16  # token windows per step
    prior_lr: float = 1e-3  # AdamW learning rate of stage 2
    prior_input_noise: float = (
        0.0  # share of input codes replaced by random ones in training (robust sampling)
    )
    seed: int = 0  # all randomness of training
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    checkpoint_dir: str | None = None  # where training state is saved; a rerun resumes from it
    checkpoint_every: int = 200  # steps between saves of the training state
    align: bool = False  # weight-match every checkpoint to its architecture's first before tokenizing
    class_head: bool = True  # fit a class head (igpg.heads) on the training zoo's data when it is readable
    coords: str = "descriptor"  # how tokenizer and prior locate a chunk: "descriptor" (slot descriptors:
    # serves unseen architectures of trained families) or "layer" (absolute layer index, the old mode)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def preset(cls, name: str) -> TrainConfig:
        """A named training budget (:data:`igpg.presets.PRESETS`, with expected times): ``"quick"`` (a smoke
        run; its decoded networks are at chance level), ``"small"`` (the ``zoo demo`` generator) or
        ``"default"`` (``zoo train``'s default: 2,000 + 1,500 steps and 6 quantization levels). Every field
        can still be changed on the returned config.

        Raises:
            zoo.errors.GeneratorError: for an unknown name (the message lists the known ones).
        """
        if name not in PRESETS:
            raise GeneratorError(f"unknown training preset {name!r}; choose one of {', '.join(PRESETS)}")
        cfg = cls()
        cfg.tokenizer_steps = 2000
        if name != "small":  # the zoo demo generator keeps 10 levels
            cfg.tokenizer.levels = 6
        if name == "quick":
            cfg.tokenizer_steps, cfg.prior_steps = 200, 200
            cfg.prior.n_embd, cfg.prior.n_layer = 64, 2
            cfg.prior_batch, cfg.prior_lr = 8, 4e-3
        elif name == "small":
            cfg.prior.n_embd, cfg.prior.n_layer = 128, 3
            cfg.prior_steps, cfg.prior_batch = 1500, 8
            cfg.prior_lr = 4e-3  # 1.5e-3: loss 0.11, nothing works
        return cfg


def duration(seconds: float) -> str:
    """``seconds`` for a person: ``45 s``, ``12 min``, ``1 h 20 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


class _Expect:
    """Says how long a training stage expects to take, once its first steps are timed (from the second on:
    the first pays for warm-up): in the log (``igpg.train.expected``, which ``zoo train`` prints) and in the
    message of the recorded job (``zoo jobs``), which it keeps current about once a minute."""

    def __init__(self, stage: str, start: int, total: int, device: torch.device, show: bool) -> None:
        self.stage, self.start, self.total, self.device, self.show = stage, start, total, device, show
        self.t0: float | None = None  # when the first timed step began
        self.said = False
        self.last_update = 0.0

    def step(self, step: int) -> None:
        """Call after step ``step`` (0-based) is done."""
        if not self.show:
            return
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
            return
        timed = step - self.start  # steps done since the first one
        elapsed = now - self.t0
        if not self.said and (timed >= 20 or elapsed >= 10):
            self.said = True
            per_step = elapsed / timed
            expected.info(
                "%s: %d steps, expected about %s (%.3f s/step on %s, %d thread(s))",
                self.stage,
                self.total - self.start,
                duration(per_step * (self.total - self.start)),
                per_step,
                self.device,
                torch.get_num_threads(),
            )
        if self.said and (now - self.last_update >= 60 or step + 1 == self.total):
            self.last_update = now
            run = current_run()
            if run is not None:
                left = (self.total - step - 1) * elapsed / max(1, timed)
                run.update(message=f"{self.stage}: step {step + 1}/{self.total}, about {duration(left)} left")


def job_summary(result: tuple[Generator, GeneratorRecord]) -> tuple[dict[str, int], str]:
    """A training run's summary for ``zoo jobs``: what it trained on and stored, its time and losses."""
    gen, rec = result
    info = gen.info
    cfg = info.get("train_config", {})
    counts = {
        "checkpoints": len(rec.trained_on),
        "tokenizer_steps": int(cfg.get("tokenizer_steps", 0)),
        "prior_steps": int(cfg.get("prior_steps", 0)),
    }
    message = (
        f"stored {rec.ref} ({rec.status}): tokenizer {duration(info.get('tokenizer_seconds', 0))} "
        f"(recon mse {info.get('tokenizer_recon_mse', float('nan')):.3g}), prior "
        f"{duration(info.get('prior_seconds', 0))} (loss {info.get('prior_final_loss', float('nan')):.3g})"
    )
    return counts, message


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """The training device: ``"auto"`` is CUDA when present; distributed, each rank's own GPU (its local
    rank).

    Raises:
        GeneratorError: ``name`` is not ``auto``, ``cpu`` or ``cuda[:N]``, or names a CUDA device this machine
            does not have.
    """
    text = str(name)
    if text == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(text)
        except RuntimeError:
            dev = None
        if dev is None or dev.type not in ("cpu", "cuda"):
            raise GeneratorError(
                f"device {text!r}: zoo trains on 'auto' (CUDA when present), 'cpu' or 'cuda'; pass one of "
                "those"
            )
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                exc = GeneratorError(
                    f"device {text!r}: no CUDA device is available here; use device='cpu' (or 'auto')"
                )
                exc.keywords = ("device",)  # the command line says --device cpu
                raise exc
            if dev.index is not None and dev.index >= count:
                raise GeneratorError(
                    f"device {text!r}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})"
                )
    if dev.type == "cuda" and dev.index is None and distributed.is_distributed():
        dev = torch.device("cuda", distributed.local_rank())
    return dev


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Resume:
    """Training state of one stage in ``checkpoint_dir/<stage>.pt``: saved atomically, restored on start.

    The file holds only tensors and plain containers, so it is read back with ``weights_only=True``.
    Distributed, rank 0 writes it (model, optimizer and schedule are the same on every rank) with every
    rank's random states beside its own, and every rank restores from it, each taking its own states; a
    run resumed with a different number of ranks gives ranks other than 0 fresh streams (``seed``-derived).
    ``module`` is always the bare model, never its DDP wrapper.
    """

    def __init__(self, cfg: TrainConfig, stage: str, seed: int = 0) -> None:
        self.path = Path(cfg.checkpoint_dir) / f"{stage}.pt" if cfg.checkpoint_dir else None
        self.every = max(1, cfg.checkpoint_every)
        self.seed = seed

    def restore(
        self, module: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, g: torch.Generator
    ) -> int:
        if self.path is None:
            return 0
        found = self.path.is_file()
        if distributed.is_distributed() and len(set(distributed.gather_objects(found))) > 1:
            raise RuntimeError(
                f"{self.path} is visible to some ranks only: put checkpoint_dir on storage that "
                "every rank shares"
            )
        if not found:
            return 0
        state = torch.load(self.path, weights_only=True, map_location="cpu")
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        rank, world = distributed.rank(), distributed.world_size()
        per_rank = state.get("rank_states")
        if per_rank is not None and len(per_rank) == world:
            g.set_state(per_rank[rank][0])
            torch.set_rng_state(per_rank[rank][1])
        elif rank == 0:
            g.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
        else:  # saved by a run with another number of ranks: a new stream of this rank's own
            log.warning(
                "%s was saved by %d rank(s), resuming with %d: rank %d draws fresh data",
                self.path.name,
                len(per_rank or [0]),
                world,
                rank,
            )
            g.manual_seed(distributed.rank_seed(self.seed + step))
            torch.manual_seed(distributed.rank_seed(self.seed + step) + 1)
        if distributed.is_main():
            log.info("resumed %s at step %d", self.path.name, step)
        return step

    def save(
        self,
        step: int,
        module: torch.nn.Module,
        opt: torch.optim.Optimizer,
        sched: Any,
        g: torch.Generator,
        force: bool = False,
    ) -> None:
        if self.path is None or (step % self.every and not force):
            return
        path = self.path
        extra: dict[str, Any] = {}
        if distributed.is_distributed():  # every rank takes part; rank 0 writes
            extra["rank_states"] = distributed.gather_objects((g.get_state(), torch.get_rng_state()))

        def write() -> None:
            with atomic_write(path) as tmp:
                torch.save(
                    {
                        "module": module.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "generator": g.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "step": step,
                        **extra,
                    },
                    tmp,
                )

        distributed.main_first(write)  # the others wait until the file is complete


def _coords_settings(data: ZooData, cfg: TrainConfig) -> dict[str, Any]:
    """The model-config entries of ``cfg.coords``: the mode, and in descriptor mode the vocabulary sizes."""
    if cfg.coords not in COORDS:
        raise GeneratorError(f"TrainConfig.coords must be one of {COORDS}, got {cfg.coords!r}")
    if cfg.coords == "layer":
        return {"coords": "layer"}
    if data.vocab is None:
        raise GeneratorError("descriptor coordinates need the data's role vocabulary: load it with load_zoo")
    return {"coords": "descriptor", "num_roles": data.vocab.num_roles, "num_kinds": data.vocab.num_kinds}


class _Windows:
    """Draws the prior's training windows from token sequences of different lengths, without padding.

    One network is drawn with probability proportional to its length, the rest of the batch from the same
    length bucket (the bit length of ``min(length, block)``), likewise; the window length is the shortest
    member's ``min(length, block)`` and each member's window is placed so that every chunk of its sequence is
    equally likely to be in it (starts uniform over ``[1 - t, length - 1]``, clipped into the sequence).
    """

    def __init__(self, lengths: list[int], block: int) -> None:
        self.lengths, self.block = lengths, block
        self.weights = torch.tensor(lengths, dtype=torch.float64)
        bucket = [min(n, block).bit_length() for n in lengths]
        self.members = {b: torch.tensor([i for i, x in enumerate(bucket) if x == b]) for b in set(bucket)}
        self.bucket = bucket

    def draw(self, n: int, g: torch.Generator) -> tuple[list[int], list[int], int]:
        """(networks, window starts, window length) of a batch of ``n`` windows."""
        first = int(torch.multinomial(self.weights, 1, generator=g))
        members = self.members[self.bucket[first]]
        ex = [first]
        if n > 1:
            pick = torch.multinomial(self.weights[members], n - 1, replacement=True, generator=g)
            ex += members[pick].tolist()
        t = min(self.block, *(self.lengths[i] for i in ex))
        # a start drawn uniformly from [1 - t, length - 1], then clipped into the sequence, covers every
        # chunk equally often, the first ones included (a start uniform in [0, length - t] leaves the first
        # t chunks, where sampling begins, nearly untrained: chunk p < t is only in the p + 1 windows that
        # start at or before it)
        starts = [
            min(max(int(torch.randint(1 - t, self.lengths[i], (1,), generator=g)), 0), self.lengths[i] - t)
            for i in ex
        ]
        return ex, starts, t


def train_tokenizer(
    data: ZooData, cfg: TrainConfig, device: torch.device, progress: bool = True
) -> tuple[WeightTokenizer, dict[str, float]]:
    """Stage 1: fit the VQ-VAE on every chunk of every checkpoint (padding masked out).

    Distributed (a process group is initialised), the tokenizer trains in DDP and each rank draws its share
    of the ``tokenizer_batch`` chunks of a step; the returned tokenizer is the same on every rank.
    """
    rank, world = distributed.rank(), distributed.world_size()
    g = torch.Generator().manual_seed(distributed.rank_seed(cfg.seed))
    torch.manual_seed(cfg.seed)
    tcfg = TokenizerConfig(**{**asdict(cfg.tokenizer), "k": data.k, **_coords_settings(data, cfg)})
    tok = WeightTokenizer(tcfg).to(device)
    if rank:  # own stream for what the model draws in training (Gumbel noise); rank 0 keeps cfg.seed's
        torch.manual_seed(distributed.rank_seed(cfg.seed))
    data_t, mask, layer, position, count = (t.to(device) for t in data.all_chunks())
    every = data.all_slots() if tcfg.coords == "descriptor" else None
    slots = every.to(device) if every is not None else None
    n = data_t.shape[0]
    batch = min(cfg.tokenizer_batch, n)  # the global batch
    local = distributed.shard(batch)  # this rank's share of it
    weight = local * world / batch if batch >= world else 1.0  # DDP averages ranks: weigh unequal shares
    opt = torch.optim.Adam(tok.parameters(), lr=cfg.tokenizer_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, max(1, cfg.tokenizer_steps), eta_min=cfg.tokenizer_lr / 20
    )
    resume = _Resume(cfg, "stage1-tokenizer", cfg.seed)
    start = resume.restore(tok, opt, sched, g)
    model = distributed.wrap(tok, device, sync_buffers=False)  # EMA codebooks sync themselves
    model.train()
    out: dict[str, torch.Tensor] = {}
    show = progress and distributed.is_main()
    bar = tqdm(
        range(start, cfg.tokenizer_steps),
        desc="stage 1: tokenizer",
        unit="step",
        disable=not show,
        leave=False,
        initial=start,
        total=cfg.tokenizer_steps,
    )
    expect = _Expect("stage 1 (tokenizer)", start, cfg.tokenizer_steps, device, distributed.is_main())
    for step in bar:
        idx = torch.randint(0, n, (local,), generator=g).to(device)
        with _autocast(device):
            out = model(
                data_t[idx],
                mask[idx],
                layer[idx],
                position[idx],
                count[idx],
                slots.index(idx) if slots is not None else None,
            )
        opt.zero_grad(set_to_none=True)
        (out["loss"] if weight == 1 else out["loss"] * weight).backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            recon = distributed.mean_over_ranks(out["recon_loss"].item())
            ppl = distributed.mean_over_ranks(out["perplexity"].item())
            bar.set_postfix(recon=f"{recon:.4f}", ppl=f"{ppl:.0f}")
        resume.save(step + 1, tok, opt, sched, g, force=step + 1 == cfg.tokenizer_steps)
        expect.step(step)
    tok.eval()
    with torch.no_grad():
        full = tok(data_t, mask, layer, position, count, slots)
    metrics = {
        "tokenizer_recon_mse": float(full["recon_loss"]),
        "tokenizer_perplexity": float(full["perplexity"]),
        "tokenizer_live_codes": int(torch.unique(full["indices"]).numel()),
    }
    return tok, metrics


def encode_zoo(tok: WeightTokenizer, data: ZooData) -> list[torch.Tensor]:
    """Each checkpoint's codes: (N chunks, levels) long."""
    return [tok.encode(e.chunks) for e in data.examples]


def train_prior(
    data: ZooData, tokens: list[torch.Tensor], cfg: TrainConfig, device: torch.device, progress: bool = True
) -> tuple[WeightPrior, dict[str, float]]:
    """Stage 2: fit the GPT on random windows of the frozen token sequences, with their conditions.

    Distributed, the prior trains in DDP; each rank draws its share of the ``prior_batch`` sequences of a
    step and its own window start for them (ranks crop different windows); ``tokens`` must be the same on
    every rank. The returned prior is the same on every rank; the reported loss is the mean over ranks.
    """
    rank = distributed.rank()
    g = torch.Generator().manual_seed(distributed.rank_seed(cfg.seed + 1))
    torch.manual_seed(cfg.seed + 1)
    levels = cfg.tokenizer.levels
    lengths = [len(t) for t in tokens]
    pcfg = PriorConfig(
        **{
            **asdict(cfg.prior),
            "vocab_size": cfg.tokenizer.codebook_size,
            "levels": levels,
            "ds_dim": data.ds_dim,
            "arch_dim": data.arch_dim,
            "block_size": min(cfg.prior.block_size, max(lengths)),
            **_coords_settings(data, cfg),
        }
    )
    prior = WeightPrior(pcfg).to(device)
    if rank:  # own stream for condition dropout; rank 0 keeps cfg.seed + 1's
        torch.manual_seed(distributed.rank_seed(cfg.seed + 1))
    descriptor = pcfg.coords == "descriptor"
    coords = [
        ChunkCoords(*chunk_coords(e.chunks), chunk_slots(e.chunks) if descriptor else None).to(device)
        for e in data.examples
    ]
    seqs = [t.to(device) for t in tokens]
    ds = torch.stack([e.ds_emb for e in data.examples]).to(device)
    arch = torch.stack([e.arch_emb for e in data.examples]).to(device)
    decay = [p for p in prior.parameters() if p.dim() >= 2]
    no_decay = [p for p in prior.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.prior_lr,
        betas=(0.9, 0.95),
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, max(1, cfg.prior_steps), eta_min=cfg.prior_lr / 20
    )
    windows = _Windows(lengths, pcfg.block_size)
    resume = _Resume(cfg, "stage2-prior", cfg.seed + 1)
    start = resume.restore(prior, opt, sched, g)
    # without condition dropout the null embeddings get no gradient, which DDP must be told about
    model = distributed.wrap(prior, device, find_unused_parameters=pcfg.cond_dropout <= 0)
    model.train()
    local = distributed.shard(cfg.prior_batch)  # this rank's share of the global batch
    loss = torch.zeros(())
    smooth = None  # exponential moving average of the loss (the last batch alone is noisy)
    show = progress and distributed.is_main()
    bar = tqdm(
        range(start, cfg.prior_steps),
        desc="stage 2: prior",
        unit="step",
        disable=not show,
        leave=False,
        initial=start,
        total=cfg.prior_steps,
    )
    begin = torch.full((1, levels), prior.bos, device=device)
    expect = _Expect("stage 2 (prior)", start, cfg.prior_steps, device, distributed.is_main())
    for step in bar:
        ex, starts, t = windows.draw(local, g)
        tgt = torch.stack([seqs[i][s : s + t] for i, s in zip(ex, starts)])  # (B, T, L)
        first = torch.stack([seqs[i][s - 1 : s] if s > 0 else begin for i, s in zip(ex, starts)])  # (B, 1, L)
        prev = torch.cat([first, tgt[:, :-1]], 1)
        if cfg.prior_input_noise > 0:  # a sampled chunk that strays must not derail what follows
            flip = torch.rand(prev.shape, generator=g).to(device) < cfg.prior_input_noise
            noise = torch.randint(0, prior.bos, prev.shape, generator=g).to(device)
            prev = torch.where(flip & (prev != prior.bos), noise, prev)
        where = ChunkCoords.stack([coords[i].slice(s, s + t) for i, s in zip(ex, starts)])  # (B, T)
        with _autocast(device):
            _, loss = model(prev, where, ds[ex], arch[ex], tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        sched.step()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{distributed.mean_over_ranks(smooth):.3f}")
        resume.save(step + 1, prior, opt, sched, g, force=step + 1 == cfg.prior_steps)
        expect.step(step)
    prior.eval()
    final = loss.item() if smooth is None else smooth
    return prior, {"prior_final_loss": distributed.mean_over_ranks(final)}


def train_generator(data: ZooData, cfg: TrainConfig | None = None, *, progress: bool = True) -> Generator:
    """Both stages on ``data``; returns a ready :class:`Generator` with its training facts in ``info``.

    Launched by ``torchrun`` (``$WORLD_SIZE`` > 1), it trains in DDP over all launched processes, creating
    the process group if there is none yet (and destroying it afterwards); every rank returns the same
    generator. See :mod:`igpg.distributed`.
    """
    cfg = cfg or TrainConfig()
    layers = max(e.chunks.num_layers for e in data.examples)
    limit = min(cfg.tokenizer.max_layers, cfg.prior.max_layers)
    if cfg.coords == "layer" and layers > limit:
        raise GeneratorError(
            f"checkpoints with {layers} generated tensors exceed max_layers={limit}; "
            "raise TrainConfig.tokenizer.max_layers and TrainConfig.prior.max_layers"
        )
    with distributed.session(cfg.device) as multi:
        device = pick_device(cfg.device)
        t0 = time.perf_counter()
        tok, m1 = train_tokenizer(data, cfg, device, progress)
        t1 = time.perf_counter()
        # rank 0's codes on every rank (the tokenizers are the same; this rules out any numerical drift)
        tokens = distributed.broadcast_object(encode_zoo(tok, data) if distributed.is_main() else [])
        prior, m2 = train_prior(data, tokens, cfg, device, progress)
        t2 = time.perf_counter()
        info = {
            **m1,
            **m2,
            "tokenizer_seconds": round(t1 - t0, 2),
            "prior_seconds": round(t2 - t1, 2),
            "device": str(device),
            "checkpoints": [e.checkpoint.id for e in data.examples],
            "train_config": cfg.to_dict(),
        }
        if multi:
            info["distributed"] = {"world_size": distributed.world_size(), "backend": distributed.backend()}
    if distributed.is_main():
        log.info("generator trained: %s", {k: v for k, v in info.items() if k != "checkpoints"})
    return Generator(
        tok,
        prior,
        data.k,
        data.dataset_encoder,
        data.text_encoder,
        Generator.collect_stats(data),
        info,
        data.vocab if cfg.coords == "descriptor" else None,
        Generator.collect_slot_stats(data),
        data.log_kinds,
    )
