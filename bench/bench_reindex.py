"""Nightly re-indexing at scale: a 10k-checkpoint registry with nothing new (target: under 10 s) and with 1%
new.

Set-up (timed, reported, not part of the figures): ``--datasets`` datasets are registered (small random
image sets, ``pixels`` vectors); ``--checkpoints`` cnn-tiny checkpoints (2,464 parameters, 10 KB each)
are written as safetensors files with a JSON sidecar each (name, dataset, metrics) into a watch folder and
imported by the job itself (``zoo.reindex``: the initial import is a figure of its own). A promoted
generator (tiny config) is trained on the first 40, so the generator stage's check runs on every run
(``retrain_min`` is set out of reach: no training is timed). One nothing-new run is timed then, its
generator's watermark 9,960 checkpoints behind (the worst case of that check); then the generator is
retrained on all of them (a current watermark, as after a nightly retrain). Then, in rounds:

  noop_inprocess   zoo.reindex() with nothing new (the registry already open in this process)
  noop_cli         `zoo reindex --watch DIR` as a fresh process, what cron runs (Python, torch and plugin
                   start-up included), nothing new
  new1pct          N/100 new files (with sidecars) written to the watch folder, then zoo.reindex()

Every run verifies every blob (hashes all of them) and checks stale vectors, indexes and generators.
Prints JSON; `--out FILE` also writes it.

    python bench/bench_reindex.py [--checkpoints 10000] [--rounds 3] [--out bench/results/reindex.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import emit, machine
from safetensors.torch import save_file

import igpg
import zoo
from zoo.datasets import from_arrays

NEVER = 10**9  # retrain_min out of reach: the generator stage checks, never trains


def write(folder: Path, seeds: range, base: dict[str, torch.Tensor], datasets: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        path = folder / f"ck-{s:06d}.safetensors"
        save_file({k: v + s * 1e-4 for k, v in base.items()}, path)
        path.with_suffix(".json").write_text(
            json.dumps(
                {"name": f"ck-{s:06d}", "dataset": datasets[s % len(datasets)], "metrics": {"accuracy": 0.5}}
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", type=int, default=10_000)
    ap.add_argument("--datasets", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    spec = zoo.resolve_arch("cnn-tiny")
    torch.manual_seed(0)
    base = {k: v for k, v in zoo.get_family("cnn").build(spec).state_dict().items()}
    n, new = args.checkpoints, max(1, args.checkpoints // 100)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db, watch = root / "registry.db", root / "incoming"
        reg = zoo.Registry(db)
        t = time.perf_counter()
        g = torch.Generator().manual_seed(0)
        names = [f"task-{i:03d}" for i in range(args.datasets)]
        for name in names:
            reg.register_dataset(name, from_arrays(torch.rand(50, 8, 8, generator=g), [0, 1, 2, 3, 4] * 10))
        write(watch, range(40), base, names)
        zoo.reindex(reg, watch=[watch])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        tiny = igpg.TrainConfig(
            tokenizer=igpg.TokenizerConfig(codebook_size=16, levels=1, hidden=32),
            prior=igpg.PriorConfig(block_size=32, n_layer=1, n_head=2, n_embd=32),
            tokenizer_steps=20,
            prior_steps=10,
            tokenizer_batch=128,
            prior_batch=2,
            device="cpu",
        )
        igpg.train_on_registry(reg, arch="cnn-tiny", k=64, config=tiny, promote=True, progress=False)
        torch.set_num_threads(threads)
        setup_s = time.perf_counter() - t
        t = time.perf_counter()
        write(watch, range(40, n), base, names)
        write_s = time.perf_counter() - t
        initial = zoo.reindex(reg, watch=[watch], retrain_min=NEVER)
        assert initial.counts["imported"] == n - 40, initial.counts
        print(f"initial import of {n - 40} files: {initial.seconds:.1f} s", file=sys.stderr)
        behind = zoo.reindex(
            reg, watch=[watch], retrain_min=NEVER
        )  # the generator's watermark is 9,960 behind
        assert behind.status == "skipped" and behind.generators[0].outcome == "waiting", behind.generators
        t = time.perf_counter()
        torch.set_num_threads(1)
        igpg.train_on_registry(reg, arch="cnn-tiny", k=64, config=tiny, promote=True, progress=False)
        torch.set_num_threads(threads)
        retrain_all_s = time.perf_counter() - t
        reg.set_generator_status("igpg:v1", "retired")

        noop_in: list[float] = []
        noop_cli: list[float] = []
        new_in: list[float] = []
        stage_noop: list[dict[str, float]] = []
        stage_new: list[dict[str, float]] = []
        cli_reports = []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        next_seed = n
        for r in range(args.rounds):
            rep = zoo.reindex(reg, watch=[watch], retrain_min=NEVER)
            assert rep.status == "skipped" and not rep.counts.get("files_hashed"), rep.counts
            noop_in.append(rep.seconds)
            stage_noop.append(dict(rep.timings))
            t = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "zoo",
                    "--registry",
                    str(db),
                    "reindex",
                    "--watch",
                    str(watch),
                    "--retrain-min",
                    str(NEVER),
                    "--json",
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
            )
            noop_cli.append(time.perf_counter() - t)
            assert proc.returncode == 0, proc.stderr
            cli_reports.append(json.loads(proc.stdout))
            assert cli_reports[-1]["status"] == "skipped"
            write(watch, range(next_seed, next_seed + new), base, names)
            next_seed += new
            rep = zoo.reindex(reg, watch=[watch], retrain_min=NEVER)
            assert rep.counts["imported"] == new, rep.counts
            new_in.append(rep.seconds)
            stage_new.append(dict(rep.timings))
            print(
                f"round {r}: noop {noop_in[-1]:.2f} s, noop cli {noop_cli[-1]:.2f} s, "
                f"+{new} {new_in[-1]:.2f} s",
                file=sys.stderr,
            )
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", "import zoo.cli, zoo.reindex"], env=env, timeout=300)
        import_s = time.perf_counter() - t
        stats = reg.stats()
        reg.close()

    def med(xs: list[float]) -> float:
        return round(statistics.median(xs), 3)

    def med_stages(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: med([r.get(k, 0.0) for r in rows]) for k in rows[0]}

    result = {
        "benchmark": "reindex",
        "machine": machine(),
        "registry": {
            "checkpoints_at_start": n,
            "checkpoints_at_end": stats["checkpoints"],
            "datasets": args.datasets,
            "arch": str(spec),
            "params_per_checkpoint": 2464,
            "blob_bytes_at_end": stats["blob_bytes"],
            "watch_files_at_end": n + args.rounds * new,
            "generators": stats["generators"],
            "backend": "sqlite (WAL), local disk",
        },
        "noop_with_generator_watermark_9960_behind": {
            "seconds": round(behind.seconds, 3),
            "stages": {k: round(v, 3) for k, v in behind.timings.items()},
        },
        "setup_seconds": {
            "datasets_and_generator": round(setup_s, 2),
            "write_files": round(write_s, 2),
            "tiny_generator_on_all_checkpoints": round(retrain_all_s, 2),
            "initial_import": round(initial.seconds, 2),
            "initial_import_per_checkpoint_ms": round(1e3 * initial.seconds / (n - 40), 2),
            "initial_import_stages": {k: round(v, 2) for k, v in initial.timings.items()},
        },
        "rounds": args.rounds,
        "median_seconds": {
            "noop_inprocess": med(noop_in),
            "noop_cli": med(noop_cli),
            "new1pct_inprocess": med(new_in),
            "python_import_zoo_cli": round(import_s, 3),
        },
        "all_seconds": {
            "noop_inprocess": [round(x, 3) for x in noop_in],
            "noop_cli": [round(x, 3) for x in noop_cli],
            "new1pct_inprocess": [round(x, 3) for x in new_in],
        },
        "stage_median_seconds": {
            "noop": med_stages(stage_noop),
            "new1pct": med_stages(stage_new),
            "noop_cli_reported_by_job": med_stages([c["timings"] for c in cli_reports]),
        },
        "new_files_per_round": new,
        "target": {
            "noop_seconds": 10.0,
            "met_inprocess": med(noop_in) < 10.0,
            "met_cli": med(noop_cli) < 10.0,
        },
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
