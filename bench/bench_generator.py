"""IGPG on the tiny zoo: tokenizer fidelity, seen tasks, held-out tasks, fine-tuning, speed.

Builds (or reuses) the tiny zoo in a registry, trains the generator on it, then runs the protocol of
``zoo_demo.evaluation``: tokenizer fidelity; for every seen task ``--samples`` networks (mean, spread, best
against the task's pretrained mean, and each one's distance to its nearest training checkpoint); for every
held-out task zero-shot generated weights against random init, the best retrieved checkpoint and networks
trained on it, then fine-tuning curves from each. Prints JSON; ``--out FILE`` writes it and a PNG beside it.

    python bench/bench_generator.py --registry /tmp/zoo-bench/registry.db --out bench/results/generator.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import emit, machine

import igpg
import zoo
from zoo_demo.evaluation import held_out_task, seen_tasks, tokenizer_fidelity
from zoo_demo.tinyzoo import build_tiny_zoo, default_tasks, held_out_tasks


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = result["held_out_tasks"]
    fig, axes = plt.subplots(1, 1 + len(held), figsize=(5 * (1 + len(held)), 4))
    ax = axes[0]
    seen = result["seen_tasks"]
    names = list(seen)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [seen[t]["pretrained_mean"] for t in names], 0.4, label="pretrained mean")
    ax.bar([i + 0.2 for i in x], [seen[t]["best_of_n"] for t in names], 0.4, label="generated best-of-n")
    ax.scatter(
        [i + 0.2 for t in names for i in [names.index(t)] * len(seen[t]["generated"])],
        [a for t in names for a in seen[t]["generated"]],
        s=8,
        c="k",
        label="each sample",
        zorder=3,
    )
    ax.set_xticks(list(x), names, rotation=45, ha="right")
    ax.set_ylabel("test accuracy")
    ax.set_title("seen tasks")
    ax.legend(fontsize=7)
    for ax, (task, h) in zip(axes[1:], held.items()):
        for name, c in h["curves"].items():
            ax.plot(c["steps"], c["accuracy"], label=f"from {name}")
        ax.axhline(h["trained_mean"], ls="--", c="gray", label="trained on task")
        ax.set_xlabel("fine-tuning steps")
        ax.set_title(f"held-out: {task}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", type=Path, default=Path("zoo-bench/registry.db"))
    ap.add_argument("--per-task", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200, help="training steps per zoo checkpoint")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--levels", type=int, default=None)
    ap.add_argument("--tokenizer-steps", type=int, default=None)
    ap.add_argument("--prior-steps", type=int, default=None)
    ap.add_argument("--prior-width", type=int, default=None)
    ap.add_argument("--prior-layers", type=int, default=None)
    ap.add_argument("--prior-batch", type=int, default=None)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--fine-tune-steps", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    reg = zoo.Registry(args.registry)
    tasks = list(default_tasks())
    t0 = time.perf_counter()
    recs = build_tiny_zoo(reg, tasks, per_task=args.per_task, steps=args.steps)
    t_zoo = time.perf_counter() - t0
    cfg = igpg.TrainConfig()
    if args.levels:
        cfg.tokenizer.levels = args.levels
    if args.tokenizer_steps:
        cfg.tokenizer_steps = args.tokenizer_steps
    if args.prior_steps:
        cfg.prior_steps = args.prior_steps
    if args.prior_width:
        cfg.prior.n_embd = args.prior_width
    if args.prior_layers:
        cfg.prior.n_layer = args.prior_layers
    if args.prior_batch:
        cfg.prior_batch = args.prior_batch
    data = igpg.load_zoo(reg, recs, k=args.k)
    gen = igpg.train_generator(data, cfg)
    sampling = {"temperature": args.temperature, "top_p": args.top_p}
    fid = tokenizer_fidelity(gen, data)
    t = time.perf_counter()
    seen = seen_tasks(reg, gen, recs, n=args.samples, sampling=sampling)
    t_seen = time.perf_counter() - t  # sampling + evaluation of every seen task
    held = {
        task: held_out_task(
            reg, gen, task, recs, n=args.samples, sampling=sampling, fine_tune_steps=args.fine_tune_steps
        )
        for task in held_out_tasks()
    }

    spec = zoo.resolve_arch("cnn-tiny")
    t = time.perf_counter()
    gen.sample(spec, data.examples[0].ds_emb, data.examples[0].arch_emb, n=args.samples, seed=1, **sampling)  # type: ignore[arg-type]
    t_sample = time.perf_counter() - t
    positions = data.examples[0].chunks.num_chunks  # one prior position per chunk
    codes = positions * gen.prior.config.levels
    params = zoo.get_family("cnn").layout(spec).num_params
    result = {
        "benchmark": "igpg_tiny_zoo",
        "machine": machine(),
        "zoo": {"tasks": tasks, "checkpoints": len(recs), "build_seconds": round(t_zoo, 1)},
        "config": cfg.to_dict(),
        "sampling": sampling,
        "training": {k: v for k, v in gen.info.items() if k not in ("checkpoints", "train_config")},
        "tokenizer_fidelity": {
            "mean_relative_accuracy": round(fid.mean_relative, 4),
            "min_relative_accuracy": round(fid.min_relative, 4),
            "target": 0.99,
            "perplexity": round(fid.perplexity, 1),
            "live_codes": fid.live_codes,
            "codebook_size": gen.tokenizer.config.codebook_size,
        },
        "seen_tasks": {s.task: s.to_dict() for s in seen},
        "seen_tasks_meeting_98pct": sum(s.best_relative >= 0.98 for s in seen),
        "seen_seconds": round(t_seen, 1),
        "held_out_tasks": {k: v.to_dict() for k, v in held.items()},
        "speed": {
            "positions_per_network": positions,
            "codes_per_network": codes,
            "batch": args.samples,
            "seconds_per_batch": round(t_sample, 3),
            "codes_per_s": round(codes * args.samples / t_sample, 1),
            "params_per_s": round(params * args.samples / t_sample, 1),
        },
    }
    emit(result, args.out)
    if args.out:
        plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
