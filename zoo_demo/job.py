"""The main job: from an empty folder to a finished evaluation report on the embedded default (SQLite).

1. build the generalisation zoo (the standard tiny CNN on 56 real digit tasks: rotations, class subsets and
   orders, inversion, mirror, blur, zoom and compositions; one seed each) into ``registry.db``;
2. train the IGPG generator on it and store it as a promoted generator version;
3. ask :func:`zoo.retrieve_or_generate` for weights for seen tasks and for the held-out tasks;
4. measure, as in the IGPG paper's tiny-zoo table: accuracy at epoch 0 of the pretrained checkpoints, their
   tokenizer reconstructions, generated networks (mean and best-of-n) on seen tasks; on the 8 held-out
   tasks (4 near, 4 far: ``zoo_demo.tinyzoo.generalisation_split``) generated weights against every
   baseline of the protocol (nearest checkpoint, nearest plus noise, aligned average, best retrieved,
   random init, networks trained on the task); then fine-tune from generated, retrieved and random init;
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
from zoo.errors import ConfigError, Hint
from zoo_demo.evaluation import held_out_task, seen_tasks, tokenizer_fidelity
from zoo_demo.tinyzoo import ARCH, Task, build_tiny_zoo, evaluate, generalisation_split, task_data

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

    tasks: tuple[str, ...] | None = None  # training tasks (default: the generalisation split's 56)
    held_out: tuple[str, ...] | None = None  # tasks no checkpoint is trained on (default: its near and far)
    per_task: int = 1  # checkpoints (seeds) per task
    seen: int = 8  # seen tasks evaluated (every len(tasks) // seen-th training task)
    zoo_steps: int = 200  # training steps per zoo checkpoint
    samples: int = 5  # generated networks per task (best-of-n)
    fine_tune_steps: int = 150  # fine-tuning steps on the held-out tasks
    reference_seeds: int = 2  # networks trained on each held-out task (the reference accuracy)
    generator: igpg.TrainConfig = field(default_factory=fast_generator_config)  # the generator's training
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    import_pretrained: bool = True  # import ../shared/data/pretrained ResNets when present


def check_tasks(tasks: tuple[str, ...], held: tuple[str, ...]) -> None:
    """Refuse, before anything is built, a task name the grammar does not read (:class:`~zoo.errors.
    DatasetError` with the grammar) and a held-out task that is also a training task, by name or as the same
    task spelled otherwise (:class:`~zoo.errors.ConfigError`): held-out figures must be on unseen tasks."""

    def key(name: str) -> tuple[object, ...]:  # the data a name means, whatever its spelling
        task = Task.parse(name)
        return (task.source, tuple((st.op, st.arg) for st in task.steps))

    trained = {key(t): t for t in tasks}
    both = [f"{h} (trained as {trained[key(h)]})" for h in held if key(h) in trained]
    if both:
        raise ConfigError(
            f"held-out task(s) {', '.join(both)} are also training tasks; a held-out task must be one no "
            "checkpoint is trained on: leave it out of the training tasks or pick another held-out task"
        ).hinting(Hint("DemoConfig(held_out=...)", "--held-out TASKS"))


def run_demo(out: str | os.PathLike[str], config: DemoConfig | None = None) -> Path:
    """Run the main job into folder ``out`` (created; an existing zoo there is reused); returns report.md.

    Raises:
        zoo.errors.DatasetError, zoo.errors.ConfigError: a task name the grammar does not read, or a
            held-out task that is also a training task (:func:`check_tasks`), before anything is created.
    """
    c = config or DemoConfig()
    split_train, near, far = generalisation_split()
    tasks = tuple(dict.fromkeys(c.tasks or split_train))
    held = tuple(dict.fromkeys(c.held_out or near + far))
    check_tasks(tasks, held)
    return _run(out, c, tasks, held)


@zoo.recorded(
    "demo", registry=lambda a: Path(a["out"]) / "registry.db", summary=lambda report: f"report: {report}"
)
def _run(out: str | os.PathLike[str], c: DemoConfig, tasks: tuple[str, ...], held: tuple[str, ...]) -> Path:
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(
        max(1, min(2, os.cpu_count() or 1)) if c.device != "cuda" else torch.get_num_threads()
    )
    timings: dict[str, float] = {}
    reg = Registry(out / "registry.db")
    spec = zoo.resolve_arch(ARCH)
    seen_subset = tasks[:: max(1, len(tasks) // c.seen)][: c.seen]

    t = time.perf_counter()
    recs = build_tiny_zoo(reg, tasks, per_task=c.per_task, steps=c.zoo_steps, first_seed=1)
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
    seen = seen_tasks(reg, gen, recs, n=c.samples, tasks=seen_subset)
    timings["evaluate seen tasks"] = time.perf_counter() - t

    t = time.perf_counter()
    family = zoo.get_family(spec.family)
    torch.manual_seed(0)
    random_net = family.build(spec)
    requests = []
    for task in tqdm(seen_subset + held, desc="retrieve_or_generate", unit="task"):
        train_set, test_set = task_data(task)
        support = train_set.subset(range(min(100, len(train_set.labels))))
        p = zoo.retrieve_or_generate(ARCH, test_set, registry=reg, labelled=support if task in held else None)
        requests.append((task, p, evaluate(p.module, task), evaluate(random_net, task)))
    timings["retrieve_or_generate"] = time.perf_counter() - t

    t = time.perf_counter()
    held_results = [
        held_out_task(
            reg,
            gen,
            task,
            recs,
            n=c.samples,
            fine_tune_steps=c.fine_tune_steps,
            reference_steps=c.zoo_steps,
            reference_seeds=c.reference_seeds,
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

    cols = 4
    rows = 1 + (len(held) + cols - 1) // cols
    fig = plt.figure(figsize=(18, 4.4 * rows))
    grid = fig.add_gridspec(rows, cols)
    ax = fig.add_subplot(grid[0, :2] if held else grid[0, :])
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
    if held:
        ax = fig.add_subplot(grid[0, 2:])
        bars = [
            ("trained on it", [h.trained_mean for h in held]),
            ("generated best-of-n", [h.generated_best for h in held]),
            ("best retrieved", [h.retrieved for h in held]),
            ("aligned average", [h.average for h in held]),
            ("nearest + noise", [h.noise for h in held]),
            ("nearest", [h.nearest for h in held]),
            ("random init", [h.random_init for h in held]),
        ]
        width = 0.8 / len(bars)
        for j, (label, values) in enumerate(bars):
            ax.bar(
                [i + (j - len(bars) / 2 + 0.5) * width for i in range(len(held))], values, width, label=label
            )
        ax.set_xticks(range(len(held)), [h.task for h in held], rotation=40, ha="right", fontsize=8)
        ax.set_ylim(0, 1.35)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_title("held-out tasks: zero-shot")
        ax.legend(fontsize=7, ncol=4, loc="upper center")
    for i, h in enumerate(held):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        for name, curve in h.curves.items():
            ax.plot(curve.steps, curve.accuracy, label=f"from {name}")
        ax.axhline(h.trained_mean, ls="--", c="gray", label="trained on the task")
        ax.set_xlabel("fine-tuning steps")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"held-out: {h.task}", fontsize=9)
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
        "each), every one registered with its dataset and test accuracy. Task names read "
        "`SOURCE[-STEP]...` (`mnist-rot60-invert`: MNIST rotated 60 degrees, then inverted; `c86420`: those "
        "classes, relabelled 0.. in that order):",
        "",
        ", ".join(f"`{t}`" for t in tasks),
        "",
        "Held-out tasks (no checkpoint, no generator training and no setting ever touched them):",
        "",
        *[f"- `{h.task}`: {Task.parse(h.task).description}" for h in held],
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
        "Zero-shot test accuracy. Every best-of-n (generated samples, noise draws, the 10 nearest "
        "checkpoints) is chosen on the same 100 labelled training images; nothing is chosen on the test "
        "split. Baselines: the checkpoint nearest by dataset embedding; it plus Gaussian noise at the "
        "generated samples' own distance (best of n draws); the average of the 5 nearest after weight "
        "matching; the best of the 10 nearest. The generator conditions on the task's embedding and makes "
        "each sample's classifier from the task's per-class examples (`igpg.heads`); the two columns after "
        "it are ablations: the samples with their decoded classifiers, and the best retrieved checkpoint "
        "given the same class head. Distance: each sample's relative L2 distance to its nearest training "
        "checkpoint.",
        "",
        "| task | trained on it | generated best-of-n | decoded classifier | retrieved + class head | "
        "best retrieved | aligned average | nearest + noise | nearest | random | generated / trained | "
        "distances | steps to trained accuracy (generated / retrieved / random) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in held:
        st = h.steps_to_trained()
        lines.append(
            f"| {h.task} | {h.trained_mean:.3f} | **{h.generated_best:.3f}** | "
            f"{h.generated_plain_best:.3f} | "
            f"{h.retrieved_head:.3f} | {h.retrieved:.3f} | {h.average:.3f} | {h.noise:.3f} | "
            f"{h.nearest:.3f} | {h.random_init:.3f} | {h.generated_best / h.trained_mean:.3f} | "
            f"{', '.join(f'{d:.2f}' for d in h.distance)} | {st.get('generated')} / {st.get('retrieved')} / "
            f"{st.get('random')} |"
        )
    if held:
        ratio = statistics.mean(h.generated_best / h.trained_mean for h in held)
        beats = sum(h.generated_best >= h.retrieved for h in held)
        above = sum(all(h.generated_best > h.baselines[b] for b in ("noise", "average")) for h in held)
        lines += [
            "",
            f"Generated best-of-{c.samples} reaches **{ratio:.2f}** of the accuracy of networks trained on "
            f"the task on average (target 0.80); it is at least the best retrieved checkpoint on "
            f"**{beats} of {len(held)}** tasks (target 2/3) and above both the noise and the averaging "
            f"baseline on **{above} of {len(held)}** (target: all). One generator seed; "
            "`bench/bench_generalisation.py` measures the spread over seeds.",
        ]
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


__all__ = ["DemoConfig", "check_tasks", "fast_generator_config", "run_demo"]
