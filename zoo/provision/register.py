"""Registering chosen generated or adapted weights (``register=True``); assembling the :class:`Provision`."""

from __future__ import annotations

import logging
import time

from zoo.provision.gather import (
    VERIFY,
    Gathered,
    Pick,
)
from zoo.provision.request import (
    Request,
)
from zoo.provision.results import (
    Provision,
)
from zoo.records import CheckpointRecord
from zoo.registry import Registry

log = logging.getLogger(__name__)


def registration(
    reg: Registry, req: Request, found: Gathered, chosen: Pick, reason: str
) -> tuple[CheckpointRecord | None, str]:
    """With ``register=True``, store chosen generated or adapted weights: the record (or None) and the amended
    reason."""
    if not req.register:
        return None, reason
    if chosen.cand.source == "retrieved":
        return None, reason + "; not registered again (it is a registered checkpoint)"
    t = time.perf_counter()
    if chosen.cand.source == "adapted":
        registered = _register_adapted(reg, req, chosen, reason)
    else:
        registered = _register(reg, req, chosen, found, reason)
    found.timings["register"] = time.perf_counter() - t
    return registered, reason + f"; registered as {registered.ref}"


def _register(reg: Registry, req: Request, chosen: Pick, found: Gathered, reason: str) -> CheckpointRecord:
    """Store generated weights: origin "generated"; the generator version in meta and as a tag.

    A checkpoint's ``parent`` can only name another checkpoint, so the generator (the true parent) is
    recorded in ``meta["generator"]`` (with its id and blob hash) and as the tag ``generator.<name>.v<N>``.
    """
    gen_rec, query, policy, neighbours = found.generator, req.query, req.policy, found.neighbours
    assert gen_rec is not None, "generated weights name their generator"
    name = req.name or f"{req.spec.name}-{query.name or 'query'}-generated"
    meta = {
        "generator": gen_rec.ref,
        "generator_id": gen_rec.id,
        "generator_sha256": gen_rec.sha256,
        "sample": chosen.sample,
        "reason": reason,
        "sampling": {
            "temperature": policy.temperature,
            "top_k": policy.top_k,
            "top_p": policy.top_p,
            "guidance": policy.guidance,
            "seed": policy.seed,
        },
        "nearest": {"checkpoint": neighbours[0].checkpoint.ref, "similarity": neighbours[0].similarity}
        if neighbours
        else None,
        "query": query.name or {"fingerprint": query.data.fingerprint if query.data is not None else None},
    }
    metrics = {"labelled_accuracy": chosen.cand.score} if chosen.cand.score is not None else {}
    tags = ["generated", f"generator.{gen_rec.name}.v{gen_rec.version}"]
    return reg.add(
        chosen.module,
        name=name,
        arch=req.spec,
        dataset=query.name,
        origin="generated",  # type: ignore[arg-type]
        metrics=metrics,
        tags=tags,
        meta=meta,
    )


def _register_adapted(reg: Registry, req: Request, chosen: Pick, reason: str) -> CheckpointRecord:
    """Store adapted weights: origin "adapted", parent the source checkpoint, its dataset (the adapted network
    computes what the source learnt on it), the adaptation in meta, the tag ``adapted``. The same weights
    already registered under the name (the same source and seed) give that record back."""
    src, query = chosen.record, req.query
    assert src is not None and chosen.module is not None, "adapted weights name their source"
    name = req.name or f"{req.spec.name}-{query.name or 'query'}-adapted"
    meta = {
        "adapted_from": src.ref,
        "adapted_from_id": src.id,
        "adapted_from_sha256": src.sha256,
        "adapted_from_arch": src.arch.to_json(),
        "adaptation": chosen.adaptation,
        "exact": chosen.exact,
        "source_metrics": dict(src.metrics),
        "similarity": chosen.cand.similarity,
        "reason": reason,
        "query": query.name or {"fingerprint": query.data.fingerprint if query.data is not None else None},
    }
    metrics = {"labelled_accuracy": chosen.cand.score} if chosen.cand.score is not None else {}
    return reg.add(
        chosen.module,
        name=name,
        arch=req.spec,
        dataset=chosen.dataset,
        origin="adapted",
        parent=src.id,
        metrics=metrics,
        tags=["adapted"],
        meta=meta,
        exist_ok=True,
    )


def answer(
    req: Request, found: Gathered, chosen: Pick, reason: str, registered: CheckpointRecord | None
) -> Provision:
    """The answer: the chosen module and the record of what happened."""
    c = chosen.cand
    seconds = time.perf_counter() - req.t0
    prov = Provision(
        module=chosen.module.eval(),
        source=c.source,
        arch=req.spec,
        reason=reason,
        seconds=seconds,  # type: ignore[union-attr]
        min_similarity=req.threshold,
        similarity=c.similarity
        if c.source in ("retrieved", "adapted")
        else (found.neighbours[0].similarity if found.neighbours else None),
        checkpoint=chosen.record,
        generator=found.generator if c.source == "generated" else None,
        sample=chosen.sample,
        score=c.score,
        candidates=tuple(p.cand for p in found.picks),
        dataset=req.query.name,
        registered=registered,
        timings=found.timings,
        adaptation=chosen.adaptation if c.source == "adapted" else None,
        hints=tuple(found.hints) + ((VERIFY,) if any(p.cand.error for p in found.picks) else ()),
    )
    log.info("%s for %s on %s: %s (%.2f s)", prov.source, req.label, req.query, prov.reason, seconds)
    return prov
