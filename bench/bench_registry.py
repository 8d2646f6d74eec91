"""Registry add/load throughput against raw safetensors save/load of the same tensors, side by side.

Targets (issue: foundation): registry overhead within 1.3x on add and 1.1x on load for a ~1M-parameter
model. Each round adds distinct weights (so no de-duplication shortcut) and times, interleaved:
  raw_save   safetensors.torch.save_file(state_dict, path)
  add        Registry.add(state_dict, arch=spec, name=...)   (read, check, serialise, hash, write, commit)
  raw_load   safetensors.torch.load_file(path)
  load_sd    Registry.load_state_dict(ref)                     (read, verify sha256, parse)
  load       Registry.load(ref)                                (the same plus building the nn.Module)
  raw_module safetensors load_file + build + load_state_dict   (what `load` is compared with)
  sha256     hashlib.sha256 of the same bytes: the cost of content addressing and of verifying every load
and, on the registry those rounds filled:
  open       Registry(path) then close(): what every CLI command and script pays before its first query
  raw_open   sqlite3.connect + one query + close of the same file (the floor)
Prints JSON; `--out FILE` also writes it.

    python bench/bench_registry.py [--rounds 30] [--out bench/results/registry.json]
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import emit, machine
from safetensors.torch import load_file, save_file

import zoo


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument(
        "--fsync", action="store_true", help="fsync blobs before rename (durable against power loss)"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    spec = zoo.resolve_arch("cnn", channels=[64, 128, 128], kernels=[5, 5, 2], hidden=640)
    family = zoo.get_family(spec.family)
    base = family.build(spec).state_dict()
    n_params = sum(t.numel() for t in base.values())
    keys = ("raw_save", "add", "raw_load", "load_sd", "load", "raw_module", "sha256")
    times: dict[str, list[float]] = {k: [] for k in keys}
    with tempfile.TemporaryDirectory() as tmp:
        reg = zoo.Registry(Path(tmp) / "registry.db", fsync=args.fsync)
        raw_dir = Path(tmp) / "raw"
        raw_dir.mkdir()
        for i in range(args.rounds + 3):  # 3 warm-up rounds are dropped
            sd = {k: v + (i + 1) * 1e-3 for k, v in base.items()}
            path = raw_dir / f"{i}.safetensors"
            t_save, _ = timed(lambda: save_file(sd, path))
            t_add, rec = timed(lambda: reg.add(sd, arch=spec, name=f"m{i}"))
            t_rload, _ = timed(lambda: load_file(path))
            t_lsd, _ = timed(lambda: reg.load_state_dict(rec))
            t_load, _ = timed(lambda: reg.load(rec))

            def raw_module() -> torch.nn.Module:
                m = family.build(spec)
                m.load_state_dict(load_file(path))
                return m

            t_rmod, _ = timed(raw_module)
            data = path.read_bytes()
            t_sha, _ = timed(
                lambda: hashlib.sha256(data).hexdigest()
            )  # the floor every verified add/load pays
            if i >= 3:
                for k, v in zip(times, (t_save, t_add, t_rload, t_lsd, t_load, t_rmod, t_sha)):
                    times[k].append(v * 1e3)
        reg.close()
        db_path = Path(tmp) / "registry.db"

        def raw_open() -> None:
            con = sqlite3.connect(db_path)
            con.execute("SELECT count(*) FROM checkpoints").fetchone()
            con.close()

        for i in range(args.rounds + 3):
            t_open, _ = timed(lambda: zoo.Registry(db_path).close())
            t_raw_open, _ = timed(raw_open)
            if i >= 3:
                times.setdefault("open", []).append(t_open * 1e3)
                times.setdefault("raw_open", []).append(t_raw_open * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "registry_add_load",
        "machine": machine(),
        "model": {"arch": str(spec), "params": n_params, "bytes": n_params * 4},
        "rounds": args.rounds,
        "fsync": args.fsync,
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "ratios": {
            "add_vs_raw_save": round(med["add"] / med["raw_save"], 3),
            "load_state_dict_vs_raw_load": round(med["load_sd"] / med["raw_load"], 3),
            "load_module_vs_raw_module": round(med["load"] / med["raw_module"], 3),
            "add_minus_sha256_vs_raw_save": round((med["add"] - med["sha256"]) / med["raw_save"], 3),
            "load_state_dict_minus_sha256_vs_raw_load": round(
                (med["load_sd"] - med["sha256"]) / med["raw_load"], 3
            ),
        },
        "targets": {"add_vs_raw_save": 1.3, "load_vs_raw_load": 1.1},
        "throughput_MBps": {
            k: round(n_params * 4 / 1e6 / (v / 1e3), 1) for k, v in med.items() if "open" not in k
        },
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
