"""Reliability and security figures: kills survived, hostile inputs refused, fuzz examples run.

Three parts, each on a fresh SQLite registry in a temp folder, with real processes and real files:

  kills     worker processes SIGKILLed inside registry writes: once at every named point of add / remove /
            add_generator (tests/zoo/crashkit.py), then at ``--kills`` seeded random times of a loop of adds,
            removes, aliases and generator blobs; ``--train-kills`` kills of generator training (resumed to
            completion after them) and ``--reindex-kills`` kills of re-indexing runs. After every kill: every
            row's blob present with the right hash, no half-written blob under its final name, SQLite's
            integrity check ok, ``verify`` reporting only orphans, repair leaving it clean, checkpoints
            loading. An inconsistency is any of those failing.
  hostile   every case of tests/zoo/hostile.py through ``Registry.add`` (pickles that would run code in every
            container, torch files that are not weights-only, truncated files, bit flips, absurd headers,
            NaN/Inf, dtypes, names, paths), then all of the files at once through a re-indexing watch folder.
            Per category: tried, refused with the expected zoo error, accepted exactly as the file reads
            (only where a file may legitimately read as valid: a flipped bit in tensor data), code executed
            (the payloads' marker file), stored on refusal, and wrong outcomes.
  fuzz      the hypothesis fuzzers of tests/zoo/test_fuzz.py at ``--fuzz-scale`` times their CI budget.

Prints JSON; ``--out FILE`` also writes it.

    python bench/bench_reliability.py [--kills 100] [--fuzz-scale 10] [--out bench/results/reliability.json]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.zoo.* (the same cases and harness as the test suite)


def kills(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import random

    import torch
    from safetensors.torch import save_file

    import zoo
    from tests.zoo.crashkit import Zygote, check, run_kill_rounds
    from tests.zoo.hostile import SPEC, tiny_state
    from zoo.datasets import from_arrays

    db = tmp / "kills.db"
    zoo.Registry(db).close()
    reg = zoo.Registry(db)
    zygote = Zygote(tmp)
    t0 = time.perf_counter()
    try:
        res = run_kill_rounds(reg, zygote, random_kills=args.kills, seed=args.seed)
        add_s = time.perf_counter() - t0
        # generator training: killed at random times after its first state file, then resumed to completion
        g = torch.Generator().manual_seed(0)
        for ds in ("d0", "d1"):
            reg.register_dataset(ds, from_arrays(torch.rand(20, 8, 8, generator=g), [0, 1] * 10))
        for i in range(4):
            reg.add(tiny_state(10 + i), arch=SPEC, name=f"train{i}", dataset=("d0", "d1")[i % 2])
        gens_before = len(reg.generators())
        state = tmp / "train-state"
        rng = random.Random(args.seed)
        train = {"kills": 0, "inconsistencies": [], "generators_stored_by_resumed_run": 0}
        for k in range(args.train_kills):
            pid = zygote.fork(db, 1, "train", str(state))
            first = state / ("stage1-tokenizer.pt" if k % 2 == 0 else "stage2-prior.pt")
            deadline = time.monotonic() + 120
            while not first.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            if zygote.kill_after(pid, rng.uniform(0.0, 0.3)) == -signal.SIGKILL:
                train["kills"] += 1
            found = check(reg)
            train["inconsistencies"] += found.inconsistencies
            if len(reg.generators()) != gens_before:
                train["inconsistencies"].append("a killed training run stored a generator")
        pid = zygote.fork(db, 1, "train", str(state))
        train["resumed_run_exit_code"] = zygote.wait(pid)
        train["generators_stored_by_resumed_run"] = len(reg.generators()) - gens_before
        train["inconsistencies"] += check(reg).inconsistencies
        # re-indexing: whole runs over a watch folder, killed at random times, then one run that finishes
        watch = tmp / "incoming"
        watch.mkdir()
        for i in range(args.reindex_files):
            save_file(tiny_state(5000 + i), watch / f"w-{i}.safetensors")
        rx = {"kills": 0, "inconsistencies": []}
        for k in range(args.reindex_kills):
            pid = zygote.fork(db, 100 + k, "reindex", str(watch))
            if zygote.kill_after(pid, rng.uniform(0.1, 1.0)) == -signal.SIGKILL:
                rx["kills"] += 1
            rx["inconsistencies"] += check(reg, repair="cli" if k % 2 else "api").inconsistencies
        pid = zygote.fork(db, 999, "reindex", str(watch))
        rx["final_run_exit_code"] = zygote.wait(pid)
        imported = {r.name for r in reg.list(name="w-*")}
        rx["files_imported_once"] = len(imported)
        dup = [r.ref for r in reg.list(name="w-*") if r.version > 1]
        if len(imported) != args.reindex_files or dup:
            rx["inconsistencies"].append(
                f"{len(imported)} of {args.reindex_files} imported, versions > 1: {dup}"
            )
        rx["inconsistencies"] += check(reg).inconsistencies
    finally:
        zygote.close()
        reg.close()
    total = res["kills"] + train["kills"] + rx["kills"]
    bad = len(res["inconsistencies"]) + len(train["inconsistencies"]) + len(rx["inconsistencies"])
    return {
        "kills_survived": total,
        "inconsistencies": bad,
        "registry_writes": {
            "kills": res["kills"],
            "named_points": res["point_kills"],
            "random_time_kills": res["kills"] - sum(res["point_kills"].values()),
            "orphan_files_and_temp_files_repaired": res["orphan_files_repaired"],
            "orphan_rows_repaired": res["orphan_rows_repaired"],
            "checkpoints_changed_per_round_median": sorted(res["ops_between_kills"])[
                len(res["ops_between_kills"]) // 2
            ]
            if res["ops_between_kills"]
            else 0,
            "worker_errors": res["worker_errors"],
            "inconsistencies": res["inconsistencies"],
            "seconds": round(add_s, 1),
        },
        "training": train,
        "reindex": rx,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def hostile(tmp: Path) -> dict[str, Any]:
    import zoo
    from tests.zoo.hostile import build_cases, try_add

    marker = tmp / "PWNED"
    cases = build_cases(tmp / "hostile", marker)
    reg = zoo.Registry(tmp / "hostile.db")
    reg.add(zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")), name="keep")
    rows: dict[str, Counter[str]] = {}
    problems: list[str] = []
    t0 = time.perf_counter()
    for case in cases:
        row = rows.setdefault(case.category, Counter())
        out = try_add(reg, case, marker)
        row["tried"] += 1
        row["refused"] += out.error is not None
        row["accepted_as_read"] += out.error is None and out.problem is None
        row["stored_on_refusal"] += out.error is not None and out.stored
        row["executed"] += marker.exists()
        if out.problem:
            row["wrong_outcome"] += 1
            problems.append(f"{case.category}: {case.label}: {out.problem}")
    api_s = time.perf_counter() - t0
    reg.close()
    # the same files through the nightly import
    wreg = zoo.Registry(tmp / "watch.db")
    report = zoo.reindex(wreg, watch=[tmp / "hostile"], embeddings=False, retrain=False)
    may = {str(c.source) for c in cases if c.expect is None and c.is_file}
    wrong_imports = [r.meta["source"] for r in wreg.list() if r.meta.get("source") not in may]
    watch = {
        "files_reported_unreadable": len(report.bad_files),
        "imported": len(report.imported),
        "imported_that_must_be_refused": len(wrong_imports),
        "executed": int(marker.exists()),
        "status": report.status,
    }
    wreg.close()
    table = {
        cat: {
            k: row.get(k, 0)
            for k in (
                "tried",
                "refused",
                "accepted_as_read",
                "executed",
                "stored_on_refusal",
                "wrong_outcome",
            )
        }
        for cat, row in rows.items()
    }
    total = {k: sum(r[k] for r in table.values()) for k in next(iter(table.values()))}
    return {
        "by_category": table,
        "total": total,
        "problems": problems,
        "watch_folder": watch,
        "seconds": round(api_s, 1),
    }


def fuzz(scale: float, tmp: Path) -> dict[str, Any]:
    os.environ["ZOO_FUZZ_SCALE"] = str(scale)
    import zoo
    from tests.zoo import test_fuzz
    from tests.zoo.hostile import tiny_state

    out: dict[str, Any] = {}
    for name, fuzzer in test_fuzz.FUZZERS.items():
        folder = tmp / f"fuzz-{name}"
        (folder / "in").mkdir(parents=True)
        reg = zoo.Registry(folder / "registry.db")
        reg.add(tiny_state(50), name="keep")
        target = test_fuzz.Target(reg, folder / "in")
        t0 = time.perf_counter()
        failure = None
        try:
            fuzzer(target)
        except Exception as exc:  # a wrong outcome: reported, not hidden
            failure = f"{type(exc).__name__}: {str(exc)[:500]}"
        clean = reg.verify(grace_s=0).clean
        reg.close()
        out[name] = {
            "examples": sum(target.outcomes.values()),
            "outcomes": dict(sorted(target.outcomes.items())),
            "failure": failure,
            "registry_clean_after": clean,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    return {
        "scale": scale,
        "targets": out,
        "examples": sum(v["examples"] for v in out.values()),
        "failures": sum(v["failure"] is not None for v in out.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=100, help="random-time kills of the registry-write loop")
    ap.add_argument("--train-kills", type=int, default=4)
    ap.add_argument("--reindex-kills", type=int, default=10)
    ap.add_argument("--reindex-files", type=int, default=150)
    ap.add_argument("--fuzz-scale", type=float, default=10.0, help="times the CI fuzz budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import emit, machine

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-reliability-") as d:
        tmp = Path(d)
        result: dict[str, Any] = {
            "machine": machine(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
        (tmp / "k").mkdir()
        result["kills"] = kills(args, tmp / "k")
        result["hostile"] = hostile(tmp)
        result["fuzz"] = fuzz(args.fuzz_scale, tmp)
    result["seconds"] = round(time.perf_counter() - started, 1)
    emit(result, args.out)


if __name__ == "__main__":
    main()
