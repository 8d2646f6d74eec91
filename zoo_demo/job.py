"""The main job: from an empty folder to a finished evaluation report on the embedded default (SQLite).

1. build the tiny zoo (the standard tiny CNN on 8 real digit tasks, 6 seeds each) into ``registry.db``;
2. train the IGPG generator on it and store it as a promoted generator version;
3. ask :func:`zoo.retrieve_or_generate` for weights for every seen task and for held-out tasks;
4. measure, as in the IGPG paper's tiny-zoo table: accuracy at epoch 0 of the pretrained checkpoints, their
   tokenizer reconstructions, generated networks (mean and best-of-n), the retrieved checkpoint and random
   init; then fine-tune from generated, retrieved and random init on the held-out tasks;
5. import the real pretrained CIFAR-10 ResNets when ``../shared/data`` holds them, verify every blob;
6. write ``report.md`` and ``figure.png``.

The defaults fit 10 minutes on 2 CPU cores; :class:`DemoConfig` scales it up (more seeds, a bigger
generator, GPU).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import igpg
import zoo
from zoo import Registry, shared_data_dir
from zoo_demo.evaluation import held_out_task, seen_tasks, tokenizer_fidelity
from zoo_demo.tinyzoo import ARCH, TASKS, build_tiny_zoo, default_tasks, evaluate, held_out_tasks, task_data

log = logging.getLogger(__name__)


def fast_generator_config() -> igpg.TrainConfig:
    """The generator configuration of the default main job (sized for 2 CPU cores; see bench/README.md): the
    ``small`` training preset (``zoo train --preset small``) with layer coordinates (one architecture: the
    absolute layer index locates a chunk; the descriptor coordinates that let a generator serve other depths
    and widths cost seen-task quality here, measured: best-of-5 reached 98% of pretrained on 4 of 8 tasks)."""
    cfg = igpg.TrainConfig.preset("small")
    cfg.coords = "layer"
    return cfg


@dataclass
class DemoConfig:
    """What the main job runs. The defaults are the 10-minute CPU run; raise them for a bigger one."""

    tasks: tuple[str, ...] | None = None  # training tasks (default: 8, with MNIST when its files are found)
    held_out: tuple[str, ...] | None = None  # tasks no checkpoint is trained on (default: held_out_tasks())
    per_task: int = 6  # checkpoints (seeds) per task (10: the 10-minute prior no longer memorises reliably)
    zoo_steps: int = 200  # training steps per zoo checkpoint
    samples: int = 5  # generated networks per task (best-of-n)
    fine_tune_steps: int = 150  # fine-tuning steps on the held-out tasks
    generator: igpg.TrainConfig = field(default_factory=fast_generator_config)  # the generator's training
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    import_pretrained: bool = True  # import ../shared/data/pretrained ResNets when present


@zoo.recorded(
    "demo", registry=lambda a: Path(a["out"]) / "registry.db", summary=lambda report: f"report: {report}"
)
def run_demo(out: str | os.PathLike[str], config: DemoConfig | None = None) -> Path:
    """Run the main job into folder ``out`` (created; an existing zoo there is reused); returns report.md."""
    c = config or DemoConfig()
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(
        max(1, min(2, os.cpu_count() or 1)) if c.device != "cuda" else torch.get_num_threads()
    )
    timings: dict[str, float] = {}
    reg = Registry(out / "registry.db")
    spec = zoo.resolve_arch(ARCH)
    tasks = tuple(c.tasks or default_tasks())
    held = tuple(c.held_out or held_out_tasks())

    t = time.perf_counter()
    recs = build_tiny_zoo(reg, tasks, per_task=c.per_task, steps=c.zoo_steps)
    timings["build tiny zoo"] = time.perf_counter() - t

    t = time.perf_counter()
    c.generator.device = c.device
    gen, grec = igpg.train_on_registry(reg, arch=ARCH, config=c.generator, promote=True)
    timings["train generator"] = time.perf_counter() - t

    t = time.perf_counter()
    data = igpg.load_zoo(
        reg, recs, k=gen.k, dataset_encoder=gen.dataset_encoder, text_encoder=gen.text_encoder
    )
    fid = tokenizer_fidelity(gen, data)
    recon: dict[str, list[float]] = {}
    for e, rel in zip(data.examples, fid.relative):
        recon.setdefault(e.checkpoint.dataset or "", []).append(rel * e.checkpoint.metrics["accuracy"])
    seen = seen_tasks(reg, gen, recs, n=c.samples)
    timings["evaluate seen tasks"] = time.perf_counter() - t

    t = time.perf_counter()
    family = zoo.get_family(spec.family)
    torch.manual_seed(0)
    random_net = family.build(spec)
    requests = []
    for task in tqdm(tasks + held, desc="retrieve_or_generate", unit="task"):
        train_set, test_set = task_data(task)
        support = train_set.subset(range(min(100, len(train_set.labels))))
        p = zoo.retrieve_or_generate(ARCH, test_set, registry=reg, labelled=support if task in held else None)
        requests.append((task, p, evaluate(p.module, task), evaluate(random_net, task)))
    timings["retrieve_or_generate"] = time.perf_counter() - t

    t = time.perf_counter()
    held_results = [
        held_out_task(
            reg, gen, task, recs, n=c.samples, fine_tune_steps=c.fine_tune_steps, reference_steps=c.zoo_steps
        )
        for task in tqdm(held, desc="held-out tasks", unit="task")
    ]
    timings["held-out tasks and fine-tuning"] = time.perf_counter() - t

    t = time.perf_counter()
    imported = _import_pretrained(reg) if c.import_pretrained else []
    report = reg.verify()
    timings["pretrained import and verify"] = time.perf_counter() - t

    elapsed = time.perf_counter() - t0
    figure = out / "figure.png"
    _plot(seen, recon, requests, held_results, figure)
    text = _report(
        reg,
        c,
        gen,
        grec,
        recs,
        tasks,
        fid,
        recon,
        seen,
        requests,
        held_results,
        imported,
        report,
        timings,
        elapsed,
        figure.name,
    )
    path = out / "report.md"
    path.write_text(text)
    log.info("report written to %s (%.0f s)", path, elapsed)
    reg.close()
    return path


def _import_pretrained(reg: Registry) -> list[tuple[str, int, float, bool]]:
    pre = shared_data_dir("pretrained")
    imported: list[tuple[str, int, float, bool]] = []
    if pre is None:
        return imported
    for f in tqdm(sorted(pre.glob("resnet*.th")), desc="import pretrained ResNets", unit="file"):
        raw = torch.load(f, weights_only=True, map_location="cpu")
        rec = reg.add(
            f,
            dataset="cifar10",
            metrics={"top1": float(raw["best_prec1"])},
            tags=["pretrained"],
            exist_ok=True,
        )
        sd = reg.load(rec).state_dict()
        same = all(torch.equal(sd[k.removeprefix("module.")], v) for k, v in raw["state_dict"].items())
        imported.append((rec.ref, rec.num_params, float(raw["best_prec1"]), same))
    return imported


def _plot(
    seen: list[Any], recon: dict[str, list[float]], requests: list[Any], held: list[Any], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1,
        1 + len(held),
        figsize=(7 + 4.5 * len(held), 4.2),
        gridspec_kw={"width_ratios": [1.6] + [1] * len(held)},
    )
    axes = [axes] if not len(held) else list(axes)
    ax = axes[0]
    random_acc = {task: r for task, _, _, r in requests}
    retrieved = {task: a for task, p, a, _ in requests if p.source == "retrieved"}
    series = [
        ("pretrained (mean)", [s.pretrained_mean for s in seen]),
        ("tokenizer reconstruction", [statistics.mean(recon[s.task]) for s in seen]),
        ("generated (mean of n)", [statistics.mean(s.generated) for s in seen]),
        ("generated (best of n)", [s.best for s in seen]),
        ("retrieved", [retrieved.get(s.task, float("nan")) for s in seen]),
        ("random init", [random_acc[s.task] for s in seen]),
    ]
    width = 0.8 / len(series)
    for j, (label, values) in enumerate(series):
        ax.bar(
            [i + (j - len(series) / 2 + 0.5) * width for i in range(len(seen))], values, width, label=label
        )
    ax.set_xticks(range(len(seen)), [s.task for s in seen], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy at epoch 0")
    ax.set_ylim(0, 1.35)  # room for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_title("seen tasks")
    ax.legend(fontsize=7, ncol=3, loc="upper center")
    for ax, h in zip(axes[1:], held):
        for name, curve in h.curves.items():
            ax.plot(curve.steps, curve.accuracy, label=f"from {name}")
        ax.axhline(h.trained_mean, ls="--", c="gray", label="trained on the task")
        ax.set_xlabel("fine-tuning steps")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"held-out: {h.task}")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _report(
    reg: Registry,
    c: DemoConfig,
    gen: Any,
    grec: Any,
    recs: list[Any],
    tasks: tuple[str, ...],
    fid: Any,
    recon: dict[str, list[float]],
    seen: list[Any],
    requests: list[Any],
    held: list[Any],
    imported: list[Any],
    verify: Any,
    timings: dict[str, float],
    elapsed: float,
    figure: str,
) -> str:
    info = gen.info
    lines = [
        "# zoo main job report",
        "",
        f"Registry `{reg.url}`: {reg.stats()['checkpoints']} checkpoints. "
        f"Total run time **{elapsed:.0f} s** on "
        f"{os.cpu_count()} CPU core(s){' + CUDA' if torch.cuda.is_available() else ''}, "
        f"torch {torch.__version__}.",
        "",
        "| stage | seconds |",
        "| --- | --- |",
        *[f"| {k} | {v:.1f} |" for k, v in timings.items()],
        "",
        f"![accuracy at epoch 0 and fine-tuning curves]({figure})",
        "",
        "## The tiny zoo",
        "",
        f"{len(recs)} checkpoints of `cnn-tiny` ({c.per_task} seeds x {len(tasks)} tasks, "
        f"{c.zoo_steps} Adam steps "
        "each), every one registered with its dataset and test accuracy:",
        "",
        *[f"- `{t}`: {TASKS[t].description}" for t in tasks],
        "",
        "## The generator",
        "",
        f"`{grec.ref}` (promoted), trained on {len(info.get('checkpoints', []))} checkpoints "
        f"on {info.get('device')}: "
        f"tokenizer {info.get('tokenizer_seconds', 0):.0f} s "
        f"(reconstruction MSE {info.get('tokenizer_recon_mse', 0):.4f}, "
        f"perplexity {info.get('tokenizer_perplexity', 0):.0f}, {info.get('tokenizer_live_codes', 0)} of "
        f"{gen.tokenizer.config.codebook_size} codes live), prior {info.get('prior_seconds', 0):.0f} s "
        f"(final loss {info.get('prior_final_loss', 0):.3f}).",
        "",
        f"Tokenizer fidelity: decoded checkpoints keep **{fid.mean_relative:.3f}** of their own accuracy on "
        f"average (minimum {fid.min_relative:.3f}; target 0.99).",
        "",
        "## Seen tasks: accuracy at epoch 0",
        "",
        f"Generated: {c.samples} samples per task (temperature and nucleus settings of `igpg.evaluation`). "
        "Distance: relative L2 distance of each sample to its nearest training checkpoint "
        "(about 0 would be a copy; "
        "the tokenizer alone costs about its reconstruction error).",
        "",
        "| task | pretrained mean | tokenizer recon. | generated mean ± std | generated best | "
        "best / pretrained | "
        "retrieved | random | distances |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_task = {task: (p, a, r) for task, p, a, r in requests}
    for s in seen:
        p, a, r = by_task[s.task]
        got = f"{a:.3f}" if p.source == "retrieved" else f"{a:.3f} (generated)"
        lines.append(
            f"| {s.task} | {s.pretrained_mean:.3f} | {statistics.mean(recon[s.task]):.3f} | "
            f"{statistics.mean(s.generated):.3f} ± {statistics.pstdev(s.generated):.3f} | {s.best:.3f} | "
            f"{s.best_relative:.3f} | {got} | {r:.3f} | {', '.join(f'{d:.2f}' for d in s.distance)} |"
        )
    meeting = sum(s.best_relative >= 0.98 for s in seen)
    lines += [
        "",
        f"Best-of-{c.samples} reaches 98% of the pretrained mean on **{meeting} of {len(seen)}** tasks.",
        "",
        "## Held-out tasks (no checkpoint trained on them)",
        "",
        "Best-of-n and the best retrieved checkpoint are chosen on 100 labelled training images and measured "
        "on the test split.",
        "",
        "| task | trained on it | random init | retrieved (best of 10 nearest) | generated mean | "
        "generated best-of-n | generated / trained | "
        "steps to trained accuracy (generated / retrieved / random) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in held:
        st = h.steps_to_trained()
        lines.append(
            f"| {h.task} | {h.trained_mean:.3f} | {h.random_init:.3f} | {h.retrieved:.3f} "
            f"(`{h.retrieved_from}`) | {statistics.mean(h.generated):.3f} | {h.generated_best:.3f} | "
            f"{h.generated_best / h.trained_mean:.3f} | {st.get('generated')} / {st.get('retrieved')} / "
            f"{st.get('random')} |"
        )
    lines += [
        "",
        "## What `zoo.retrieve_or_generate` returned",
        "",
        "Queried with each task's test split (never registered); held-out tasks also pass 100 labelled "
        "training images, so retrieved candidates and generated samples are scored.",
        "",
        "| task | source | from | similarity | test accuracy | seconds | reason |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, p, a, _ in requests:
        sim = f"{p.similarity:.4f}" if p.similarity is not None else "-"
        lines.append(f"| {task} | {p.source} | `{p.ref}` | {sim} | {a:.3f} | {p.seconds:.2f} | {p.reason} |")
    lines += ["", "## Real pretrained CIFAR-10 ResNets", ""]
    if imported:
        lines += [
            "| checkpoint | params | reported top-1 | loaded bitwise equal to the original file |",
            "| --- | --- | --- | --- |",
            *[f"| {r} | {n:,} | {top1:.2f} | {same} |" for r, n, top1, same in imported],
        ]
    else:
        lines.append("Not run: `../shared/data/pretrained` is not present (set ZOO_SHARED_DATA).")
    lines += [
        "",
        "## Integrity",
        "",
        f"`verify`: {verify.checked} blobs hashed, {verify.ok} ok, {len(verify.missing)} missing, "
        f"{len(verify.corrupt)} corrupt, {len(verify.orphan_files)} orphan files.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["DemoConfig", "fast_generator_config", "run_demo"]
