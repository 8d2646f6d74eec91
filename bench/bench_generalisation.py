"""Generation that generalises: IGPG on tasks the zoo never saw, against every baseline, over seeds.

Builds (or reuses) the generalisation zoo (``zoo_demo.tinyzoo.generalisation_split``: 56 training tasks,
``--per-task`` seeds each; 4 near and 4 far held-out tasks no training run touches), then for every variant
and seed trains a generator on it and runs the protocol of ``zoo_demo.evaluation`` on every held-out task:
generated best-of-5 against networks trained on the task, random init, the nearest checkpoint, that
checkpoint plus noise at the generator's own distance, the average of the 5 nearest after weight matching,
the best of the 10 nearest chosen on labels (and, as an ablation, with the class head), then fine-tuning
curves; and seen tasks (a fixed subset). Variants:

- ``full``: class head, no alignment (the default generator);
- ``aligned``: the same, the zoo weight-matched before tokenizing (``TrainConfig.align``);
- the generator without class head is measured inside every run (``generated_without_class_head``).

Prints JSON; ``--out FILE`` writes it and a PNG beside it.

    python bench/bench_generalisation.py --registry /tmp/genzoo/registry.db --seeds 0 1 \\
        --out bench/results/generalisation.json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from common import emit, machine

import igpg
import zoo
from zoo_demo.evaluation import held_out_task, seen_tasks
from zoo_demo.job import fast_generator_config
from zoo_demo.tinyzoo import build_generalisation_zoo, generalisation_split

SEEN_SUBSET = 12  # seen tasks evaluated per run: every (56 // 12)-th training task, fixed


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.mean(values), 4),
        "std": round(statistics.pstdev(values), 4) if len(values) > 1 else 0.0,
    }


def summarise(runs: list[dict[str, Any]], near: tuple[str, ...], far: tuple[str, ...]) -> dict[str, Any]:
    """Per task: means and spreads over seeds of every start; the issue's targets, checked on the means."""
    tasks = list(near) + list(far)
    keys = (
        "generated_best_of_n",
        "generated_without_class_head_best_of_n",
        "retrieved",
        "retrieved_with_class_head",
        "nearest",
        "noise",
        "average_aligned",
        "random_init",
        "trained_mean",
    )
    per_task: dict[str, Any] = {}
    for t in tasks:
        rows = [r["held_out"][t] for r in runs]
        per_task[t] = {
            "split": "near" if t in near else "far",
            **{k: _ms([r[k] for r in rows]) for k in keys},
        }
        per_task[t]["generated_vs_trained"] = _ms([r["generated_best_vs_trained"] for r in rows])
        per_task[t]["rel_l2_to_nearest_training_checkpoint"] = _ms(
            [d for r in rows for d in r["rel_l2_to_nearest_training_checkpoint"]]
        )
        steps = [r["steps_to_trained_accuracy"] for r in rows]
        per_task[t]["steps_to_trained_accuracy"] = steps
    m = {t: {k: per_task[t][k]["mean"] for k in keys} for t in tasks}
    ratio = statistics.mean(m[t]["generated_best_of_n"] / m[t]["trained_mean"] for t in tasks)
    beats_retrieved = sum(m[t]["generated_best_of_n"] >= m[t]["retrieved"] for t in tasks)
    above = {
        b: sum(m[t]["generated_best_of_n"] > m[t][b] for t in tasks) for b in ("noise", "average_aligned")
    }
    seen = [s for r in runs for s in r["seen"].values()]
    meeting = sum(s["best_vs_pretrained_mean"] >= 0.98 for s in seen)
    fine = []  # generated steps / random steps, where random reaches the trained accuracy at all
    for r in runs:
        for t in tasks:
            st = r["held_out"][t]["steps_to_trained_accuracy"]
            budget = r["held_out"][t]["curves"]["random"]["steps"][-1]
            g, rnd = st.get("generated"), st.get("random")
            fine.append(
                {
                    "task": t,
                    "generated": g,
                    "random": rnd,
                    "ratio": None if g is None else round(g / (rnd if rnd is not None else budget), 3),
                }
            )
    ge_headed = sum(m[t]["generated_best_of_n"] >= m[t]["retrieved_with_class_head"] for t in tasks)
    ablation = {
        "mean_generated_without_class_head_vs_trained": round(
            statistics.mean(
                m[t]["generated_without_class_head_best_of_n"] / m[t]["trained_mean"] for t in tasks
            ),
            4,
        ),
        "mean_retrieved_with_class_head_vs_trained": round(
            statistics.mean(m[t]["retrieved_with_class_head"] / m[t]["trained_mean"] for t in tasks), 4
        ),
        "tasks_generated_ge_retrieved_with_class_head": f"{ge_headed}/{len(tasks)}",
        "mean_rel_l2_to_nearest_training_checkpoint": round(
            statistics.mean(per_task[t]["rel_l2_to_nearest_training_checkpoint"]["mean"] for t in tasks), 4
        ),
        "mean_rel_l2_modulo_permutation": round(
            statistics.mean(
                d for r in runs for t in tasks for d in r["held_out"][t].get("rel_l2_modulo_permutation", [])
            ),
            4,
        )
        if any(r["held_out"][t].get("rel_l2_modulo_permutation") for r in runs for t in tasks)
        else None,
    }
    return {
        "per_task": per_task,
        "ablations": ablation,
        "targets": {
            "held_out_tasks": len(tasks),
            "far_tasks": len(far),
            "mean_generated_vs_trained (>= 0.80)": round(ratio, 4),
            "tasks_generated_ge_best_retrieved (>= 2/3)": f"{beats_retrieved}/{len(tasks)}",
            "tasks_above_noise (all)": f"{above['noise']}/{len(tasks)}",
            "tasks_above_aligned_average (all)": f"{above['average_aligned']}/{len(tasks)}",
            "seen_best_of_n_ge_98pct_of_pretrained": f"{meeting}/{len(seen)}",
            "fine_tune_steps_generated_over_random (<= 1/3; random's budget when it never gets there)": fine,
        },
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = result["variants"]
    fig, axes = plt.subplots(len(variants), 1, figsize=(13, 4.2 * len(variants)), squeeze=False)
    series = (
        ("trained_mean", "trained on the task"),
        ("generated_best_of_n", "generated best-of-5"),
        ("generated_without_class_head_best_of_n", "generated, decoded classifier"),
        ("retrieved_with_class_head", "best retrieved + class head"),
        ("retrieved", "best retrieved"),
        ("average_aligned", "aligned average of 5 nearest"),
        ("noise", "nearest + noise"),
        ("nearest", "nearest"),
        ("random_init", "random init"),
    )
    for ax, (name, v) in zip(axes[:, 0], variants.items()):
        per = v["summary"]["per_task"]
        tasks = list(per)
        w = 0.8 / len(series)
        for j, (key, label) in enumerate(series):
            xs = [i + (j - len(series) / 2 + 0.5) * w for i in range(len(tasks))]
            ax.bar(
                xs,
                [per[t][key]["mean"] for t in tasks],
                w,
                yerr=[per[t][key]["std"] for t in tasks],
                label=label,
                capsize=1.5,
            )
        ax.set_xticks(range(len(tasks)), [f"{t}\n({per[t]['split']})" for t in tasks], fontsize=7)
        ax.set_ylabel("test accuracy, zero-shot")
        ax.set_ylim(0, 1.25)
        ax.set_title(f"held-out tasks, generator variant '{name}' (mean ± std over {len(v['runs'])} seeds)")
        ax.legend(fontsize=6.5, ncol=5, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def resummarise(path: Path) -> None:
    """Recompute every variant's summary of a result file (its runs unchanged) with this version of
    :func:`summarise`, and redraw its PNG."""
    result = json.loads(path.read_text())
    near, far = tuple(result["zoo"]["near"]), tuple(result["zoo"]["far"])
    for v in result["variants"].values():
        v["summary"] = summarise(v["runs"], near, far)
    emit(result, path)
    plot(result, path.with_suffix(".png"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", help="SQLite file of the generalisation zoo (built if missing); required")
    ap.add_argument("--per-task", type=int, default=2, help="checkpoints per training task")
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1], help="generator training and sampling seeds"
    )
    ap.add_argument("--variants", nargs="+", default=["full", "aligned"], choices=["full", "aligned"])
    ap.add_argument("--samples", type=int, default=5, help="best-of-n")
    ap.add_argument("--fine-tune-steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--resummarise", type=Path, help="recompute the summaries of this result file and exit")
    args = ap.parse_args()
    if args.resummarise:
        resummarise(args.resummarise)
        return
    if not args.registry:
        ap.error("--registry is required (unless --resummarise)")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for name in ("igpg", "zoo_demo"):
        logging.getLogger(name).setLevel(logging.INFO)

    reg = zoo.Registry(args.registry)
    train, near, far = generalisation_split()
    t = time.perf_counter()
    recs = build_generalisation_zoo(reg, per_task=args.per_task)
    zoo_seconds = time.perf_counter() - t
    seen_subset = tuple(train[:: max(1, len(train) // SEEN_SUBSET)][:SEEN_SUBSET])
    variants: dict[str, Any] = {}
    for variant in args.variants:
        runs = []
        for seed in args.seeds:
            cfg = fast_generator_config()
            cfg.seed = seed
            cfg.align = variant == "aligned"
            t = time.perf_counter()
            name = f"gen-{variant}-s{seed}"
            stored = [g for g in reg.generators() if g.name == name]
            if stored:  # a rerun evaluates the generator it trained before
                grec = stored[0]
                gen = igpg.load_generator(reg, grec.ref)
            else:
                gen, grec = igpg.train_on_registry(
                    reg, arch="cnn-tiny", config=cfg, name=name, progress=False
                )
            train_s = time.perf_counter() - t
            t = time.perf_counter()
            held = {
                task: held_out_task(
                    reg, gen, task, recs, n=args.samples, seed=seed, fine_tune_steps=args.fine_tune_steps
                ).to_dict()
                for task in near + far
            }
            seen = {
                s.task: s.to_dict()
                for s in seen_tasks(reg, gen, recs, n=args.samples, seed=seed, tasks=seen_subset)
            }
            runs.append(
                {
                    "seed": seed,
                    "generator": grec.ref,
                    "class_head": gen.class_head.to_dict() if gen.class_head else None,
                    "prior_final_loss": gen.info.get("prior_final_loss"),
                    "tokenizer_recon_mse": gen.info.get("tokenizer_recon_mse"),
                    "train_seconds": round(
                        gen.info.get("tokenizer_seconds", 0) + gen.info.get("prior_seconds", 0), 1
                    ),
                    "train_or_load_seconds": round(train_s, 1),
                    "evaluate_seconds": round(time.perf_counter() - t, 1),
                    "held_out": held,
                    "seen": seen,
                }
            )
            variants[variant] = {"runs": runs, "summary": summarise(runs, near, far)}
            if args.out:  # what is done so far survives a crash of a later run
                args.out.with_suffix(".partial.json").write_text(json.dumps(variants, indent=1))
    result = {
        "bench": "generalisation",
        "machine": machine(threads=args.threads),
        "zoo": {
            "checkpoints": len(recs),
            "training_tasks": len(train),
            "per_task": args.per_task,
            "near": list(near),
            "far": list(far),
            "seen_subset": list(seen_subset),
            "build_seconds": round(zoo_seconds, 1),
        },
        "generator": "zoo_demo.job.fast_generator_config (small preset, layer coordinates), seed per run",
        "variants": variants,
    }
    emit(result, args.out)
    if args.out:
        plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
