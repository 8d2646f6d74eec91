"""Choosing among the gathered candidates and explaining the choice: pure functions of what was gathered."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from zoo.provision.gather import (
    Gathered,
    Pick,
    ensure_loaded,
    similar_adapted,
    similar_enough,
    similarity_text,
    why_not,
    why_nothing,
)
from zoo.provision.request import (
    Request,
    arch_label,
)
from zoo.registry import Registry

log = logging.getLogger(__name__)


def choose(req: Request, found: Gathered) -> list[Pick]:
    """The candidates in the order they are to be served (a pure function of what was gathered and scored).

    With labelled samples: the highest-scoring one (ties: the first in the order of
    :attr:`Gathered.picks`: a retrieved checkpoint, then an adapted one, then a sample; the more similar
    first). Otherwise: the similar-enough retrieved checkpoints, nearest first; else the adapted ones whose
    source is similar enough, nearest first; else the first generated sample; else (``fallback_to_nearest``)
    every retrieved and adapted checkpoint, the more similar first (a retrieved one first among equals). The
    first of them whose weights load (or adapt) is served (:func:`first_usable`).
    """
    if req.labelled is not None:
        scored = [p for p in found.picks if p.cand.score is not None]
        best = max(scored, key=lambda p: p.cand.score, default=None)  # type: ignore[arg-type,return-value]
        return [best] if best is not None else []
    if similar_enough(req, found.neighbours) and req.mode != "generate":
        thr = req.threshold
        return [p for p in found.retrieved if p.cand.similarity is not None and p.cand.similarity >= thr]
    adapted = similar_adapted(req, found)
    if adapted:
        return adapted
    if found.generated:
        return found.generated[:1]
    fallback = found.retrieved + found.adapted  # fallback_to_nearest; sorted() is stable: retrieved first
    return sorted(fallback, key=lambda p: -p.cand.similarity if p.cand.similarity is not None else 2.0)


def first_usable(
    reg: Registry, order: Sequence[Pick], device: str | torch.device, notes: list[str]
) -> Pick | None:
    """The first of ``order`` whose weights load (a damaged one is noted and skipped); None if none does."""
    return next((p for p in order if ensure_loaded(reg, p, device, notes)), None)


def explain(req: Request, found: Gathered, chosen: Pick) -> str:
    """The reason text: what was chosen and why, then the notes gathered on the way (a pure function)."""
    thr, c = req.threshold, chosen.cand
    if req.labelled is None:
        if c.source == "generated":
            gen_ref = found.generator.ref if found.generator is not None else "?"
            reason = (
                f"{why_nothing(req, found)}; generated with {gen_ref}"
                if req.mode == "auto"
                else f"generated with {gen_ref} (asked to)"
            )
        elif c.source == "adapted":
            reason = _adapted_text(req, chosen)
            if c.similarity is not None and c.similarity >= thr:
                reason = f"{why_not(req, found)}; {reason}"
        elif c.similarity is not None and c.similarity >= thr and _by_name(found):
            reason = (
                f"checkpoint {c.ref} is registered with exactly dataset {chosen.dataset!r}, which has no "
                "vector yet (an exact name match counts as similarity 1); retrieved it"
            )
        elif c.similarity is not None and c.similarity >= thr:
            reason = (
                f"the nearest compatible checkpoint {c.ref} (dataset {chosen.dataset!r}) has "
                f"similarity {c.similarity:.4f} >= {thr:g}; retrieved it"
            )
        else:
            reason = ""  # the fallback note says it all
    else:
        scored_r = [p for p in found.retrieved if p.cand.score is not None]
        scored_a = [p for p in found.adapted if p.cand.score is not None]
        scored_g = [p for p in found.generated if p.cand.score is not None]
        counts = (
            f"{len(scored_r)} retrieved, {len(scored_a)} adapted and {len(scored_g)} generated"
            if found.adapted
            else f"{len(scored_r)} retrieved and {len(scored_g)} generated"
        )
        head = f"scored {counts} candidate(s) on {len(req.labelled[1])} labelled samples: "
        best_r = max(scored_r, key=lambda p: p.cand.score, default=None)  # type: ignore[arg-type,return-value]
        best_a = max(scored_a, key=lambda p: p.cand.score, default=None)  # type: ignore[arg-type,return-value]
        best_g = max(scored_g, key=lambda p: p.cand.score, default=None)  # type: ignore[arg-type,return-value]
        if c.source == "generated" and best_r is not None:
            reason = head + (
                f"generated sample {c.ref} scored {c.score:.4f}, beating the best retrieved checkpoint "
                f"{best_r.cand.ref} ({best_r.cand.score:.4f}, {similarity_text(best_r.cand)})"
            )
        elif c.source == "generated":
            reason = head + f"best generated sample {c.ref} scored {c.score:.4f}"
            if req.mode == "auto":
                reason += f" ({why_not(req, found)})"
        elif c.source == "adapted":
            reason = head + f"adapted {c.ref} scored best ({c.score:.4f}, {similarity_text(c)}): "
            reason += _adapted_text(req, chosen)
            if best_r is not None:
                reason += (
                    f"; the best retrieved checkpoint {best_r.cand.ref} scored {best_r.cand.score:.4f} "
                    f"({similarity_text(best_r.cand)})"
                )
        else:
            reason = head + f"retrieved {c.ref} scored best ({c.score:.4f}, {similarity_text(c)}"
            reason += (
                f", below the threshold {thr:g})" if c.similarity is not None and c.similarity < thr else ")"
            )
        if best_a is not None and c.source != "adapted":
            reason += f"; the best adapted checkpoint {best_a.cand.ref} scored {best_a.cand.score:.4f}"
        if best_g is not None and c.source != "generated":
            reason += f"; the best generated sample {best_g.cand.ref} scored {best_g.cand.score:.4f}"
    note = getattr(chosen.module, "generation_note", None) if c.source == "generated" else None
    if isinstance(note, str) and note:  # what the generator says it did (GeneratorKind.sample)
        reason += f"; {note}"
    return "; ".join(x for x in [reason, *found.notes] if x)


def _by_name(found: Gathered) -> bool:
    """Whether retrieval matched the dataset's name alone (it has no vector yet: zoo.retrieval.by_name)."""
    return bool(found.neighbours) and found.neighbours[0].method == "name"


def _adapted_text(req: Request, chosen: Pick) -> str:
    """What was adapted to what, and how (the full account is :attr:`Provision.adaptation`)."""
    src, c = chosen.record, chosen.cand
    assert src is not None, "an adapted candidate names its source"
    sim = f"similarity {c.similarity:.4f}" if c.similarity is not None else "no dataset vector"
    cmp = (">=" if c.similarity >= req.threshold else "<") if c.similarity is not None else ""
    how = (
        "Net2Net, function-preserving: it computes the source's function"
        if chosen.exact
        else "Net2Net, approximate: blocks were dropped"
    )
    return (
        f"adapted checkpoint {src.ref} ({arch_label(src.arch)}, dataset {chosen.dataset!r}, {sim}"
        f"{f' {cmp} {req.threshold:g}' if cmp else ''}) to {req.label} ({how})"
    )
