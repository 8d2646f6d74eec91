"""The tiny-zoo evaluation protocol (the IGPG paper's tiny-zoo table at our scale), for IGPG generators.

Used by ``bench/bench_generator.py`` and by the main job's report, so both measure the same things:

- **tokenizer fidelity**: every training checkpoint through encode -> decode, its test accuracy relative to
  its own (mean and minimum), plus codebook perplexity and live codes;
- **seen tasks**: ``n`` networks sampled for each training task's dataset embedding, their test accuracy
  against the task's pretrained checkpoints (mean, spread, best), and each sample's relative L2 distance
  to the nearest training checkpoint, so memorisation is visible;
- **held-out tasks** (no checkpoint trained on them): generated weights (mean, and best-of-``n`` chosen on
  a small labelled support split, then measured on the test split) against random init, against the
  best retrieved checkpoint (chosen the same way) and against networks trained on the task;
- **fine-tuning curves** from those starting points: accuracy against optimizer steps, and the steps each
  needs to reach the trained networks' accuracy.
"""

from __future__ import annotations

import copy
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from igpg.data import ZooData
from igpg.evaluation import DEFAULT_SAMPLING, aligned_distances, flat_state
from igpg.evaluation import distances as _distances
from igpg.generator import Generator
from igpg.heads import ClassHead
from zoo import (
    CheckpointRecord,
    average_aligned,
    embed_arch,
    get_embedding,
    get_family,
    resolve_arch,
    unchunk,
)
from zoo.training import Curve, accuracy, fine_tune
from zoo_demo.tinyzoo import ARCH, evaluate, register_task, task_data, train_member

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fidelity:
    """How much of each checkpoint's accuracy survives its own tokens."""

    mean_relative: float
    min_relative: float
    relative: tuple[float, ...]  # per training checkpoint, in data order
    perplexity: float
    live_codes: int


@dataclass(frozen=True)
class SeenTask:
    """Generated networks for a task the generator was trained on."""

    task: str
    pretrained: tuple[float, ...]  # test accuracy of the task's training checkpoints
    generated: tuple[float, ...]  # test accuracy of each sample
    distance: tuple[float, ...]  # each sample's relative L2 distance to its nearest training checkpoint
    aligned_distance: tuple[float, ...] = ()  # the same after weight matching (modulo permutations)

    @property
    def pretrained_mean(self) -> float:
        return statistics.mean(self.pretrained)

    @property
    def best(self) -> float:
        return max(self.generated)

    @property
    def best_relative(self) -> float:
        return self.best / self.pretrained_mean

    def to_dict(self) -> dict[str, object]:
        return {
            "pretrained_mean": round(self.pretrained_mean, 4),
            "generated": [round(a, 4) for a in self.generated],
            "generated_mean": round(statistics.mean(self.generated), 4),
            "generated_std": round(statistics.pstdev(self.generated), 4),
            "best_of_n": round(self.best, 4),
            "best_vs_pretrained_mean": round(self.best_relative, 4),
            "rel_l2_to_nearest_training_checkpoint": [round(d, 4) for d in self.distance],
            "rel_l2_modulo_permutation": [round(d, 4) for d in self.aligned_distance],
        }


@dataclass(frozen=True)
class HeldOutTask:
    """Zero-shot weights for a task no training checkpoint saw, against every baseline of the protocol, and
    fine-tuning from them. Accuracies are on the task's test split; every best-of-``n`` is chosen on the same
    labelled support images (never the test split)."""

    task: str
    trained: tuple[float, ...]  # test accuracy of networks trained on the task (the reference)
    random_init: float
    nearest: float  # the checkpoint nearest by dataset embedding, as it is
    nearest_from: str
    noise: float  # nearest checkpoint + Gaussian noise at the generator's own distance (best of n draws)
    noise_distance: float  # the relative L2 distance of that noise (the generated samples' mean distance)
    average: float  # the average of the k nearest checkpoints after weight matching
    average_of: tuple[str, ...]
    retrieved: float  # best retrieved checkpoint (chosen on the support split), test accuracy
    retrieved_from: str  # its reference
    retrieved_head: float  # best retrieved checkpoint with the class head (igpg.heads) made for the task
    generated: tuple[float, ...]  # every sample's test accuracy
    generated_best: float  # the sample chosen on the support split, test accuracy
    generated_plain_best: float  # the same without the class head (decoded classifiers only): an ablation
    distance: tuple[float, ...]  # each sample's relative L2 distance to its nearest training checkpoint
    curves: dict[str, Curve] = field(default_factory=dict)  # start -> fine-tuning curve on the test split
    aligned_distance: tuple[
        float, ...
    ] = ()  # each sample's distance after weight matching (modulo permutations)

    @property
    def trained_mean(self) -> float:
        return statistics.mean(self.trained)

    @property
    def baselines(self) -> dict[str, float]:
        """The baselines of the protocol (the generator must beat each), by name."""
        return {
            "nearest": self.nearest,
            "noise": self.noise,
            "average": self.average,
            "retrieved": self.retrieved,
        }

    def steps_to_trained(self) -> dict[str, int | None]:
        return {name: c.steps_to(self.trained_mean) for name, c in self.curves.items()}

    def to_dict(self) -> dict[str, object]:
        t = self.trained_mean
        return {
            "trained_mean": round(t, 4),
            "trained": [round(a, 4) for a in self.trained],
            "random_init": round(self.random_init, 4),
            "nearest": round(self.nearest, 4),
            "nearest_from": self.nearest_from,
            "noise": round(self.noise, 4),
            "noise_rel_l2": round(self.noise_distance, 4),
            "average_aligned": round(self.average, 4),
            "average_of": list(self.average_of),
            "retrieved": round(self.retrieved, 4),
            "retrieved_from": self.retrieved_from,
            "retrieved_with_class_head": round(self.retrieved_head, 4),
            "generated": [round(a, 4) for a in self.generated],
            "generated_mean": round(statistics.mean(self.generated), 4),
            "generated_best_of_n": round(self.generated_best, 4),
            "generated_without_class_head_best_of_n": round(self.generated_plain_best, 4),
            "generated_best_vs_trained": round(self.generated_best / t, 4),
            "retrieved_vs_trained": round(self.retrieved / t, 4),
            "beats": {k: self.generated_best >= v for k, v in self.baselines.items()},
            "rel_l2_to_nearest_training_checkpoint": [round(d, 4) for d in self.distance],
            "rel_l2_modulo_permutation": [round(d, 4) for d in self.aligned_distance],
            "steps_to_trained_accuracy": self.steps_to_trained(),
            "curves": {
                k: {"steps": list(c.steps), "accuracy": [round(a, 4) for a in c.accuracy]}
                for k, c in self.curves.items()
            },
        }


def tokenizer_fidelity(gen: Generator, data: ZooData) -> Fidelity:
    """Every training checkpoint decoded from its own tokens, against its recorded accuracy."""
    rel = []
    for e in data.examples:
        decoded = gen.tokenizer.decode(gen.tokenizer.encode(e.chunks), e.chunks)
        family = get_family(e.checkpoint.family)
        net = family.rebuild(e.checkpoint.arch, unchunk(decoded))
        rel.append(evaluate(net, e.checkpoint.dataset) / e.checkpoint.metrics["accuracy"])
    return Fidelity(
        statistics.mean(rel),
        min(rel),
        tuple(rel),
        float(gen.info.get("tokenizer_perplexity", 0.0)),
        int(gen.info.get("tokenizer_live_codes", 0)),
    )


def _conditions(registry, gen: Generator, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    spec = resolve_arch(ARCH)
    ds = torch.tensor(get_embedding(registry, "dataset", dataset, gen.dataset_encoder).vector)
    arch = torch.tensor(embed_arch(registry, spec, encoder=gen.text_encoder).vector)
    return ds, arch


def seen_tasks(
    registry,
    gen: Generator,
    records: Sequence[CheckpointRecord],
    *,
    n: int = 5,  # type: ignore[no-untyped-def]
    seed: int = 0,
    sampling: Mapping[str, float] | None = None,
    tasks: Sequence[str] | None = None,
) -> list[SeenTask]:
    """``n`` samples per training task (or per task of ``tasks``, training tasks all), scored on the task's
    test split; each conditioned on the task's registered training split (embedding and class-head
    examples)."""
    sampling = dict(DEFAULT_SAMPLING if sampling is None else sampling)
    spec = resolve_arch(ARCH)
    states = [registry.load_state_dict(r) for r in records]
    flats = torch.stack([flat_state(st) for st in states])
    out = []
    for task in tasks or dict.fromkeys(r.dataset for r in records):  # training tasks, in the records' order
        ds, arch = _conditions(registry, gen, task)
        examples = task_data(task)[0]  # the registered training split: the condition's examples
        nets = gen.sample(spec, ds, arch, n=n, seed=seed, examples=examples, **sampling)  # type: ignore[arg-type]
        pre = tuple(r.metrics["accuracy"] for r in records if r.dataset == task)
        out.append(
            SeenTask(
                task,
                pre,
                tuple(evaluate(m, task) for m in nets),
                _distances(nets, flats),
                aligned_distances(nets, states, spec),
            )
        )
        log.info(
            "seen task %s: best %.3f of pretrained mean %.3f", task, out[-1].best, out[-1].pretrained_mean
        )
    return out


def train_reference(
    task: str, *, seeds: int = 3, steps: int = 200, lr: float = 3e-3, batch_size: int = 32
) -> list[nn.Module]:
    """Networks trained on ``task`` exactly as the tiny zoo trains its members (they stay out of the
    registry)."""
    train_set, _ = task_data(task)
    return [
        train_member(train_set, 1000 + seed, steps=steps, lr=lr, batch_size=batch_size)
        for seed in range(seeds)
    ]


def with_noise(module: nn.Module, distance: float, generator: torch.Generator) -> nn.Module:
    """A copy of ``module`` plus Gaussian noise at relative L2 ``distance``: every floating tensor ``w`` gets
    ``e * distance * ||w|| / ||e||`` with ``e ~ N(0, I)`` (per tensor, so small tensors such as biases get
    noise in proportion to their own size: the stronger form of the audit's noise baseline, Zeng et al.,
    arXiv 2506.07998)."""
    out = copy.deepcopy(module)
    with torch.no_grad():
        for t in out.state_dict().values():
            if t.dtype.is_floating_point and t.numel():
                e = torch.randn(t.shape, generator=generator)
                t.add_(e * (distance * float(t.norm()) / float(e.norm().clamp_min(1e-12))))
    return out


def _best_on(nets: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor) -> int:
    scores = [accuracy(m, x, y) for m in nets]
    return max(range(len(nets)), key=scores.__getitem__)


def held_out_task(
    registry,
    gen: Generator,
    task: str,
    records: Sequence[CheckpointRecord],
    *,  # type: ignore[no-untyped-def]
    n: int = 5,
    seed: int = 0,
    support: int = 100,
    k_retrieved: int = 10,
    k_average: int = 5,
    reference_seeds: int = 3,
    reference_steps: int = 200,
    fine_tune_steps: int = 200,
    eval_every: int = 10,
    lr: float = 3e-3,
    batch_size: int = 32,
    sampling: Mapping[str, float] | None = None,
) -> HeldOutTask:
    """Zero-shot generation for ``task`` (registered as a dataset if it is not) against the protocol's
    baselines, then fine-tuning curves.

    Baselines, all measured here: random init; networks trained on the task (``reference_seeds`` trained
    like zoo members for ``reference_steps``); the checkpoint nearest by dataset embedding; that checkpoint
    plus Gaussian noise at the generated samples' mean distance to their nearest training checkpoint (best of
    ``n`` draws, :func:`with_noise`); the average of the ``k_average`` nearest after weight matching
    (:func:`zoo.average_aligned`); the best of the ``k_retrieved`` nearest chosen on labels; and, as an
    ablation, that choice with the generator's class head. Every best-of-``n`` is chosen on ``support``
    labelled training images and reported on the test split. The generator is conditioned on the task's
    registered training split (its embedding, and its examples for the class head).
    """
    if any(r.dataset == task for r in records):
        raise ValueError(f"{task!r} is a training task of this generator; a held-out task must be unseen")
    sampling = dict(DEFAULT_SAMPLING if sampling is None else sampling)
    spec = resolve_arch(ARCH)
    family = get_family(spec.family)
    train_set, test_set = task_data(task)
    register_task(registry, task, train_set)  # refuses the name bound to other data
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(train_set.labels), generator=g)[:support]
    sx, sy = train_set.images[pick], train_set.labels[pick]
    tx, ty = test_set.images, test_set.labels

    trained = tuple(
        accuracy(m, tx, ty) for m in train_reference(task, seeds=reference_seeds, steps=reference_steps)
    )
    torch.manual_seed(seed)
    random_net = family.build(spec)

    ds, arch = _conditions(registry, gen, task)
    plain = gen.sample(spec, ds, arch, n=n, seed=seed, **sampling)  # type: ignore[arg-type]
    nets = gen.with_class_heads(spec, plain, train_set)  # = gen.sample(..., examples=train_set), sampled once
    chosen = nets[_best_on(nets, sx, sy)]
    states = [registry.load_state_dict(r) for r in records]
    dist = _distances(nets, torch.stack([flat_state(st) for st in states]))

    neighbors = registry.nearest(spec, task, k=max(k_retrieved, k_average))
    cands = [registry.load(nb.checkpoint) for nb in neighbors[:k_retrieved]]
    best_i = _best_on(cands, sx, sy)
    head = gen.class_head or ClassHead()
    headed = [head.choose_for(m, spec, train_set)[0] for m in cands]
    nearest = cands[0]
    noise_gen = torch.Generator().manual_seed(10_000 + seed)
    noisy = [with_noise(nearest, statistics.mean(dist), noise_gen) for _ in range(n)]
    avg_states = [registry.load(nb.checkpoint).state_dict() for nb in neighbors[:k_average]]
    average = family.load(spec, average_aligned(avg_states, spec))

    starts = {"generated": chosen, "random": random_net, "retrieved": cands[best_i]}
    curves = {}
    for name, net in starts.items():
        _, curves[name] = fine_tune(
            net,
            train_set.images,
            train_set.labels,
            steps=fine_tune_steps,
            eval_x=tx,
            eval_y=ty,
            eval_every=eval_every,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
        )
    result = HeldOutTask(
        task,
        trained,
        accuracy(random_net, tx, ty),
        accuracy(nearest, tx, ty),
        neighbors[0].checkpoint.ref,
        accuracy(noisy[_best_on(noisy, sx, sy)], tx, ty),
        statistics.mean(dist),
        accuracy(average, tx, ty),
        tuple(nb.checkpoint.ref for nb in neighbors[:k_average]),
        accuracy(cands[best_i], tx, ty),
        neighbors[best_i].checkpoint.ref,
        accuracy(headed[_best_on(headed, sx, sy)], tx, ty),
        tuple(accuracy(m, tx, ty) for m in nets),
        accuracy(chosen, tx, ty),
        accuracy(plain[_best_on(plain, sx, sy)], tx, ty),
        dist,
        curves,
        aligned_distances(nets, states, spec),
    )
    log.info(
        "held-out %s: generated %.3f; nearest %.3f, noise %.3f, average %.3f, retrieved %.3f "
        "(with class head %.3f), random %.3f, trained %.3f",
        task,
        result.generated_best,
        result.nearest,
        result.noise,
        result.average,
        result.retrieved,
        result.retrieved_head,
        result.random_init,
        result.trained_mean,
    )
    return result


__all__ = [
    "DEFAULT_SAMPLING",
    "Fidelity",
    "HeldOutTask",
    "SeenTask",
    "held_out_task",
    "seen_tasks",
    "tokenizer_fidelity",
    "train_reference",
    "with_noise",
]
