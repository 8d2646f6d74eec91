"""Flatten and rebuild of big family members against a plain ``load_state_dict`` of the same weights.

Targets (issue: architecture families), for ResNet-101 and ViT-B/16:
  time    flatten and rebuild each within 2x of ``module.load_state_dict(state)`` into a module built
          beforehand (the cheapest way plain PyTorch puts the same weights into a module);
  memory  the peak RSS increase of flatten + rebuild under 3x the weights' size.

Times (median of ``--repeats`` rounds after one warm-up; the operations run interleaved, round by round, and
the ratios are medians of per-round ratios, so that a shared machine's changing load hits all alike;
``meta_template_once`` is the one-off cost per spec and
process of building the family's module on the meta device; ``flatten_rebuild_first`` the first call after):
  load_state_dict        module.load_state_dict(state) into a module built beforehand
  build_load_state_dict  family.build(spec) + load_state_dict: what a user without zoo runs (random init)
  flatten                family.flatten(spec, state): the layout's tensors (views)
  rebuild                family.rebuild(spec, tensors): a ready module holding them
  flatten_rebuild        both
  load_copy              family.load(spec, state, copy=True): a module owning copies
  chunk_k64 / unchunk_k64   the default chunker, both ways (what the generator reads and writes)

Memory: each operation runs in a fresh subprocess holding the weights; the peak resident set (VmHWM,
reset through /proc/self/clear_refs just before the operation) minus the resident set before it. ``rebuild``
and ``load`` assign the given tensors to the module (no copy), so their peak is about zero; ``load_copy``
shows a load that copies.
Prints JSON; ``--out FILE`` also writes it.

    python bench/bench_families.py [--repeats 7] [--out bench/results/families.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import emit, machine

import zoo

log = logging.getLogger("bench_families")

ARCHS = ("resnet101", "vit_base_patch16_224")  # what the targets are set for
TIME_TARGET = 2.0  # flatten and rebuild within this factor of load_state_dict
MEMORY_TARGET = 3.0  # peak RSS increase of flatten + rebuild under this factor of the weights' size
OPS = (
    "load_state_dict",
    "build_load_state_dict",
    "flatten",
    "rebuild",
    "flatten_rebuild",
    "load_copy",
    "chunk_k64",
    "unchunk_k64",
)


def setup(arch: str) -> tuple[zoo.ArchitectureFamily, zoo.ArchSpec, dict[str, torch.Tensor]]:
    """The family, spec and random float32 weights (no module built, no init run)."""
    spec = zoo.resolve_arch(arch)
    family = zoo.get_family(spec.family)
    gen = torch.Generator().manual_seed(0)
    state = {
        s.name: (
            torch.randn(s.shape, generator=gen)
            if s.dtype.is_floating_point
            else torch.zeros(s.shape, dtype=s.dtype)
        )
        for s in family.slots(spec)
    }
    return family, spec, state


def operation(
    op: str, family: zoo.ArchitectureFamily, spec: zoo.ArchSpec, state: dict[str, torch.Tensor]
) -> Callable[[], Any]:
    """A no-argument callable running ``op`` (its preparation, e.g. building a module, is done here)."""
    if op == "load_state_dict":
        module = family.build(spec)
        return lambda: module.load_state_dict(state)
    if op == "build_load_state_dict":
        return lambda: family.build(spec).load_state_dict(state)
    if op == "flatten":
        return lambda: family.flatten(spec, state)
    if op == "rebuild":
        tensors = family.flatten(spec, state)
        return lambda: family.rebuild(spec, tensors)
    if op == "flatten_rebuild":
        return lambda: family.rebuild(spec, family.flatten(spec, state))
    if op == "load_copy":
        return lambda: family.load(spec, state, copy=True)
    if op == "chunk_k64":
        tensors = family.flatten(spec, state)
        return lambda: family.chunk(spec, tensors, 64)
    if op == "unchunk_k64":
        chunks = family.chunk(spec, family.flatten(spec, state), 64)
        return lambda: family.unchunk(spec, chunks)
    raise ValueError(f"unknown operation {op!r}; choose from {OPS}")


def time_ops(arch: str, repeats: int) -> dict[str, Any]:
    """Median seconds per operation; operations run interleaved, round by round, so that a machine whose
    load changes during the run slows all of them alike (ratios are taken per round, then the median)."""
    out: dict[str, Any] = {}
    t = time.perf_counter()
    zoo.get_family(zoo.resolve_arch(arch).family).slots(zoo.resolve_arch(arch))
    out["meta_template_once"] = (
        time.perf_counter() - t
    )  # first call: meta template (+ importing timm/torchvision)
    family, spec, state = setup(arch)
    t = time.perf_counter()
    family.rebuild(spec, family.flatten(spec, state))
    out["flatten_rebuild_first"] = time.perf_counter() - t
    fns = {op: operation(op, family, spec, state) for op in OPS}
    samples: dict[str, list[float]] = {op: [] for op in OPS}
    for fn in fns.values():
        fn()  # warm-up
    for round_ in range(repeats):
        for op, fn in fns.items():
            if op == "build_load_state_dict" and round_ >= max(2, repeats // 3):
                continue  # seconds per call, and not what the targets compare with
            gc.collect()
            t = time.perf_counter()
            result = fn()
            samples[op].append(time.perf_counter() - t)
            del result
    for op in OPS:
        out[op] = statistics.median(samples[op])
        out[f"{op}_min"] = min(samples[op])
        log.info("%s %s: %.4f s (median of %d)", arch, op, out[op], len(samples[op]))
    out["per_round_ratio"] = {
        f"{op}_vs_load_state_dict": statistics.median(
            a / b for a, b in zip(samples[op], samples["load_state_dict"])
        )
        for op in ("flatten", "rebuild", "flatten_rebuild")
    }
    return out


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_memory_here(arch: str, op: str) -> dict[str, float]:
    """Peak RSS increase of ``op`` in this process (call in a fresh subprocess)."""
    family, spec, state = setup(arch)
    fn = operation(op, family, spec, state)
    if op in ("rebuild", "flatten_rebuild", "flatten", "load_copy"):
        warm = family.rebuild(spec, family.flatten(spec, state))  # template and slots exist already
        del warm
    gc.collect()
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    result = fn()
    peak = _status_kb("VmHWM")
    del result
    return {"peak_increase_mb": (peak - before) / 1024, "rss_before_mb": before / 1024}


def measure_memory(arch: str, op: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", arch, op]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench(arch: str, repeats: int) -> dict[str, Any]:
    times = time_ops(arch, repeats)  # first: it times the meta template's one-off build
    spec = zoo.resolve_arch(arch)
    family = zoo.get_family(spec.family)
    slots = family.slots(spec)
    weights_mb = sum(s.numel * torch.empty(0, dtype=s.dtype).element_size() for s in slots) / 2**20
    memory = {
        op: measure_memory(arch, op)["peak_increase_mb"]
        for op in (
            "load_state_dict",
            "build_load_state_dict",
            "flatten",
            "rebuild",
            "flatten_rebuild",
            "load_copy",
            "chunk_k64",
            "unchunk_k64",
        )
    }
    ratios = times.pop("per_round_ratio")  # median over rounds of op time / load_state_dict time
    peak_x = {op: mb / weights_mb for op, mb in memory.items()}
    return {
        "arch": arch,
        "spec": spec.key,
        "params": family.layout(spec).num_params,
        "generated_values": family.layout(spec).num_generated,
        "weights_mb": weights_mb,
        "time_s": times,
        "ratios": ratios,
        "peak_increase_mb": memory,
        "peak_x_weights": peak_x,
        "targets": {
            "flatten_within_2x": ratios["flatten_vs_load_state_dict"] <= TIME_TARGET,
            "rebuild_within_2x": ratios["rebuild_vs_load_state_dict"] <= TIME_TARGET,
            "flatten_rebuild_memory_under_3x": peak_x["flatten_rebuild"] < MEMORY_TARGET,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", action="append", help=f"architectures (default: {', '.join(ARCHS)})")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--memory-child", nargs=2, metavar=("ARCH", "OP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.memory_child:
        print(json.dumps(measure_memory_here(*args.memory_child)))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    load_before = os.getloadavg()
    results = [bench(a, args.repeats) for a in (args.arch or ARCHS)]
    import timm
    import torchvision

    host = {
        **machine(timm=timm.__version__, torchvision=torchvision.__version__),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    report = {
        "benchmark": "families",
        "machine": host,
        "repeats": args.repeats,
        "targets": {"time_vs_load_state_dict": TIME_TARGET, "peak_memory_x_weights": MEMORY_TARGET},
        "results": results,
        "all_targets_met": all(all(r["targets"].values()) for r in results),
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
