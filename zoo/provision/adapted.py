"""The third source: checkpoints of another architecture of the family, adapted to the requested one.

When no checkpoint of exactly the requested architecture is similar enough, the nearest checkpoints of its
family that :func:`zoo.adapt` can turn into it (Net2Net: wider and/or deeper, function-preserving; shallower
only when the policy allows, approximately) become candidates. Which architectures qualify is probed once
per architecture without reading any weights; the weights are read and adapted only for a candidate that is
served or scored (:func:`adapt_module`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from zoo.adaptation import Adapted, adapt
from zoo.encoders import get_dataset_encoder
from zoo.errors import AdaptationError, ZooError
from zoo.plugins import get_family
from zoo.provision.request import Request, arch_label
from zoo.records import ArchSpec, CheckpointRecord
from zoo.registry import Registry
from zoo.retrieval import TIE_METRICS, lower_is_better, tie_metric

log = logging.getLogger(__name__)

REFUSALS_SHOWN = 3  # architectures named in a message saying why none of the family could be adapted


@dataclass(frozen=True)
class AdaptPlan:
    """How one source checkpoint is to be adapted: to what, with which seed, and whether exactly."""

    target: ArchSpec  # the requested architecture
    seed: int | None  # adapt()'s seed (None: a fresh one, recorded in the provenance)
    allow_shallower: bool  # drop blocks of a deeper source (approximate)
    exact: bool  # probed: the adapted network computes the source's function (not shallower)


@dataclass(frozen=True)
class AdaptSource:
    """A checkpoint that can be adapted to the request, and how near its dataset is."""

    record: CheckpointRecord  # the source checkpoint
    dataset: str  # the dataset it was trained on
    similarity: float  # that dataset's similarity to the query
    plan: AdaptPlan


@dataclass
class AdaptSources:
    """What the search for adaptable checkpoints found: the candidates, nearest first, and why the family's
    other architectures could not be adapted."""

    found: list[AdaptSource] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "<arch>: <reason>" per architecture refused


def probe(source: ArchSpec, target: ArchSpec, allow_shallower: bool) -> tuple[bool | None, str]:
    """Whether weights of ``source`` can be adapted to ``target``, without reading any: ``(True, "")``
    exactly, ``(False, why)`` only approximately (shallower, when ``allow_shallower``), ``(None, why)`` not
    at all.

    :func:`zoo.adapt` refuses an unsupported pair with :class:`~zoo.errors.AdaptationError` before it reads
    the weights (tests/zoo/test_adaptation.py holds it to that), so an empty state dict probes the pair: a
    supported pair gets past every check and is then refused for its (missing) weights.
    """
    try:
        adapt({}, source, target)
    except AdaptationError as exc:
        if not allow_shallower:
            return None, exc.reason
        try:
            adapt({}, source, target, allow_shallower=True)
        except AdaptationError as again:
            return None, again.reason
        except ZooError:
            return False, exc.reason
    except ZooError:
        return True, ""
    raise AssertionError("adapt() accepted an empty state dict")  # pragma: no cover


def adaptable_sources(reg: Registry, req: Request, query: np.ndarray | None) -> AdaptSources:
    """The ``policy.adapt_candidates`` checkpoints of ``req.spec``'s family (other architectures, with a
    dataset vector by the policy's encoder) that can be adapted to it, ranked: the most similar dataset first;
    among equals exact adaptations before approximate ones, then by recorded metric (``policy.metric``, else
    the first of :data:`~zoo.embeddings.TIE_METRICS` they record: an exact adaptation keeps its source's
    accuracy), then the larger source (fewer new channels and blocks), then the newest. ``query`` is None
    when the dataset asked for is a registered name without a vector: only checkpoints registered with
    exactly that name match it (similarity 1.0)."""
    spec, policy = req.spec, req.policy
    out = AdaptSources()
    _, rows = reg.repos.vectors.compatible_if_changed(spec, "family", False, None)
    newest: dict[str, int] = {}  # arch key -> its newest checkpoint with a dataset (for its spec)
    for cid, _, key in rows or ():
        if key != spec.key:
            newest[key] = max(newest.get(key, 0), int(cid))
    if not newest:
        return out
    plans: dict[str, tuple[ArchSpec, AdaptPlan, int]] = {}  # arch key -> (source spec, plan, parameters)
    for rec in sorted(reg.get_many(newest.values()), key=lambda r: r.arch.key):
        exact, why = probe(rec.arch, spec, policy.adapt_shallower)
        if exact is None:
            out.refused.append(f"{arch_label(rec.arch)}: {why}")
            continue
        plan = AdaptPlan(spec, policy.seed, policy.adapt_shallower and not exact, exact)
        plans[rec.arch.key] = (rec.arch, plan, rec.num_params)
    if not plans:
        return out
    enc = get_dataset_encoder(policy.encoder)
    names = sorted(set(TIE_METRICS) | ({policy.metric} if policy.metric else set()))
    entries: list[
        tuple[int, str, float, str, dict[str, float]]
    ] = []  # (id, dataset, similarity, key, metrics)
    for key, (src_spec, _, _) in plans.items():
        found = reg.repos.vectors.scoring_candidates(src_spec, names, enc.id, enc.version)
        sims = (
            {n: float(v @ query) for n, v in found.vectors.items() if v.shape == query.shape}
            if query is not None
            else {}
        )
        if req.query.name is not None:  # the very dataset asked for, even before it has a vector
            sims.setdefault(req.query.name, 1.0)
        entries += [
            (int(cid), ds, sims[ds], key, found.metrics.get(int(cid), {}))
            for cid, _, ds in found.checkpoints
            if ds is not None and ds in sims
        ]
    metric = tie_metric((e[4] for e in entries), policy.metric)
    sign = 1.0 if metric is not None and lower_is_better(metric) else -1.0

    def rank(e: tuple[int, str, float, str, dict[str, float]]) -> tuple[float, bool, int, float, int, int]:
        value = e[4].get(metric) if metric is not None else None
        recorded = value is not None and value == value  # not NaN
        plan, params = plans[e[3]][1], plans[e[3]][2]
        return (
            -e[2],
            not plan.exact,
            0 if recorded else 1,
            sign * value if recorded else 0.0,
            -params,
            -e[0],
        )  # type: ignore[operator]

    top = sorted(entries, key=rank)[: policy.adapt_candidates]
    records = {r.id: r for r in reg.get_many([e[0] for e in top])}
    out.found = [
        AdaptSource(records[cid], ds, sim, plans[key][1]) for cid, ds, sim, key, _ in top if cid in records
    ]
    return out


def adapt_module(
    reg: Registry, source: CheckpointRecord, plan: AdaptPlan, device: str | torch.device
) -> tuple[nn.Module, Adapted]:
    """The source checkpoint's weights (hash-verified) adapted to ``plan.target``: the module (eval mode, on
    ``device``) and what :func:`zoo.adapt` did. Raises what loading or adapting raises."""
    seed = plan.seed if plan.seed is not None else secrets.randbelow(2**31)
    done = adapt(
        reg.load_state_dict(source),
        source.arch,
        plan.target,
        seed=seed,
        allow_shallower=plan.allow_shallower,
    )
    module = get_family(plan.target.family).load(plan.target, done.state_dict)
    log.info("adapted %s to %s (exact: %s)", source.ref, arch_label(plan.target), done.exact)
    return module.to(device).eval(), done


def refusals_text(req: Request, refused: Sequence[str]) -> str:
    """Why no checkpoint of the family could be adapted to the request ("" when there was none to adapt)."""
    if not refused:
        return ""
    more = f"; and {len(refused) - REFUSALS_SHOWN} more" if len(refused) > REFUSALS_SHOWN else ""
    return (
        f"no checkpoint of family {req.spec.family!r} can be adapted to it "
        f"({'; '.join(refused[:REFUSALS_SHOWN])}{more})"
    )
