"""Task retrieval per dataset encoder: do the vectors tell label orders and class subsets apart?

Task set (built here with zoo.datasets, nothing else): bases scikit-learn digits resized to 28x28 and, when
present, the MNIST test set (``zoo_demo.tinyzoo.mnist_dir()``); each as is, rotated 15, 30, 90 and 180
degrees, inverted, mirrored; each of those with 10 class selections: all ten classes in order, two full
10-class permutations, and subsets of 3 and 5 classes in several orders (c012, c210, c01234, c43210, c56789,
c02468, c86420). Every task is split 0.8/0.2 (stratified, seed 0): the 80% part is registered (its vector
stored), the 20% part is the query. A query is right when its nearest registered vector (cosine, exact
search: what ``zoo.embeddings.nearest`` does below 5,000 vectors) is its own task's.

Reported per encoder: top-1 over all tasks (and with queries of only 5 images per class); the similarity of
a query to its own task (mean, min) and to the best wrong task; **permuted twins** (the same images under
another label order: c01234/c43210, c02468/c86420, c012/c210, all ten classes against each permutation):
the cosine between the twins' registered vectors, and the margin to the same task's other split; the cost
per dataset (ms to embed a registered part, median) and the dimension. ``pixels@1`` is the encoder before
issue 16, reproduced here (its label-ordered block and weight) for comparison; ``--sweep`` adds ``pixels``
with other weights of its label-ordered block; ``probe`` is also measured with 128 images per class.

    python bench/bench_task_retrieval.py [--digits-only] [--out bench/results/task_retrieval.json]
    python bench/bench_task_retrieval.py --task-set generalisation \
        --out bench/results/task_retrieval_generalisation.json   # the generator's zoo and held-out tasks
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import emit, machine  # noqa: E402

from zoo.datasets import ImageDataset, invert, load_digits, load_mnist, mirror, rotate  # noqa: E402
from zoo.encoders import offline  # noqa: E402
from zoo.encoders.base import DatasetEncoder  # noqa: E402
from zoo.encoders.offline import PixelStatsEncoder  # noqa: E402
from zoo.encoders.probe import ProbeEncoder  # noqa: E402

log = logging.getLogger("bench_task_retrieval")

SELECTIONS: dict[str, list[int]] = {  # name -> classes, relabelled 0..k-1 in this order
    "all": list(range(10)),
    "p10a": [3, 1, 4, 0, 5, 9, 2, 6, 8, 7],
    "p10b": list(range(9, -1, -1)),
    "c012": [0, 1, 2],
    "c210": [2, 1, 0],
    "c01234": [0, 1, 2, 3, 4],
    "c43210": [4, 3, 2, 1, 0],
    "c56789": [5, 6, 7, 8, 9],
    "c02468": [0, 2, 4, 6, 8],
    "c86420": [8, 6, 4, 2, 0],
}
TWINS = [("c01234", "c43210"), ("c02468", "c86420"), ("c012", "c210"), ("all", "p10a"), ("all", "p10b")]
TRANSFORMS = {
    "": lambda d: d,
    "-rot15": lambda d: rotate(d, 15),
    "-rot30": lambda d: rotate(d, 30),
    "-rot90": lambda d: rotate(d, 90),
    "-rot180": lambda d: rotate(d, 180),
    "-inv": invert,
    "-mirror": mirror,
}


class PixelsV1(PixelStatsEncoder):
    """``pixels`` version 1 (before issue 16): the 4x4 class-mean images in label order, uncentred, from
    the same 32 images per class as the other blocks, weight 1."""

    id = "pixels@1"
    version = "1"
    weights = {**offline.WEIGHTS, "ordered": 1.0}

    @property
    def dim(self) -> int:
        return 507

    def ordered_block(self, class_vectors: torch.Tensor, dataset: ImageDataset) -> torch.Tensor:
        ordered = torch.zeros(16, 16)
        small = F.adaptive_avg_pool2d(class_vectors[:, :64].reshape(-1, 1, 8, 8), 4).flatten(1)  # (K, 16)
        ordered[: min(dataset.num_classes, 16)] = small[:16]
        return ordered.flatten()


def build_tasks(digits_only: bool) -> dict[str, tuple[ImageDataset, ImageDataset]]:
    bases = {"digits": load_digits().resize(28)}
    if not digits_only:
        from zoo_demo.tinyzoo import mnist_dir

        where = mnist_dir()
        if where is not None:
            bases["mnist"] = load_mnist(where)
        else:
            log.warning("MNIST not found (zoo_demo.tinyzoo.mnist_dir()): digits tasks only")
    tasks: dict[str, tuple[ImageDataset, ImageDataset]] = {}
    for base, ds in bases.items():
        for tname, fn in TRANSFORMS.items():
            shown = fn(ds)
            for sname, classes in SELECTIONS.items():
                task = shown.select_classes(classes)
                tasks[f"{base}{tname}-{sname}"] = task.split(0.8, seed=0)
    return tasks


def few(ds: ImageDataset, per_class: int) -> ImageDataset:
    return ds.subset(torch.cat(ds.sample_per_class(per_class, seed=7)))


def measure(enc: DatasetEncoder, tasks: dict[str, tuple[ImageDataset, ImageDataset]]) -> dict[str, Any]:
    names = list(tasks)
    reg, ms = [], []
    for name in names:
        t0 = time.perf_counter()
        reg.append(enc.embed(tasks[name][0]))
        ms.append((time.perf_counter() - t0) * 1e3)
    R = np.stack(reg)  # (T, D)
    Q = np.stack([enc.embed(tasks[n][1]) for n in names])
    Q5 = np.stack([enc.embed(few(tasks[n][1], 5)) for n in names])
    S, S5 = Q @ R.T, Q5 @ R.T  # (T, T): query i against registered j
    T = len(names)
    same = np.diag(S)
    off = np.where(np.eye(T, dtype=bool), -np.inf, S)  # query i against every other task
    wrong = off.max(1)
    worst = int(wrong.argmax())
    top1 = S.argmax(1) == np.arange(T)
    top1_5 = S5.argmax(1) == np.arange(T)
    misses = [f"{names[i]} -> {names[int(S[i].argmax())]}" for i in range(T) if not top1[i]]
    misses5 = [f"{names[i]} -> {names[int(S5[i].argmax())]}" for i in range(T) if not top1_5[i]]
    idx = {n: i for i, n in enumerate(names)}
    twin_cos, twin_margin = [], []
    for base in sorted({n.split("-")[0] for n in names}):
        for tname in TRANSFORMS:
            for a, b in TWINS:
                if f"{base}{tname}-{a}" not in idx or f"{base}{tname}-{b}" not in idx:
                    continue  # another task set (--task-set generalisation): twins are not defined
                i, j = idx[f"{base}{tname}-{a}"], idx[f"{base}{tname}-{b}"]
                c = float(R[i] @ R[j])
                twin_cos.append(c)
                twin_margin.append(min(same[i], same[j]) - c)
    return {
        "dim": int(R.shape[1]),
        "top1": round(float(top1.mean()), 4),
        "top1_right": f"{int(top1.sum())}/{T}",
        "top1_query_5_per_class": round(float(top1_5.mean()), 4),
        "same_task_cos_mean": round(float(same.mean()), 4),
        "same_task_cos_min": round(float(same.min()), 4),
        "same_task_cos_min_query_5_per_class": round(float(np.diag(S5).min()), 4),
        "best_wrong_cos_mean": round(float(wrong.mean()), 4),
        "best_wrong_cos_max": round(float(wrong.max()), 4),
        "closest_wrong_pair": f"{names[worst]} ~ {names[int(off[worst].argmax())]}",
        "smallest_margin": round(float((same - wrong).min()), 4),
        "permuted_twin_cos_mean": round(float(np.mean(twin_cos)), 4) if twin_cos else None,
        "permuted_twin_cos_max": round(float(np.max(twin_cos)), 4) if twin_cos else None,
        "permuted_twin_margin_min": round(float(np.min(twin_margin)), 4) if twin_cos else None,
        "ms_per_dataset_median": round(float(np.median(ms)), 1),
        "ms_per_dataset_max": round(float(np.max(ms)), 1),
        "misses": misses,
        "misses_query_5_per_class": misses5,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digits-only", action="store_true", help="leave MNIST out even when present")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument(
        "--task-set",
        choices=["twins", "generalisation"],
        default="twins",
        help="twins: the 140 tasks above; generalisation: the generalisation split's tasks (train, near and "
        "far, zoo_demo.tinyzoo.generalisation_split), each task's registered training split against its test "
        "split, as the generator's zoo has them",
    )
    ap.add_argument(
        "--sweep", type=float, nargs="*", default=[0.75, 1.0, 1.5, 2.0], help="pixels ordered weights"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result: dict[str, Any] = {"machine": machine()}
    t0 = time.perf_counter()
    if args.task_set == "generalisation":
        from zoo_demo.tinyzoo import generalisation_split, task_data

        train, near, far = generalisation_split()
        tasks = {name: task_data(name) for name in train + near + far}
        args.sweep = []
    else:
        tasks = build_tasks(args.digits_only)
    result["tasks"] = {
        "count": len(tasks),
        "names": list(tasks),
        "build_s": round(time.perf_counter() - t0, 1),
        "set": args.task_set,
        "split": "stratified 0.8/0.2, seed 0: the 80% part registered, the 20% part queried",
        "twins": [f"{a}/{b}" for a, b in TWINS],
    }
    probe128 = ProbeEncoder(per_class=128)
    probe128.id = "probe@1 per_class=128"
    encoders: list[DatasetEncoder] = [PixelsV1(), PixelStatsEncoder(), ProbeEncoder(), probe128]
    for w in args.sweep:
        enc = PixelStatsEncoder()
        enc.weights = {**offline.WEIGHTS, "ordered": w}
        enc.id = f"pixels@{enc.version} ordered weight {w}"
        encoders.append(enc)
    result["encoders"] = {}
    for enc in encoders:
        key = enc.id if "@" in enc.id else f"{enc.id}@{enc.version}"
        t0 = time.perf_counter()
        result["encoders"][key] = measure(enc, tasks)
        log.info("%s: %s (%.1f s)", key, result["encoders"][key], time.perf_counter() - t0)
    emit(result, args.out)


if __name__ == "__main__":
    main()
