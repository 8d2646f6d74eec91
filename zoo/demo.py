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

from zoo.registry import Registry

log = logging.getLogger(__name__)


def digits_28(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 real 8x8 digits, upsampled to 1x28x28 in [0, 1]; a fixed 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    x = F.interpolate(x, size=28, mode="bilinear", align_corners=False)  # (N, 1, 28, 28)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(y))
    tr, te = perm[:cut], perm[cut:]
    return x[tr], y[tr], x[te], y[te]


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def train_classifier(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int,
                     lr: float = 3e-3, batch_size: int = 64) -> torch.nn.Module:
    """Plain Adam training; deterministic for a given seed."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def _shared_pretrained() -> Path | None:
    env = os.environ.get("ZOO_SHARED_DATA")
    here = Path(__file__).resolve().parents[1]
    for cand in ([Path(env)] if env else []) + [here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]:
        if (cand / "pretrained").is_dir():
            return cand / "pretrained"
    return None


def run_demo(out: str | os.PathLike[str], *, seeds: int = 4, epochs: int = 15) -> Path:
    """Run the main job into folder ``out``; returns the report's path."""
    import zoo

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    reg = Registry(out / "registry.db")
    spec = zoo.resolve_arch("cnn-tiny")
    xtr, ytr, xte, yte = digits_28()
    rows: list[tuple[str, str, float, float, bool]] = []
    for seed in tqdm(range(seeds), desc="train cnn-tiny on digits", unit="seed"):
        torch.manual_seed(seed)
        model = train_classifier(zoo.get_family("cnn").build(spec), xtr, ytr, epochs=epochs, seed=seed)
        acc = accuracy(model, xte, yte)
        rec = reg.add(model, name=f"digits-cnn-tiny-s{seed}", arch=spec, dataset="digits",
                      metrics={"accuracy": acc}, tags=["demo", "digits"], origin="trained", exist_ok=True)
        loaded = reg.load(rec)
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
        rows.append((rec.ref, rec.arch.name, acc, accuracy(loaded, xte, yte), same))
    pre = _shared_pretrained()
    imported: list[tuple[str, int, float, bool]] = []
    if pre is not None:
        for f in tqdm(sorted(pre.glob("resnet*.th")), desc="import pretrained ResNets", unit="file"):
            raw = torch.load(f, weights_only=True, map_location="cpu")
            rec = reg.add(f, dataset="cifar10", metrics={"top1": float(raw["best_prec1"])}, tags=["pretrained"],
                          exist_ok=True)
            sd = reg.load(rec).state_dict()
            same = all(torch.equal(sd[k.removeprefix("module.")], v) for k, v in raw["state_dict"].items())
            imported.append((rec.ref, rec.num_params, float(raw["best_prec1"]), same))
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
        "## Tiny zoo CNN on scikit-learn digits (8x8 upsampled to 28x28, 80/20 split)",
        "",
        "| checkpoint | arch | test accuracy (trained) | test accuracy (loaded back) | bitwise equal |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {r} | {a} | {acc:.4f} | {lacc:.4f} | {same} |" for r, a, acc, lacc, same in rows],
        "",
        f"Mean accuracy {np.mean([r[2] for r in rows]):.4f}; `{best_rec.name}@best` -> {best_rec.ref}.",
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
    lines += ["", "## Integrity", "",
              f"`verify`: {report.checked} blobs hashed, {report.ok} ok, {len(report.missing)} missing, "
              f"{len(report.corrupt)} corrupt, {len(report.orphan_files)} orphan files.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    log.info("report written to %s", path)
    reg.close()
    return path
