"""What a request returns: the policy it follows (:class:`RetrievalPolicy`), every network it considered
(:class:`Candidate`) and the answer (:class:`Provision`). See :mod:`zoo.provision` for the policy in words.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safetensors.torch import save as st_save
from torch import nn

from zoo.atomic import atomic_write
from zoo.errors import (
    ConfigError,
    Hint,
)
from zoo.intake import unshare
from zoo.plugins import get_family
from zoo.records import ArchSpec, CheckpointRecord, GeneratorRecord

log = logging.getLogger(__name__)

DEFAULT_MIN_SIMILARITY = (
    0.99  # dataset cosine similarity a checkpoint needs to be served as is (see module docs)
)
SCORE_POOL = 64  # with labelled samples: score every compatible checkpoint up to this many (see module docs)
Source = Literal["retrieved", "adapted", "generated"]


def adapted_ref(source_ref: str, target: ArchSpec) -> str:
    """How a candidate adapted from checkpoint ``source_ref`` to ``target`` is named: ``name:vN->arch``."""
    return f"{source_ref}->{target.name}"


@dataclass(frozen=True)
class RetrievalPolicy:
    """How :func:`retrieve_or_generate` chooses between existing and generated weights
    (see the module docs)."""

    min_similarity: float = (
        DEFAULT_MIN_SIMILARITY  # a checkpoint this similar (dataset cosine) is served as is
    )
    candidates: int = (
        3  # without labels: nearest compatible checkpoints considered; with: these always get scored
    )
    score_pool: int = (
        SCORE_POOL  # with labels: all compatible checkpoints scored up to this many, else a pool this big
    )
    metric: str | None = (
        None  # recorded metric ranking equally similar checkpoints; None: embeddings.TIE_METRICS
    )
    samples: int = 5  # generated networks scored for best-of-n (with labelled samples; one without)
    score_with_labels: bool = True  # with labelled samples, the highest-scoring candidate wins
    challenge: bool = (
        True  # with labelled samples, generate even when a checkpoint is similar enough; scores decide
    )
    fallback_to_nearest: bool = (
        True  # no generator for the arch: serve the nearest compatible (or adapted) checkpoint anyway
    )
    adapt: bool = True  # nothing of the arch similar enough: adapt same-family checkpoints to it (Net2Net)
    adapt_candidates: int = (
        3  # same-family checkpoints adapted: listed (the first served) or, with labels, scored
    )
    adapt_shallower: bool = False  # also adapt deeper ones by dropping blocks (approximate, not exact)
    generator: str | int | None = (
        None  # a generator ref ("igpg:v3", "igpg@promoted", id); None: see the module docs
    )
    encoder: str | None = None  # dataset encoder for retrieval; None: the registry's default
    temperature: float = 1.0  # sampling temperature (0: greedy)
    top_k: int | None = None  # keep only the k likeliest codes per step
    top_p: float | None = 0.9  # nucleus sampling (bench_generator: keeps samples on one checkpoint's track)
    guidance: float = 1.0  # classifier-free guidance (1: none)
    seed: int | None = 0  # sampling seed: the same request gives the same weights; None draws afresh

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ConfigError(
                f"min_similarity must lie in [-1, 1] (a cosine similarity); got {self.min_similarity}"
            )
        for count in ("candidates", "samples", "score_pool", "adapt_candidates"):
            value = getattr(self, count)
            if value < 1:
                raise ConfigError(f"{count}={value!r}: it counts networks, so it must be a whole number >= 1")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 is greedy); got {self.temperature}")

    def with_options(self, **options: Any) -> RetrievalPolicy:
        """A copy with some fields replaced; unknown names raise :class:`ConfigError`
        listing the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"unknown policy option(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **options) if options else self


@dataclass(frozen=True)
class Candidate:
    """One network that was considered: a retrieved checkpoint, an adapted one or a generated sample."""

    source: Source
    ref: str  # the checkpoint's ``name:vN``, ``name:vN->arch`` when adapted, ``generator:vN#i`` for sample i
    similarity: (
        float | None
    )  # a (source) checkpoint's dataset similarity (None: generated, or no dataset vector)
    score: float | None  # top-1 accuracy on the labelled samples (None when none were given)
    chosen: bool = False
    error: str | None = (
        None  # why it could not be used (a damaged blob: `zoo verify` reports it); then skipped
    )

    def __post_init__(self) -> None:  # a cosine of float32 unit vectors can round past 1 (1.0000001192...)
        if self.similarity is not None and not -1.0 <= self.similarity <= 1.0:
            object.__setattr__(self, "similarity", min(1.0, max(-1.0, self.similarity)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class Provision:
    """Weights for an (architecture, dataset) request, with where they came from and why."""

    module: nn.Module  # ready to use, eval mode
    source: Source  # "retrieved", "adapted" or "generated"
    arch: ArchSpec
    reason: str  # one human-readable sentence or two: what was chosen and why
    seconds: float  # wall time of the whole request
    min_similarity: float  # the threshold the policy used
    similarity: (
        float | None
    )  # retrieved/adapted: its (source's) dataset similarity; generated: the nearest compatible checkpoint's
    checkpoint: CheckpointRecord | None = None  # the retrieved checkpoint; adapted: the source checkpoint
    generator: GeneratorRecord | None = None  # the generator version that made the weights
    sample: int | None = None  # which generated sample was chosen
    score: float | None = None  # the chosen network's accuracy on the labelled samples
    candidates: tuple[
        Candidate, ...
    ] = ()  # every checkpoint considered or scored, most similar first; then samples
    dataset: str | None = None  # the registered dataset's name, when the request named one
    registered: CheckpointRecord | None = None  # generated or adapted weights stored by ``register=True``
    timings: Mapping[str, float] = field(
        default_factory=dict
    )  # seconds per stage (retrieve, adapt, generate, score, ...)
    adaptation: str | None = None  # adapted: what was done to the source, in words (Adapted.provenance)
    hints: tuple[Hint, ...] = ()  # the fixes ``reason`` names, each also as a command (reason_for_cli)

    def reason_for_cli(self) -> str:
        """:attr:`reason` with the fixes it names said as commands to paste (``zoo ...``)."""
        text = self.reason
        for hint in sorted(self.hints, key=lambda h: -len(h.python)):
            text = text.replace(hint.python, hint.cli)
        return text

    @property
    def ref(self) -> str:
        """The checkpoint's ``name:vN``; ``name:vN->arch`` for weights adapted from checkpoint ``name:vN``;
        ``generator:vN#sample`` for generated weights."""
        if self.checkpoint is not None:
            return (
                adapted_ref(self.checkpoint.ref, self.arch)
                if self.source == "adapted"
                else self.checkpoint.ref
            )
        assert self.generator is not None, "a generated provision names its generator"
        return f"{self.generator.ref}#{self.sample}"

    @property
    def scores(self) -> dict[str, float]:
        """Candidate ref -> accuracy on the labelled samples (empty when none were given)."""
        return {c.ref: c.score for c in self.candidates if c.score is not None}

    def to_dict(self) -> dict[str, Any]:
        """Everything but the module, JSON-ready."""
        return {
            "source": self.source,
            "ref": self.ref,
            "arch": self.arch.name,
            "arch_config": dict(self.arch.config),
            "family": self.arch.family,
            "dataset": self.dataset,
            "reason": self.reason,
            "seconds": round(self.seconds, 4),
            "similarity": self.similarity,
            "min_similarity": self.min_similarity,
            "checkpoint": self.checkpoint.ref if self.checkpoint else None,
            "checkpoint_id": self.checkpoint.id if self.checkpoint else None,
            "adaptation": self.adaptation,
            "generator": self.generator.ref if self.generator else None,
            "generator_id": self.generator.id if self.generator else None,
            "sample": self.sample,
            "score": self.score,
            "candidates": [c.to_dict() for c in self.candidates],
            "registered": self.registered.ref if self.registered else None,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights as ``.safetensors`` (provenance in its metadata);
        ``zoo add`` reads the file back.

        The file is written under a temporary name and renamed into place.
        """
        path = Path(path)
        family = get_family(self.arch.family)
        tensors = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        state = unshare(family.canonicalize(self.arch, tensors))
        meta = {
            "zoo.family": self.arch.family,
            "zoo.arch": self.arch.name,
            "zoo.arch_json": self.arch.to_json(),
            "zoo.provenance": json.dumps(self.to_dict(), sort_keys=True, default=str),
        }
        data = st_save(state, metadata=meta)
        with atomic_write(path) as tmp:
            tmp.write_bytes(data)
        log.info("saved %s weights (%s) to %s", self.ref, self.arch, path)
        return path
