"""IGPG on the tiny zoo: tokenizer fidelity, seen-task generation, memorisation distance, speed.

Builds (or reuses) the tiny zoo in a registry, trains the generator on it, then for every seen task samples
5 networks conditioned on the task's dataset embedding and reports their test accuracy against the task's
pretrained checkpoints (mean, spread, best-of-5 relative to the pretrained mean) and each generated
network's relative L2 distance to its nearest training checkpoint of that task (memorisation shows as ~0).
Prints JSON; `--out FILE` writes it too.

    python bench/bench_generator.py --registry /tmp/zoo-bench/registry.db --out bench/results/generator.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import igpg
import zoo
from common import emit, machine
from zoo.embeddings import embed_arch, get_embedding
from zoo.tinyzoo import build_tiny_zoo, default_tasks, evaluate


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.state_dict().values() if p.dtype.is_floating_point])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", type=Path, default=Path("zoo-bench/registry.db"))
    ap.add_argument("--per-task", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200, help="training steps per zoo checkpoint")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--tokenizer-steps", type=int, default=2000)
    ap.add_argument("--prior-steps", type=int, default=1500)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    reg = zoo.Registry(args.registry)
    tasks = list(default_tasks())
    t0 = time.perf_counter()
    recs = build_tiny_zoo(reg, tasks, per_task=args.per_task, steps=args.steps)
    t_zoo = time.perf_counter() - t0
    cfg = igpg.TrainConfig(tokenizer=igpg.TokenizerConfig(levels=args.levels), tokenizer_steps=args.tokenizer_steps,
                           prior_steps=args.prior_steps)
    data = igpg.load_zoo(reg, recs, k=args.k)
    gen = igpg.train_generator(data, cfg)
    spec = zoo.resolve_arch("cnn-tiny")
    family = zoo.get_family("cnn")
    # tokenizer fidelity: every checkpoint through encode -> decode
    rel = []
    for e in data.examples:
        decoded = gen.tokenizer.decode(gen.tokenizer.encode(e.chunks), e.chunks)
        acc = evaluate(family.rebuild(spec, zoo.unchunk(decoded)), e.checkpoint.dataset)
        rel.append(acc / e.checkpoint.metrics["accuracy"])
    arch_emb = torch.tensor(embed_arch(reg, spec).vector)
    per_task = {}
    sample_times, n_tokens = [], 0
    for task in tasks:
        task_recs = [r for r in recs if r.dataset == task]
        pre = [r.metrics["accuracy"] for r in task_recs]
        train_flats = torch.stack([flat(reg.load(r)) for r in task_recs])
        ds = torch.tensor(get_embedding(reg, "dataset", task, gen.dataset_encoder).vector)
        t = time.perf_counter()
        nets = gen.sample(spec, ds, arch_emb, n=args.samples, temperature=args.temperature, seed=0)
        sample_times.append(time.perf_counter() - t)
        accs = [evaluate(n, task) for n in nets]
        dists = []
        for n in nets:
            f = flat(n)
            dists.append(float(((train_flats - f).norm(dim=1) / train_flats.norm(dim=1)).min()))
        per_task[task] = {
            "pretrained_mean": round(statistics.mean(pre), 4), "generated": [round(a, 4) for a in accs],
            "generated_mean": round(statistics.mean(accs), 4), "generated_std": round(statistics.pstdev(accs), 4),
            "best_of_5": round(max(accs), 4), "best_vs_pretrained_mean": round(max(accs) / statistics.mean(pre), 4),
            "rel_l2_to_nearest_training_checkpoint": [round(d, 4) for d in dists],
        }
    positions = data.examples[0].chunks.num_chunks  # one prior position per chunk
    tokens_per_net = positions * args.levels  # codes per network (levels per chunk)
    n_tokens = tokens_per_net * args.samples * len(tasks)
    result = {
        "benchmark": "igpg_tiny_zoo",
        "machine": machine(),
        "zoo": {"tasks": tasks, "checkpoints": len(recs), "build_seconds": round(t_zoo, 1)},
        "config": cfg.to_dict(),
        "training": {k: v for k, v in gen.info.items() if k not in ("checkpoints", "train_config")},
        "tokenizer_fidelity": {"mean_relative_accuracy": round(statistics.mean(rel), 4),
                               "min_relative_accuracy": round(min(rel), 4), "target": 0.99},
        "seen_tasks": per_task,
        "seen_tasks_meeting_98pct": sum(v["best_vs_pretrained_mean"] >= 0.98 for v in per_task.values()),
        "sampling": {"positions_per_network": positions, "codes_per_network": tokens_per_net,
                     "codes_per_s": round(n_tokens / sum(sample_times), 1),
                     "params_per_s": round(family.layout(spec).num_params * args.samples * len(tasks)
                                           / sum(sample_times), 1)},
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
