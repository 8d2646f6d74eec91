"""Scoring a generator without task data, and the sampling settings evaluations share.

- :func:`weight_space_score`: how close a generator's samples land to the registered weights of their
  dataset (IGPG's default evaluator in re-indexing: ``IGPGKind.score``);
- :func:`sample_for`: networks for a registered dataset, with :data:`DEFAULT_SAMPLING`.

The tiny-zoo evaluation protocol (tokenizer fidelity, seen and held-out tasks, fine-tuning curves) needs the
tiny zoo's tasks and lives with the main job: :mod:`zoo_demo.evaluation`.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from igpg.generator import Generator
from zoo import ArchSpec, CheckpointRecord, align, embed_arch, get_embedding, permutation_spec

log = logging.getLogger(__name__)

DEFAULT_SAMPLING: dict[str, float] = {"temperature": 1.0, "top_p": 0.9}  # what the protocol samples with


def flat_weights(module: nn.Module) -> torch.Tensor:
    """Every floating tensor of ``module``'s state dict, flattened and concatenated in key order (so a state
    dict read from a file, whatever its order, gives the same layout: :func:`flat_state`)."""
    return flat_state(module.state_dict())


def distances(nets: Sequence[nn.Module], train_flats: torch.Tensor) -> tuple[float, ...]:
    """Each network's relative L2 distance to the nearest row of ``train_flats`` (flat weights)."""
    norms = train_flats.norm(dim=1)
    return tuple(float(((train_flats - flat_weights(n)).norm(dim=1) / norms).min()) for n in nets)


def aligned_distances(
    nets: Sequence[nn.Module], train_states: Sequence[Mapping[str, torch.Tensor]], spec: ArchSpec
) -> tuple[float, ...]:
    """Each network's relative L2 distance to the nearest training state dict after weight matching it to
    that one (:func:`zoo.align`): the distance modulo hidden-unit permutations, so a permuted copy of a
    training checkpoint counts as a copy. Falls back to :func:`distances` for architectures without a
    permutation spec. Cost: one weight matching per (network, training checkpoint) pair (about 3 ms for
    cnn-tiny on one core)."""
    flats = [flat_state(s) for s in train_states]  # each training checkpoint flattened once
    if permutation_spec(spec) is None:
        return distances(nets, torch.stack(flats))
    out = []
    for net in nets:
        best = math.inf
        for ref, r in zip(train_states, flats):
            moved = flat_state(align(ref, [net.state_dict()], spec)[0])
            best = min(best, float((moved - r).norm() / r.norm()))
        out.append(best)
    return tuple(out)


def flat_state(state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Every floating tensor of a state dict, flattened and concatenated in key order (as
    :func:`flat_weights`)."""
    return torch.cat(
        [state[k].detach().reshape(-1).float() for k in sorted(state) if state[k].dtype.is_floating_point]
    )


_flat, _distances = flat_weights, distances


def sample_for(
    registry,
    gen: Generator,
    spec: ArchSpec,
    dataset: str,
    *,
    n: int = 1,  # type: ignore[no-untyped-def]
    seed: int = 0,
    sampling: Mapping[str, float] | None = None,
) -> list[nn.Module]:
    """``n`` networks of ``spec`` conditioned on registered dataset ``dataset`` (any family, any task)."""
    ds = torch.tensor(get_embedding(registry, "dataset", dataset, gen.dataset_encoder).vector)
    arch = torch.tensor(embed_arch(registry, spec, encoder=gen.text_encoder).vector)
    return gen.sample(
        spec, ds, arch, n=n, seed=seed, **dict(DEFAULT_SAMPLING if sampling is None else sampling)
    )


def weight_space_score(
    registry,
    gen: Generator,
    checkpoints: Sequence[CheckpointRecord],  # type: ignore[no-untyped-def]
    seed: int = 0,
    *,
    samples: int = 2,
    max_groups: int = 8,
    max_refs: int = 8,
    sampling: Mapping[str, float] | None = None,
) -> float:
    """A generator's score that needs no task data: how close its samples come to the registered weights.

    ``checkpoints`` are grouped by (architecture, dataset); for the ``max_groups`` groups with the newest
    checkpoints, ``samples`` networks are drawn for that dataset (seed ``seed``, the protocol's sampling) and
    each is compared with the group's ``max_refs`` newest checkpoints: its relative L2 distance to the
    nearest. The score is ``1 - mean distance``: 1 when every sample is a registered network of its dataset,
    lower the further off samples land (0 at a distance as large as the weights themselves). Higher is
    better; two generators scored on the same checkpoints and seed are comparable.
    """
    groups: dict[tuple[str, str], list[CheckpointRecord]] = {}
    for rec in sorted(checkpoints, key=lambda r: -r.id):
        if rec.dataset and rec.arch.key in gen.stats:
            groups.setdefault((rec.arch.key, rec.dataset), []).append(rec)
    if not groups:
        raise ValueError(
            "no checkpoint of an architecture this generator knows, with a dataset, to score it on"
        )
    dists: list[float] = []
    for (_, dataset), recs in list(groups.items())[:max_groups]:
        nets = sample_for(registry, gen, recs[0].arch, dataset, n=samples, seed=seed, sampling=sampling)
        refs = torch.stack([_flat(registry.load(r)) for r in recs[:max_refs]])
        dists.extend(_distances(nets, refs))
    score = 1.0 - statistics.mean(dists)
    log.info(
        "weight-space score %.4f over %d groups, %d samples", score, min(len(groups), max_groups), len(dists)
    )
    return score


__all__ = [
    "DEFAULT_SAMPLING",
    "aligned_distances",
    "distances",
    "flat_state",
    "flat_weights",
    "sample_for",
    "weight_space_score",
]
