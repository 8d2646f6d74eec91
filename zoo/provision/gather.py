"""Gathering a request's candidates: the nearest compatible checkpoints (or, with labelled samples, the pool
to score), same-family checkpoints adapted to the architecture and generated samples when needed, and their
scores.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from zoo.embeddings import (
    TIE_METRICS,
    Neighbor,
    break_ties,
    nearest,
    order_by_metric,
    tie_metric,
)
from zoo.encoders import get_dataset_encoder
from zoo.errors import (
    Hint,
    IntegrityError,
    NoWeightsError,
    ZooError,
    worded,
)
from zoo.provision import generation
from zoo.provision.adapted import AdaptPlan, adapt_module, adaptable_sources, refusals_text
from zoo.provision.generation import (
    NoGenerator,
    select_generator,
)
from zoo.provision.request import (
    Request,
    arch_label,
    fix_hint,
    fix_hints,
)
from zoo.provision.results import (
    Candidate,
    adapted_ref,
)
from zoo.records import CheckpointRecord, GeneratorRecord
from zoo.registry import Registry
from zoo.retrieval.search import by_name, why_none
from zoo.training import accuracy

VERIFY = Hint("registry.verify()", "`zoo verify`")  # how a damaged blob is found

log = logging.getLogger(__name__)


def similarity_text(c: Candidate) -> str:
    return f"similarity {c.similarity:.4f}" if c.similarity is not None else "no dataset vector to compare"


def why_not(req: Request, found: Gathered) -> str:
    """Why no retrieved checkpoint is served as is (the nearest one's similarity, or why there is none)."""
    if not found.neighbours:
        return found.none_reason or f"no checkpoint of {req.label} was looked for"
    n = found.neighbours[0]
    return (
        f"the nearest compatible checkpoint {n.checkpoint.ref} (dataset {n.dataset!r}) has similarity "
        f"{n.similarity:.4f} < {req.threshold:g}"
    )


@dataclass
class Pick:
    """A candidate while the request runs: its record and, once loaded, adapted or sampled, its module."""

    cand: Candidate
    module: nn.Module | None = None
    record: CheckpointRecord | None = None  # a retrieved checkpoint's record; adapted: the source's
    dataset: str | None = None  # a retrieved (or the source) checkpoint's training dataset
    sample: int | None = None
    plan: AdaptPlan | None = None  # adapted: how the source is adapted (done when the module is needed)
    adaptation: str | None = None  # adapted, once done: what was done (Adapted.provenance)
    exact: bool | None = None  # adapted: whether the module computes the source's function


def ensure_loaded(reg: Registry, p: Pick, device: str | torch.device, notes: list[str]) -> bool:
    """Load (or adapt) ``p``'s module unless it has one; a damaged blob, or a source that cannot be adapted
    after all, marks the candidate and is skipped, not fatal."""
    if p.module is not None:
        return True
    try:
        if p.plan is not None:
            p.module, done = adapt_module(reg, p.record, p.plan, device)  # type: ignore[arg-type]
            p.adaptation, p.exact = done.provenance, done.exact
        else:
            p.module = reg.load(p.record, device=device)  # type: ignore[arg-type]
    except IntegrityError as exc:
        p.cand = dataclasses.replace(p.cand, error=worded(exc))
        notes.append(f"skipped {p.cand.ref}: its weights are damaged ({VERIFY.in_use()} reports it)")
        log.warning("skipping %s: %s", p.cand.ref, worded(exc))
        return False
    except ZooError as exc:
        if p.plan is None:
            raise
        p.cand = dataclasses.replace(p.cand, error=str(exc))
        notes.append(f"skipped {p.cand.ref}: it could not be adapted ({exc})")
        log.warning("skipping %s: %s", p.cand.ref, exc)
        return False
    return True


def retrieved_pick(n: Neighbor) -> Pick:
    return Pick(
        Candidate("retrieved", n.checkpoint.ref, n.similarity, None), record=n.checkpoint, dataset=n.dataset
    )


def _ranked_by_similarity(
    sims: Mapping[int, float | None], metrics: Mapping[int, Mapping[str, float]], metric: str | None
) -> list[int]:
    """Ids, most similar first (ties by recorded metrics, then newest), then those without a similarity."""
    known = sorted(((s, i) for i, s in sims.items() if s is not None), key=lambda t: (-t[0], -t[1]))
    unknown = [(i, metrics.get(i, {})) for i, s in sims.items() if s is None]
    return [i for _, i in break_ties(known, metrics, metric)] + order_by_metric(unknown, metric)


def scoring_pool(reg: Registry, req: Request, query: np.ndarray | None, floor: float | None) -> list[Pick]:
    """The registered checkpoints of exactly ``req.spec`` to score on labelled samples (module docs, point 4).

    Every one while there are at most ``policy.score_pool`` (those with a similarity of at least ``floor``
    when given); above that, the ``policy.candidates`` nearest and then, in turn, the next of four rankings
    (nearest; the best of each dataset, datasets nearest first; the best by recorded metric, of those that
    record it; the newest version of each name) until the pool holds ``score_pool``. Returned most similar
    first, those without a dataset vector last.
    """
    spec, policy = req.spec, req.policy
    enc = get_dataset_encoder(policy.encoder)
    version = enc.version
    names = sorted(set(TIE_METRICS) | ({policy.metric} if policy.metric else set()))
    found = reg.repos.vectors.scoring_candidates(spec, names, enc.id, version)
    rows, metrics, vectors = found.checkpoints, found.metrics, found.vectors
    ds_sim = (
        {name: float(v @ query) for name, v in vectors.items() if v.shape == query.shape}
        if query is not None
        else {}
    )
    if req.query.name is not None:  # the very dataset asked for, even before it has a vector
        ds_sim.setdefault(req.query.name, 1.0)
    dataset_of = {int(r[0]): r[2] for r in rows}
    sims = {cid: ds_sim.get(ds) if ds is not None else None for cid, ds in dataset_of.items()}
    if floor is not None:
        sims = {cid: sim for cid, sim in sims.items() if sim is not None and sim >= floor}
    nearest_first = _ranked_by_similarity(sims, metrics, policy.metric)
    if len(sims) <= policy.score_pool:
        pool = nearest_first
    else:
        name = tie_metric((metrics[cid] for cid in sims), policy.metric)
        by_metric = order_by_metric(((cid, metrics[cid]) for cid in sims if name in metrics[cid]), name)
        newest: dict[str, int] = {}
        for cid, ckpt_name, _ in rows:
            if int(cid) in sims:
                newest[ckpt_name] = max(newest.get(ckpt_name, 0), int(cid))
        newest_first = sorted(newest.values(), reverse=True)
        groups: dict[str | None, list[int]] = {}
        for cid in sims:
            groups.setdefault(dataset_of[cid], []).append(cid)
        order = sorted(
            groups, key=lambda d: (d is None, -ds_sim.get(d, -2.0) if d is not None else 0.0, d or "")
        )
        per_dataset = [order_by_metric(((c, metrics[c]) for c in groups[d]), policy.metric)[0] for d in order]
        size = max(policy.score_pool, policy.candidates)
        chosen = dict.fromkeys(nearest_first[: policy.candidates])
        rankings = [iter(nearest_first), iter(per_dataset), iter(by_metric), iter(newest_first)]
        while len(chosen) < size and rankings:
            for it in list(rankings):
                cid = next((c for c in it if c not in chosen), None)
                if cid is None:
                    rankings.remove(it)
                elif len(chosen) < size:
                    chosen[cid] = None
        pool = [cid for cid in nearest_first if cid in chosen]  # most similar first, as everywhere
    records = {r.id: r for r in reg.get_many(pool)}
    return [
        Pick(
            Candidate("retrieved", records[cid].ref, sims[cid], None),
            record=records[cid],
            dataset=dataset_of[cid],
        )
        for cid in pool
        if cid in records
    ]


@dataclass
class Gathered:
    """What a request gathered: retrieval's neighbours and candidates, adapted checkpoints, generated samples,
    their scores."""

    neighbours: list[Neighbor] = field(default_factory=list)  # the `candidates` nearest compatible ones
    retrieved: list[Pick] = field(default_factory=list)  # those, or (with labelled samples) the scoring pool
    adapt_tried: bool = False  # adaptable checkpoints were looked for
    adapted: list[Pick] = field(default_factory=list)  # same-family checkpoints to adapt, nearest first
    unadaptable: list[str] = field(default_factory=list)  # "<arch>: <reason>" per family architecture refused
    generator: GeneratorRecord | None = None  # the generator version sampled
    generated: list[Pick] = field(default_factory=list)  # its samples
    notes: list[str] = field(default_factory=list)  # what went wrong (no generator, damaged weights)
    none_reason: str = ""  # why retrieval found no neighbour (zoo.retrieval.why_none), when it found none
    hints: list[Hint] = field(default_factory=list)  # the fixes the reasons and notes name
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def picks(self) -> list[Pick]:
        """Everything considered: the retrieved checkpoints, the adapted ones, then the generated samples (the
        order in which ties are broken)."""
        return self.retrieved + self.adapted + self.generated


def similar_enough(req: Request, neighbours: Sequence[Neighbor]) -> list[Neighbor]:
    """The neighbours similar enough to be served as they are."""
    return [n for n in neighbours if n.similarity >= req.threshold]


def similar_adapted(req: Request, found: Gathered) -> list[Pick]:
    """The adapted candidates whose source's dataset is similar enough (served as retrieved ones would be)."""
    return [p for p in found.adapted if p.cand.similarity is not None and p.cand.similarity >= req.threshold]


def why_not_adapted(req: Request, found: Gathered) -> str:
    """Why no adapted checkpoint is served as is ("" when adaptation was not tried, had nothing to try, or one
    is similar enough)."""
    if not found.adapt_tried or similar_adapted(req, found):
        return ""
    if not found.adapted:
        return refusals_text(req, found.unadaptable)
    p = found.adapted[0]
    src = p.record
    assert src is not None and p.cand.similarity is not None, "an adapted candidate names its source"
    return (
        f"the nearest adaptable checkpoint {src.ref} ({arch_label(src.arch)}, dataset {p.dataset!r}) has "
        f"similarity {p.cand.similarity:.4f} < {req.threshold:g}"
    )


def why_nothing(req: Request, found: Gathered) -> str:
    """Why neither a retrieved nor an adapted checkpoint is served as is."""
    adapted = why_not_adapted(req, found)
    return f"{why_not(req, found)}; {adapted}" if adapted else why_not(req, found)


def gather(reg: Registry, req: Request) -> Gathered:
    """Gather the candidates: retrieval's (unless generating), generated samples (when needed), their scores.

    Raises :class:`~zoo.errors.NoWeightsError` when retrieval alone is asked for and nothing is similar
    enough, or when generation is needed and nothing can stand in for it.
    """
    found = Gathered()
    if req.mode != "generate":
        _gather_retrieved(reg, req, found)
    similar = similar_enough(req, found.neighbours)
    if req.mode == "retrieve" and not similar:
        if found.neighbours:
            lower = Hint("min_similarity=", "--min-similarity")
            generate = Hint("zoo.retrieve_or_generate(...)", "`zoo get` without --retrieve-only")
            fix = f"Lower {lower} to accept it, or let zoo generate weights ({generate})"
            found.hints += [lower, generate]
        else:
            fix = fix_hint(req.spec)
            found.hints += fix_hints(req.spec)
        raise NoWeightsError(req.label, str(req.query), why_not(req, found), fix).hinting(*found.hints)
    if req.mode == "auto" and req.policy.adapt and not similar:
        _gather_adapted(reg, req, found)
    good = bool(similar) or bool(similar_adapted(req, found))  # something is served as is (without labels)
    if req.mode == "generate" or (
        req.mode == "auto" and (not good or (req.labelled is not None and req.policy.challenge))
    ):
        _gather_generated(reg, req, found, good)
    if req.labelled is not None:
        _gather_scores(reg, req, found)
    return found


def _gather_retrieved(reg: Registry, req: Request, found: Gathered) -> None:
    """The nearest compatible checkpoints; with labelled samples, the pool of checkpoints to score."""
    t = time.perf_counter()
    policy = req.policy
    qvec = req.query.vector_or_none(policy.encoder)
    if qvec is None:  # a registered name without a vector yet: the checkpoints registered with that name
        assert req.query.name is not None, "only a registered name comes without a vector"
        enc = get_dataset_encoder(policy.encoder)
        found.neighbours = by_name(
            reg, req.spec, req.query.name, policy.candidates, metric=policy.metric, encoder=enc
        )
    else:
        found.neighbours = nearest(
            reg,
            req.spec,
            qvec,
            k=policy.candidates,
            encoder=policy.encoder,
            match="exact",
            metric=policy.metric,
        )
    if not found.neighbours:
        found.none_reason, hints = why_none(
            reg,
            req.spec,
            req.query.name or "NAME",
            encoder=policy.encoder,
            label=req.label,
            suggest_add=False,
        )
        found.hints += hints
    if req.labelled is not None:  # labels decide: score a pool that holds the best, not just the nearest few
        found.retrieved = scoring_pool(reg, req, qvec, req.threshold if req.mode == "retrieve" else None)
    else:
        found.retrieved = [retrieved_pick(n) for n in found.neighbours]
    found.timings["retrieve"] = time.perf_counter() - t


def _gather_adapted(reg: Registry, req: Request, found: Gathered) -> None:
    """Same-family checkpoints that can be adapted to the architecture, nearest first (adapted only when
    served or scored)."""
    t = time.perf_counter()
    sources = adaptable_sources(reg, req, req.query.vector_or_none(req.policy.encoder))
    found.adapt_tried = True
    found.unadaptable = sources.refused
    found.adapted = [
        Pick(
            Candidate("adapted", adapted_ref(s.record.ref, req.spec), s.similarity, None),
            record=s.record,
            dataset=s.dataset,
            plan=s.plan,
        )
        for s in sources.found
    ]
    found.timings["adapt"] = time.perf_counter() - t


def _gather_generated(reg: Registry, req: Request, found: Gathered, good: bool) -> None:
    """Samples from the generator (best-of-n with labelled samples, else one); without one, a note or an
    error. ``good``: a retrieved or adapted checkpoint is similar enough to be served as is."""
    t = time.perf_counter()
    try:
        gen_rec, gen = select_generator(reg, req)
    except NoGenerator as exc:
        no_gen = str(exc)
        no_match = why_nothing(req, found)
        policy = req.policy
        servable = found.retrieved or found.adapted
        if req.mode == "generate" or not servable or (not good and not policy.fallback_to_nearest):
            reason = no_gen if req.mode == "generate" else f"{no_match}, and {no_gen}"
            found.hints += fix_hints(req.spec)
            raise NoWeightsError(req.label, str(req.query), reason, fix_hint(req.spec)).hinting(
                *found.hints
            ) from None
        if good:
            found.notes.append(f"no generator to compare with ({no_gen})")
        else:
            served = "the best-scoring" if req.labelled is not None else "the nearest"
            what = "compatible or adapted checkpoint" if found.adapted else "compatible checkpoint"
            found.notes.append(
                f"{no_match}, and {no_gen}; served {served} {what} anyway "
                f"(fallback_to_nearest). {fix_hint(req.spec)}"
            )
            found.hints += fix_hints(req.spec)
            log.warning("%s: %s", req.label, found.notes[-1])
        return
    n = req.policy.samples if req.labelled is not None else 1
    nets = generation.sample(reg, req, gen, n)
    found.generator = gen_rec
    found.generated = [
        Pick(Candidate("generated", f"{gen_rec.ref}#{i}", None, None), net, sample=i)
        for i, net in enumerate(nets)
    ]
    found.timings["generate"] = time.perf_counter() - t


def _gather_scores(reg: Registry, req: Request, found: Gathered) -> None:
    """Score the eligible candidates on the labelled samples (in retrieve mode only similar-enough
    checkpoints); a candidate whose weights are damaged is noted and left unscored."""
    assert req.labelled is not None, "scores need labelled samples"
    eligible = [
        p
        for p in found.picks
        if req.mode != "retrieve" or (p.cand.similarity is not None and p.cand.similarity >= req.threshold)
    ]
    t = time.perf_counter()
    usable = [p for p in eligible if ensure_loaded(reg, p, req.device, found.notes)]
    for p in usable:
        p.cand = dataclasses.replace(p.cand, score=score(p.module, req.labelled, req.device))  # type: ignore[arg-type]
    found.timings["score"] = time.perf_counter() - t


def score(module: nn.Module, lab: tuple[torch.Tensor, torch.Tensor], device: str | torch.device) -> float:
    return accuracy(module, lab[0].to(device), lab[1].to(device))
