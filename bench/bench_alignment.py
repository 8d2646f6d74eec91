"""Permutation alignment (weight matching, :func:`zoo.align`) on cnn-tiny networks trained from other seeds.

Per task of ``--tasks`` (default ``mnist`` and ``digits``; ``digits`` alone when the MNIST files are not
found), ``--seeds`` cnn-tiny networks are trained as the tiny zoo trains its members
(:func:`zoo_demo.tinyzoo.train_member`, ``--steps`` Adam steps), differing only in their seed. Printed as
JSON (and written to ``--out``), per task:

- ``distance``: the relative L2 distance ``||w_j - w_0|| / ||w_0||`` of every network to seed 0's, over all
  weights, before and after aligning it to seed 0 (mean and per pair);
- ``accuracy``: the test accuracy of each network, of the plain element-wise average of the first 2 and of
  all networks, and of the average after aligning them to seed 0 (:func:`zoo.average_aligned`): the
  "average of aligned checkpoints" baseline of issue 16;
- ``seconds``: aligning ``--pairs`` pairs (cycling through the trained ones), total and per pair; training.

``cost``: seconds per pair of randomly initialised networks (which take more sweeps than trained ones):
``--pairs`` cnn-tiny pairs and 5 resnet20 pairs.

Example: ``python bench/bench_alignment.py --out bench/results/alignment.json``
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

import torch
from common import emit, machine

import zoo
from zoo.training import accuracy
from zoo_demo.tinyzoo import ARCH, mnist_dir, task_data, train_member


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.double().reshape(-1) for t in state.values() if t.dtype.is_floating_point])


def rel_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    fa, fb = flat(a), flat(b)
    return float((fa - fb).norm() / fa.norm())


def plain_average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}


def run_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``args.seeds`` networks on ``task``; distances, accuracies and timings (see the docstring)."""
    spec = zoo.resolve_arch(ARCH)
    family = zoo.get_family(spec.family)
    train_set, test_set = task_data(task)

    def acc(state: dict[str, torch.Tensor]) -> float:
        return accuracy(family.load(spec, state), test_set.images, test_set.labels)

    t0 = time.perf_counter()
    states = [
        {k: v.detach().clone() for k, v in train_member(train_set, s, steps=args.steps).state_dict().items()}
        for s in range(args.seeds)
    ]
    train_s = time.perf_counter() - t0

    aligned = [states[0], *zoo.align(states[0], states[1:])]
    probe = test_set.images[:256]
    before = [rel_distance(states[0], s) for s in states[1:]]
    after = [rel_distance(states[0], s) for s in aligned[1:]]
    with torch.no_grad():
        outputs_equal = max(
            float((family.load(spec, s)(probe) - family.load(spec, a)(probe)).abs().max())
            for s, a in zip(states[1:], aligned[1:])
        )

    accuracy_of: dict[str, Any] = {"members": [acc(s) for s in states]}
    for k in sorted({2, args.seeds}):
        accuracy_of[f"plain_average_{k}"] = acc(plain_average(states[:k]))
        accuracy_of[f"aligned_average_{k}"] = acc(zoo.average_aligned(states[:k]))

    pairs = list(itertools.islice(itertools.cycle(states[1:]), args.pairs))
    t0 = time.perf_counter()
    for other in pairs:
        zoo.align(states[0], [other])
    align_s = time.perf_counter() - t0

    return {
        "permutations": zoo.permutation_spec(spec).sizes(states[0]),  # name -> units
        "distance": {
            "relative_l2_before": before,
            "relative_l2_after": after,
            "mean_before": sum(before) / len(before),
            "mean_after": sum(after) / len(after),
        },
        "max_output_change_after_alignment": outputs_equal,
        "accuracy": accuracy_of,
        "seconds": {
            "align_pairs": args.pairs,
            "align_total": round(align_s, 3),
            "align_per_pair": round(align_s / args.pairs, 5),
            "train_total": round(train_s, 1),
        },
    }


def random_cost(arch: str, pairs: int) -> dict[str, Any]:
    """Seconds to align ``pairs`` pairs of randomly initialised ``arch`` networks."""
    spec = zoo.resolve_arch(arch)
    family = zoo.get_family(spec.family)
    nets = []
    for s in range(pairs + 1):
        torch.manual_seed(s)
        nets.append(family.build(spec).state_dict())
    t0 = time.perf_counter()
    for other in nets[1:]:
        zoo.align(nets[0], [other])
    total = time.perf_counter() - t0
    return {"pairs": pairs, "total": round(total, 3), "per_pair": round(total / pairs, 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=None, help="tiny-zoo tasks, comma-separated (default: mnist,digits)")
    ap.add_argument("--seeds", type=int, default=4, help="networks trained, seeds 0..n-1")
    ap.add_argument("--steps", type=int, default=200, help="Adam steps per network (the tiny zoo's)")
    ap.add_argument("--pairs", type=int, default=50, help="alignments timed")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tasks = (args.tasks or ("mnist,digits" if mnist_dir() is not None else "digits")).split(",")
    emit(
        {
            "benchmark": "alignment",
            "arch": ARCH,
            "seeds": args.seeds,
            "steps": args.steps,
            "tasks": {task: run_task(task, args) for task in tasks},
            "cost": {"cnn-tiny": random_cost(ARCH, args.pairs), "resnet20": random_cost("resnet20", 5)},
            "machine": machine(),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
