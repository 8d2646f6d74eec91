"""The main job on the embedded default: a small real zoo, end to end, with a written report.

Today it trains the standard tiny zoo CNN on scikit-learn's bundled digits (a few seeds), registers the
checkpoints with their measured accuracy, imports the real pretrained CIFAR ResNets when ``../shared/data``
(or ``$ZOO_SHARED_DATA``) holds them, loads everything back through the registry (hash-verified), checks that
the loaded weights are bitwise the ones added and that accuracy is unchanged, runs ``verify``, and writes
``report.md``. It grows into the full retrieve-or-generate evaluation as the generator lands.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from zoo.datasets import ImageDataset, load_digits, rotate
from zoo.registry import Registry
from zoo.shared_data import shared_data_dir
from zoo.training import accuracy, train

log = logging.getLogger(__name__)


def digits_28(seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """scikit-learn's 1,797 real 8x8 digits, upsampled to 1x28x28; a stratified 80/20 split."""
    d = load_digits().map_images(lambda x: F.interpolate(x, size=28, mode="bilinear", align_corners=False))
    return d.split(0.8, seed=seed)


def run_demo(out: str | os.PathLike[str], *, seeds: int = 4, epochs: int = 15) -> Path:
    """Run the main job into folder ``out``; returns the report's path."""
    import zoo

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    reg = Registry(out / "registry.db")
    spec = zoo.resolve_arch("cnn-tiny")
    train_set, test_set = digits_28()
    tasks = {"digits": (train_set, test_set), "digits-rot90": (rotate(train_set, 90), rotate(test_set, 90))}
    rows: list[tuple[str, str, str, float, float, bool]] = []
    jobs = [(task, seed) for task in tasks for seed in range(seeds if task == "digits" else max(1, seeds // 2))]
    for task, seed in tqdm(jobs, desc="train cnn-tiny zoo", unit="net"):
        (tr, te) = tasks[task]
        torch.manual_seed(seed)
        model = train(zoo.get_family("cnn").build(spec), tr.images, tr.labels, epochs=epochs, seed=seed, lr=2e-3)
        acc = accuracy(model, te.images, te.labels)
        rec = reg.add(model, name=f"{task}-cnn-tiny-s{seed}", arch=spec, dataset=task,
                      metrics={"accuracy": acc}, tags=["demo", task], origin="trained", exist_ok=True)
        loaded = reg.load(rec)
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
        rows.append((rec.ref, task, rec.arch.name, acc, accuracy(loaded, te.images, te.labels), same))
    pre = shared_data_dir("pretrained")
    imported: list[tuple[str, int, float, bool]] = []
    if pre is not None:
        for f in tqdm(sorted(pre.glob("resnet*.th")), desc="import pretrained ResNets", unit="file"):
            raw = torch.load(f, weights_only=True, map_location="cpu")
            rec = reg.add(f, dataset="cifar10", metrics={"top1": float(raw["best_prec1"])}, tags=["pretrained"],
                          exist_ok=True)
            sd = reg.load(rec).state_dict()
            same = all(torch.equal(sd[k.removeprefix("module.")], v) for k, v in raw["state_dict"].items())
            imported.append((rec.ref, rec.num_params, float(raw["best_prec1"]), same))
    for task, (tr, _) in tasks.items():
        reg.register_dataset(task, tr, description=f"{task}: scikit-learn digits at 28x28, training split")
    retrieval = [(f"{task} test split", reg.nearest(spec, te, k=1)) for task, (_, te) in tasks.items()]
    best = reg.search(dataset="digits", metrics=["accuracy>=0.0"])
    best_rec = max(best, key=lambda r: r.metrics["accuracy"])
    reg.alias(best_rec.id, "best")
    report = reg.verify()
    elapsed = time.perf_counter() - t0
    lines = [
        "# zoo main job report",
        "",
        f"Registry: `{reg.url}` ({reg.stats()['checkpoints']} checkpoints, blobs in `{reg.blobs.root}`). "
        f"Run time {elapsed:.1f} s on {os.cpu_count()} CPU core(s), torch {torch.__version__}.",
        "",
        "## Tiny zoo CNN on scikit-learn digits (8x8 upsampled to 28x28, stratified 80/20 split)",
        "",
        "| checkpoint | task | arch | test accuracy (trained) | test accuracy (loaded back) | bitwise equal |",
        "| --- | --- | --- | --- | --- | --- |",
        *[f"| {r} | {t} | {a} | {acc:.4f} | {lacc:.4f} | {same} |" for r, t, a, acc, lacc, same in rows],
        "",
        f"Mean accuracy {np.mean([r[3] for r in rows]):.4f}; `{best_rec.name}@best` -> {best_rec.ref}.",
        "",
        "## Real pretrained CIFAR-10 ResNets",
        "",
    ]
    if imported:
        lines += ["| checkpoint | params | reported top-1 | loaded bitwise equal to the original file |",
                  "| --- | --- | --- | --- |",
                  *[f"| {r} | {n:,} | {top1:.2f} | {same} |" for r, n, top1, same in imported]]
    else:
        lines.append("Not run: `../shared/data/pretrained` is not present (set ZOO_SHARED_DATA).")
    lines += ["", "## Retrieval (offline dataset encoder)", "",
              "| query | nearest checkpoint | its dataset | similarity |", "| --- | --- | --- | --- |",
              *[f"| {q} | {h[0].checkpoint.ref if h else '-'} | {h[0].dataset if h else '-'} | "
                f"{h[0].similarity:.4f} |" if h else f"| {q} | - | - | - |" for q, h in retrieval]]
    lines += ["", "## Integrity", "",
              f"`verify`: {report.checked} blobs hashed, {report.ok} ok, {len(report.missing)} missing, "
              f"{len(report.corrupt)} corrupt, {len(report.orphan_files)} orphan files.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    log.info("report written to %s", path)
    reg.close()
    return path
