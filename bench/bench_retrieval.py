"""Dataset retrieval: quality per encoder, nearest-neighbour latency/recall at scale, encoder throughput.

Sections (``--sections``, default all):

quality     Distinct tasks from real data (MNIST test set from ../shared/data when present, and
            scikit-learn's digits): rotations, inversion, class subsets, permuted labels. Each task is
            split 70/30; the 70% part is registered as the task's dataset and two briefly trained cnn-tiny
            checkpoints are added for it. Queries are fresh samples of the 30% part (five different
            stratified halves); a query counts as correct when the top-1 checkpoint of
            ``zoo.embeddings.nearest`` was trained on the query's task. Reported per encoder: top-1
            accuracy, the mean similarity to the right task, to the best wrong task, and the smallest margin.
index       Synthetic unit vectors (a Gaussian mixture, 50 points per cluster, dimension of the ``pixels``
            encoder) at 1k/10k/100k/1M: single-query latency p50/p99 of exact search (NumPy) and of the
            usearch HNSW index, and the index's recall@10 against exact search; build time and memory.
e2e         ``zoo.embeddings.nearest`` end to end on a SQLite registry holding N datasets with a vector and
            a cnn-tiny checkpoint each (rows bulk-inserted), N = 1k/10k/100k: latency and recall@10.
throughput  Images per second through each dataset encoder's image path on CPU, and texts per second
            through the text encoder.

Prints JSON; ``--out FILE`` also writes it, merging with the sections already in FILE.

    python bench/bench_retrieval.py [--sections quality,index,e2e,throughput]
                                    [--sizes 1000,10000,100000,1000000] [--out bench/results/retrieval.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import machine  # noqa: E402

import zoo  # noqa: E402
import zoo.embeddings as E  # noqa: E402
from zoo.datasets import ImageDataset, find_mnist, invert, load_digits, load_mnist, rotate  # noqa: E402
from zoo.encoders.clip import SMALL_TEST_CONFIG, ClipDatasetEncoder  # noqa: E402
from zoo.encoders.offline import PixelStatsEncoder  # noqa: E402
from zoo.index import HNSW_CONNECTIVITY, HNSW_EXPANSION_ADD, ExactIndex, USearchIndex  # noqa: E402

log = logging.getLogger("bench_retrieval")


def ensure_encoders() -> None:
    """The built-in encoder plugin, registered here if the plugin manager does not load it (yet)."""
    import zoo.encoders.builtin as builtin
    from zoo.plugins import get_plugin_manager, register_plugin

    if not get_plugin_manager().is_registered(builtin):
        register_plugin(builtin, name="encoders")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


# ----------------------------------------------------------------------------------------------------
# quality
# ----------------------------------------------------------------------------------------------------
def build_tasks() -> dict[str, tuple[ImageDataset, ImageDataset]]:
    bases: dict[str, ImageDataset] = {"digits": load_digits()}
    mnist_dir = REPO.parent / "shared" / "data" / "mnist"
    if os.environ.get("ZOO_SHARED_DATA"):
        mnist_dir = Path(os.environ["ZOO_SHARED_DATA"]) / "mnist"
    if find_mnist(mnist_dir) is not None:
        bases["mnist"] = load_mnist(mnist_dir)
    else:
        log.warning("MNIST files not found in %s: quality uses digits tasks only", mnist_dir)
    tasks: dict[str, tuple[ImageDataset, ImageDataset]] = {}
    for base, ds in bases.items():
        tr, te = ds.split(0.7, seed=1)
        tasks[base] = (tr, te)
        tasks[f"{base}-rot90"] = (rotate(tr, 90), rotate(te, 90))
        tasks[f"{base}-inverted"] = (invert(tr), invert(te))
        tasks[f"{base}-0to4"] = (tr.select_classes(range(5)), te.select_classes(range(5)))
        tasks[f"{base}-5to9"] = (tr.select_classes(range(5, 10)), te.select_classes(range(5, 10)))
        if base == "mnist":
            tasks["mnist-rot45"] = (rotate(tr, 45), rotate(te, 45))
            tasks["mnist-even"] = (tr.select_classes([0, 2, 4, 6, 8]), te.select_classes([0, 2, 4, 6, 8]))
            perm = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
            tasks["mnist-permuted-labels"] = (tr.select_classes(perm), te.select_classes(perm))
    return tasks


def train_brief(ds: ImageDataset, seed: int, steps: int = 60) -> tuple[torch.nn.Module, float]:
    """A cnn-tiny trained for a few SGD steps on ``ds`` (images resized to 28x28); its training accuracy."""
    spec = zoo.resolve_arch("cnn-tiny", num_classes=10)
    torch.manual_seed(seed)
    model = zoo.get_family("cnn").build(spec)
    x = torch.nn.functional.interpolate(ds.images, size=(28, 28), mode="bilinear", align_corners=False)
    y = ds.labels
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (128,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((model(x[:2000]).argmax(1) == y[:2000]).float().mean())
    return model.eval(), acc


def section_quality(rounds: int = 5) -> dict[str, Any]:
    tasks = build_tasks()
    encoders = {
        "pixels": PixelStatsEncoder(),
        "clip-small-random": ClipDatasetEncoder(SMALL_TEST_CONFIG, random_init=True, id="clip-small-random"),
    }
    out: dict[str, Any] = {
        "tasks": list(tasks),
        "rounds": rounds,
        "checkpoints_per_task": 2,
        "note": "query = a stratified half of the task's held-out 30%, drawn anew each round; "
        "clip-small-random is an untrained 160k-parameter CLIP (no pretrained "
        "weights exist on this machine), so its numbers say nothing about real CLIP",
    }
    with tempfile.TemporaryDirectory() as tmp:
        reg = zoo.Registry(Path(tmp) / "registry.db")
        t0 = time.perf_counter()
        for name, (train, _) in tasks.items():
            E.register_dataset(reg, name, train, encoders=list(encoders.values()))
        out["register_s"] = round(time.perf_counter() - t0, 2)
        spec = zoo.resolve_arch("cnn-tiny", num_classes=10)
        accs = []
        for i, (name, (train, _)) in enumerate(tasks.items()):
            for j in range(2):
                model, acc = train_brief(train, seed=10 * i + j)
                accs.append(acc)
                reg.add(
                    model, name=f"cnn-tiny-{name}", arch=spec, dataset=name, metrics={"train_accuracy": acc}
                )
        out["checkpoint_train_accuracy_mean"] = round(float(np.mean(accs)), 3)
        for enc_name, enc in encoders.items():
            correct, n = 0, 0
            right, wrong, margins = [], [], []
            per_task: dict[str, int] = {name: 0 for name in tasks}
            misses: list[str] = []
            t_query = []
            for r in range(rounds):
                for name, (_, held) in tasks.items():
                    query = held.split(0.5, seed=100 + r)[0]
                    t = time.perf_counter()
                    got = E.nearest(reg, "cnn-tiny", query, k=len(tasks) * 2, encoder=enc)
                    t_query.append(time.perf_counter() - t)
                    best: dict[str, float] = {}
                    for nb in got:
                        best.setdefault(nb.dataset, nb.dataset_similarity)
                    ok = got[0].dataset == name
                    correct += ok
                    per_task[name] += ok
                    n += 1
                    if not ok:
                        misses.append(f"{name}->{got[0].dataset}")
                    other = max(v for k, v in best.items() if k != name)
                    right.append(best.get(name, float("nan")))
                    wrong.append(other)
                    margins.append(best.get(name, -1.0) - other)
            out[enc_name] = {
                "encoder_version": enc.version,
                "dim": enc.dim,
                "top1_accuracy": round(correct / n, 4),
                "queries": n,
                "per_task_correct": per_task,
                "misses": misses,
                "similarity_right_task_mean": round(float(np.mean(right)), 4),
                "similarity_best_wrong_task_mean": round(float(np.mean(wrong)), 4),
                "margin_min": round(float(np.min(margins)), 4),
                "margin_mean": round(float(np.mean(margins)), 4),
                "query_s_p50 (embed + search)": round(pct(t_query, 50), 3),
            }
            log.info("quality %s: top-1 %.3f", enc_name, correct / n)
        reg.close()
    return out


# ----------------------------------------------------------------------------------------------------
# index
# ----------------------------------------------------------------------------------------------------
def mixture(n: int, dim: int, seed: int, centers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors around cluster centres (50 per cluster): (vectors, centres)."""
    rng = np.random.default_rng(seed)
    if centers is None:
        centers = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        noise = rng.standard_normal((m, dim)).astype(np.float32)
        noise *= 0.6 / np.sqrt(dim)
        x = centers[rng.integers(0, len(centers), m)] + noise
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, centers


def exact_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    keys = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), 50):
        sims = q[s : s + 50] @ x.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1)
        keys[s : s + 50] = np.take_along_axis(part, order, 1)
    return keys


def section_index(
    sizes: list[int],
    dim: int,
    n_queries: int = 200,
    efs: tuple[int, ...] = (32, 64, 128),
    dtypes: tuple[str, ...] = ("f32",),
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dim": dim,
        "queries": n_queries,
        "k": 10,
        "data": "Gaussian mixture, 50 per cluster, noise norm 0.6 of the centre's",
        "hnsw": {"connectivity": HNSW_CONNECTIVITY, "expansion_add": HNSW_EXPANSION_ADD},
    }
    for n in sizes:
        t = time.perf_counter()
        x, centers = mixture(n, dim, seed=n)
        q, _ = mixture(n_queries, dim, seed=n + 1, centers=centers)
        gen_s = time.perf_counter() - t
        truth = exact_topk(x, q, 10)
        exact = ExactIndex(np.arange(n), x)
        lat = []
        for i in range(min(n_queries, 50 if n >= 1_000_000 else n_queries)):
            t = time.perf_counter()
            exact.search(q[i], 10)
            lat.append((time.perf_counter() - t) * 1e3)
        row: dict[str, Any] = {
            "generate_s": round(gen_s, 1),
            "exact": {"p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3)},
        }
        for dtype in dtypes:
            t = time.perf_counter()
            ann = USearchIndex.build(np.arange(n), x, dtype=dtype)
            build_s = time.perf_counter() - t
            res: dict[str, Any] = {
                "build_s": round(build_s, 1),
                "build_vectors_per_s": round(n / build_s),
                "memory_mb": round(ann._index.memory_usage / 2**20, 1),
            }  # type: ignore[attr-defined]
            for ef in efs:
                ann.expansion_search = ef
                lat = []
                found = np.empty((n_queries, 10), dtype=np.int64)
                for i in range(n_queries):
                    t = time.perf_counter()
                    hits = ann.search(q[i], 10)
                    lat.append((time.perf_counter() - t) * 1e3)
                    found[i] = hits.keys
                recall = float(np.mean([len(set(found[i]) & set(truth[i])) / 10 for i in range(n_queries)]))
                res[f"ef{ef}"] = {
                    "p50_ms": round(pct(lat, 50), 3),
                    "p99_ms": round(pct(lat, 99), 3),
                    "recall@10": round(recall, 4),
                }
            row[f"usearch_{dtype}"] = res
            del ann
        out[str(n)] = row
        log.info("index n=%d: %s", n, json.dumps(row))
        del x, exact
    return out


# ----------------------------------------------------------------------------------------------------
# end to end
# ----------------------------------------------------------------------------------------------------
def bulk_registry(
    root: Path, n: int, dim: int, enc_id: str, enc_version: str
) -> tuple[zoo.Registry, np.ndarray]:
    """A registry with ``n`` datasets, one vector and one cnn-tiny checkpoint each (rows bulk-inserted)."""
    from sqlalchemy import insert, select

    from zoo.store import models as m

    reg = zoo.Registry(root / "registry.db")
    spec = zoo.resolve_arch("cnn-tiny")
    torch.manual_seed(0)
    first = reg.add(zoo.get_family("cnn").build(spec), name="seed-model", arch=spec)
    x, centers = mixture(n, dim, seed=7)
    with reg.db.read() as s:
        proto = s.scalars(select(m.Checkpoint).where(m.Checkpoint.id == first.id)).one()
        cols = {
            c: getattr(proto, c)
            for c in (
                "family",
                "arch_name",
                "arch_key",
                "arch_json",
                "arch_text",
                "sha256",
                "num_params",
                "size_bytes",
                "origin",
            )
        }
    step = 20_000
    for s0 in range(0, n, step):
        idx = range(s0, min(n, s0 + step))
        with reg.db.write() as s:
            s.execute(
                insert(m.Dataset),
                [
                    {
                        "id": i + 1,
                        "name": f"ds-{i}",
                        "description": "",
                        "num_classes": 10,
                        "num_samples": 100,
                        "fingerprint": f"{i:064x}",
                        "meta": {},
                    }
                    for i in idx
                ],
            )
            s.execute(
                insert(m.Embedding),
                [
                    {
                        "subject": "dataset",
                        "subject_key": f"ds-{i}",
                        "encoder_id": enc_id,
                        "encoder_version": enc_version,
                        "source_fingerprint": f"{i:064x}",
                        "dim": dim,
                        "vector": x[i].astype("<f4").tobytes(),
                    }
                    for i in idx
                ],
            )
            s.execute(
                insert(m.Checkpoint),
                [{**cols, "name": f"model-{i}", "version": 1, "dataset_id": i + 1, "meta": {}} for i in idx],
            )
    return reg, centers


def section_e2e(sizes: list[int], n_queries: int = 100) -> dict[str, Any]:
    enc = PixelStatsEncoder()
    out: dict[str, Any] = {
        "k": 10,
        "queries": n_queries,
        "encoder": enc.id,
        "dim": enc.dim,
        "note": "nearest(registry, 'cnn-tiny', query_vector, k=10): index search, SQL lookup of "
        "the datasets' compatible checkpoints, CheckpointRecords for the k results",
    }
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            reg, centers = bulk_registry(Path(tmp), n, enc.dim, enc.id, enc.version)
            fill_s = time.perf_counter() - t
            q, _ = mixture(n_queries, enc.dim, seed=99, centers=centers)
            t = time.perf_counter()
            E.nearest(
                reg, "cnn-tiny", q[0], k=10, encoder=enc
            )  # first call: loads the table / builds the index
            first_s = time.perf_counter() - t
            row: dict[str, Any] = {
                "fill_s": round(fill_s, 1),
                "first_query_s (load/build)": round(first_s, 2),
            }
            lat, recalls, method = [], [], ""
            for i in range(n_queries):
                t = time.perf_counter()
                got = E.nearest(reg, "cnn-tiny", q[i], k=10, encoder=enc)
                lat.append((time.perf_counter() - t) * 1e3)
                method = got[0].method
                truth = E.nearest(reg, "cnn-tiny", q[i], k=10, encoder=enc, method="exact")
                recalls.append(len({g.checkpoint.id for g in got} & {g.checkpoint.id for g in truth}) / 10)
            row.update(
                {
                    "method": method,
                    "p50_ms": round(pct(lat, 50), 2),
                    "p99_ms": round(pct(lat, 99), 2),
                    "recall@10": round(float(np.mean(recalls)), 4),
                }
            )
            out[str(n)] = row
            log.info("e2e n=%d: %s", n, row)
            reg.close()
    return out


# ----------------------------------------------------------------------------------------------------
# throughput
# ----------------------------------------------------------------------------------------------------
def section_throughput(seconds: float = 4.0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mn = torch.rand(512, 1, 28, 28)
    cases = [
        ("pixels", PixelStatsEncoder(), mn, 512),
        (
            "clip-small-random (32px, 160k params)",
            ClipDatasetEncoder(SMALL_TEST_CONFIG, random_init=True),
            mn,
            64,
        ),
        (
            "clip ViT-B-32 (224px, random init: same compute as pretrained)",
            ClipDatasetEncoder("ViT-B-32", random_init=True),
            mn[:32],
            32,
        ),
    ]
    for name, enc, images, batch in cases:
        with torch.inference_mode():
            enc.embed_images(images[:batch])  # warm up (and load)
            done, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                enc.embed_images(images[:batch])
                done += batch
        out[name] = {"images_per_s": round(done / (time.perf_counter() - t0), 1), "batch": batch}
        log.info("throughput %s: %s", name, out[name])
    ensure_encoders()
    text = zoo.get_family("cnn").describe(zoo.resolve_arch("cnn-tiny"))
    tenc = E.get_text_encoder("minilm")
    tenc.embed([text])
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        tenc.embed([text] * 32)
        done += 32
    out["text minilm (architecture descriptions)"] = {
        "texts_per_s": round(done / (time.perf_counter() - t0), 1),
        "batch": 32,
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="quality,index,e2e,throughput")
    ap.add_argument("--sizes", default="1000,10000,100000,1000000", help="index section sizes")
    ap.add_argument("--e2e-sizes", default="1000,10000,100000")
    ap.add_argument("--dtypes", default="f16")
    ap.add_argument("--efs", default="32,64,128", help="HNSW expansion_search values measured")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ensure_encoders()
    result: dict[str, Any] = {"machine": machine()}
    sections = args.sections.split(",")
    if "quality" in sections:
        result["quality"] = section_quality()
    if "index" in sections:
        result["index"] = section_index(
            [int(s) for s in args.sizes.split(",")],
            PixelStatsEncoder().dim,
            dtypes=tuple(args.dtypes.split(",")),
            efs=tuple(int(e) for e in args.efs.split(",")),
        )
    if "e2e" in sections:
        result["e2e"] = section_e2e([int(s) for s in args.e2e_sizes.split(",")])
    if "throughput" in sections:
        result["throughput"] = section_throughput()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        merged = json.loads(args.out.read_text()) if args.out.is_file() else {}
        for key, value in result.items():
            if key == "machine":
                merged.setdefault("machine_by_section", {}).update({s: value for s in sections})
            elif isinstance(value, dict) and isinstance(merged.get(key), dict) and key in ("index", "e2e"):
                merged[key].update(value)
            else:
                merged[key] = value
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(merged, indent=2) + "\n")


if __name__ == "__main__":
    main()
