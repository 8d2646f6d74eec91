"""Start-up of the `zoo` command line: wall time and peak memory of `zoo --help`, `zoo list`, `zoo show` and
`zoo get`, for two source trees side by side (before and after a change), in one run.

Each command runs as a fresh process, as a user's shell starts it (``python -c "from zoo.cli import main;
main()" ...`` with the tree first on ``PYTHONPATH``, which is what the ``zoo`` console script runs), against
a small registry that each tree builds for itself: two cnn-tiny checkpoints of a registered 40-image dataset.
`zoo get cnn-tiny --dataset bench-digits` is then served from the registry (an exact match: the checkpoint
is loaded, checked and saved), so it measures the start and a load, not generation. The rounds interleave
the trees (one warm-up run of each command first, not counted); the figures are medians over the rounds.
Peak memory is the child's own maximum resident set (``os.wait4``'s rusage: ``getrusage(RUSAGE_CHILDREN)``
for that one child), in MiB. Each result also says which heavy modules the command imported.

    python bench/bench_cli.py --base-commit 33ca5b4 --out bench/results/cli.json

``--base-commit`` checks the commit out into a temporary git worktree (removed at the end); ``--base DIR``
uses an existing checkout instead; ``--after DIR`` defaults to this tree.
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
from typing import Any

HERE = Path(__file__).resolve().parents[1]
DATASET = "bench-digits"

_BUILD = """
import sys, torch, zoo
reg = zoo.Registry(sys.argv[1])
gen = torch.Generator().manual_seed(0)
reg.register_dataset(
    "bench-digits", zoo.as_dataset((torch.rand(40, 1, 28, 28, generator=gen), torch.arange(40) % 10)),
    encoders=["pixels"],
)
spec = zoo.resolve_arch("cnn-tiny")
for seed in range(2):
    torch.manual_seed(seed)
    reg.add(zoo.get_family("cnn").build(spec), name=f"bench-s{seed}", arch=spec, dataset="bench-digits")
reg.close()
"""

_RUN = "from zoo.cli import main; main()"

_PROBE = """
import json, sys
from zoo.cli import main
sys.argv = ["zoo", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = ("torch", "numpy", "sqlalchemy", "alembic", "safetensors.torch", "zoo_families", "igpg.generator")
sys.stderr.write("\\n@@" + json.dumps(sorted(h for h in heavy if h in sys.modules)) + "\\n")
"""


def commands(work: Path) -> dict[str, list[str]]:
    out = str(work / "got.safetensors")
    return {
        "zoo --help": ["--help"],
        "zoo list": ["list"],
        "zoo show": ["show", "bench-s0"],
        f"zoo get cnn-tiny --dataset {DATASET}": ["get", "cnn-tiny", "--dataset", DATASET, "--out", out],
    }


def env_for(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env["PYTHONPATH"] = str(tree)
    return env


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run ``argv`` to the end: (wall seconds, the child's peak RSS in MiB); raises if it fails.

    The child's peak counts what it inherited when forked (Linux keeps the high-water mark across exec), so
    this process stays small while it measures: torch is imported only afterwards (:func:`common.machine`).
    """
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{argv[3:]} exited {proc.returncode}: {err.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux: KiB


def heavy_modules(tree: Path, db: Path, args: list[str]) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, "--registry", str(db), *args],
        env=env_for(tree),
        cwd=db.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(proc.stderr.rpartition("\n@@")[2])


def bench(trees: dict[str, Path], rounds: int, work: Path) -> dict[str, Any]:
    dbs = {}
    for side, tree in trees.items():  # each tree builds its own registry (same content)
        dbs[side] = work / side / "registry.db"
        dbs[side].parent.mkdir(parents=True)
        subprocess.run(
            [sys.executable, "-c", _BUILD, str(dbs[side])],
            env=env_for(tree),
            cwd=dbs[side].parent,
            check=True,
        )
    cmds = commands(work)
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {c: {s: [] for s in trees} for c in cmds}
    for r in range(rounds + 1):  # round 0 warms the bytecode and page caches
        for label, args in cmds.items():
            for side, tree in trees.items():
                argv = [sys.executable, "-c", _RUN, "--registry", str(dbs[side]), *args]
                got = timed(argv, env_for(tree), dbs[side].parent)  # not here: `-c` puts the cwd first
                if r:
                    samples[label][side].append(got)
    result: dict[str, Any] = {}
    for label, args in cmds.items():
        row: dict[str, Any] = {}
        for side, tree in trees.items():
            runs = samples[label][side]
            row[side] = {
                "median_s": round(statistics.median(s for s, _ in runs), 3),
                "peak_rss_mib": round(statistics.median(m for _, m in runs), 1),
                "runs_s": [round(s, 3) for s, _ in runs],
                "heavy_modules": heavy_modules(tree, dbs[side], args),
            }
        if {"before", "after"} <= set(row):
            row["speedup"] = round(row["before"]["median_s"] / row["after"]["median_s"], 2)
            row["memory_ratio"] = round(row["after"]["peak_rss_mib"] / row["before"]["peak_rss_mib"], 2)
        result[label] = row
    return result


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(HERE), *args], check=True, capture_output=True, text=True).stdout


def describe(tree: Path) -> str:
    """The tree's commit (hash and subject), and whether it has changes not committed."""
    head = git("-C", str(tree), "log", "-1", "--format=%h %s").strip()[:100]
    dirty = git("-C", str(tree), "status", "--porcelain", "--untracked-files=no").strip()
    return head + (" (with uncommitted changes)" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=None, help="A checkout of the tree before the change.")
    ap.add_argument("--base-commit", default=None, help="Commit to check out as the tree before the change.")
    ap.add_argument("--after", type=Path, default=HERE, help="The tree after the change (default: this one).")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="zoo-bench-cli-") as tmp:
        work = Path(tmp)
        base, made = args.base, None
        if base is None and args.base_commit:
            made = base = work / "base-tree"
            git("worktree", "add", "--detach", str(base), args.base_commit)
        try:
            trees = {**({"before": base.resolve()} if base else {}), "after": args.after.resolve()}
            described = {side: describe(tree) for side, tree in trees.items()}
            figures = bench(trees, args.rounds, work)
        finally:
            if made is not None:
                git("worktree", "remove", "--force", str(made))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import emit, machine  # imports torch: only once the children are measured

    emit(
        {
            "machine": machine(),
            "rounds": args.rounds,
            "trees": described,
            "registry": f"2 cnn-tiny checkpoints of {DATASET} (40 images, pixels vectors), SQLite",
            "commands": figures,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
