"""Weights for a task: the nearest compatible checkpoint when one is similar enough,
generated weights otherwise.

:func:`retrieve_or_generate` is the one call a user makes; :func:`retrieve` and :func:`generate` do one half
each. All three return a :class:`Provision`: the ready module and a record of what happened and why.

The policy (:class:`RetrievalPolicy`; every field can also be passed as a keyword):

1. The architecture is resolved through the family plugins (an unknown name raises the plugins' error); the
   dataset is a registered dataset's name (its stored vectors are used) or data that
   :func:`zoo.as_dataset` reads (embedded on the fly, nothing stored).
2. Retrieval only considers checkpoints of *exactly* that architecture (another architecture's weights
   would not load, so none is ever returned), ranked by dataset similarity with the registry's default
   dataset encoder (or ``encoder``). Equally similar checkpoints (e.g. several seeds trained on one
   dataset) rank by their recorded metrics: ``metric`` when named, else the first of
   :data:`zoo.embeddings.TIE_METRICS` (accuracy, acc, top1, val_acc, ..., loss) they record, best first
   (lower first for loss-like names), then the newest first -- never by registration order.
3. Without labelled samples: the ``candidates`` nearest compatible checkpoints are considered and listed;
   the nearest is returned when its similarity reaches ``min_similarity``; otherwise one network is sampled
   from the generator.
4. With labelled samples (``labelled=``): the dataset embedding is only a hint, the labels decide, so the
   pool scored is not just the nearest few. While at most ``score_pool`` (default :data:`SCORE_POOL`, 64)
   checkpoints of the architecture are registered, *every* one is scored, also those without a dataset
   (or without a vector by the encoder). Above that, ``score_pool`` of them (plus the ``candidates``
   nearest, which always join): the ``candidates`` nearest first, then taken in turn from four rankings
   until the pool is full -- nearest by dataset similarity; the best checkpoint of each dataset (by
   recorded metric, datasets nearest first, for diversity); the best by recorded metric (as in 2) of
   those that record it; the newest version of each name.
   In :func:`retrieve` only checkpoints at least ``min_similarity`` similar are eligible. Those and
   ``samples`` generated networks (best-of-n) are scored by top-1 accuracy on the labelled samples, and the
   highest score wins; ties go to a checkpoint over a generated sample, then to the order of
   :attr:`Provision.candidates` (more similar first, then as in 2). Generation runs when no checkpoint is
   similar enough, and also when one is if ``challenge`` is on. Every scored checkpoint is listed.
5. The generator is ``generator`` when given, else the newest *promoted* version covering the family and
   trained on this very architecture, else the newest such candidate. Its own dataset encoder embeds the
   query (the generator was conditioned on that encoder's vectors). Generators are reached only through
   the contract of :mod:`zoo.generators` (the version's kind, e.g. IGPG's, loads, checks and samples it):
   a version whose kind is not installed is named in the reason, never used.
6. Generation is needed but no generator knows the architecture: the nearest compatible checkpoint is
   returned anyway (``fallback_to_nearest``, the reason says so), or :class:`~zoo.errors.NoWeightsError`
   is raised naming what to do when there is none.

Why :data:`SCORE_POOL` is 64: scoring one checkpoint on 100 labelled images (``Registry.load``, which reads
and verifies the blob, plus one forward pass) took 3.4-3.8 ms for cnn-tiny and 89-98 ms for resnet20 on 2
CPU cores (median over 16 registered checkpoints each), so a full pool of 64 costs about 0.25 s for cnn-tiny
and 6 s for resnet20 -- cheap next to what a wrong pick costs, and the main job's zoo (8 tasks x 6 seeds of
cnn-tiny) is scored whole.

Why :data:`DEFAULT_MIN_SIMILARITY` is 0.99: measured with the offline default encoder ``pixels``
(``bench/results/retrieval.json``, ``docs/embeddings.md``), a fresh sample of a registered task scores
0.998 against it on average (0.990-0.995 when the sample holds only 3-5 images per class), while the closest
*different* task scores 0.949 on average (class subsets about 0.93, rotations 0.71-0.85). 0.99 keeps the
first and rejects the second. It does not reject the same images with permuted labels (about 0.994): pass
labelled samples to catch that. Another encoder needs its own threshold (an untrained CLIP puts every pair
above 0.997).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import save as st_save
from torch import nn

from zoo.atomic import atomic_write
from zoo.datasets import BUILTIN_SOURCES, ImageDataset, as_dataset, load_source
from zoo.embeddings import (
    TIE_METRICS,
    Neighbor,
    _query_vector,
    break_ties,
    embed_arch,
    nearest,
    order_by_metric,
    tie_metric,
)
from zoo.encoders import get_dataset_encoder
from zoo.errors import (
    ConfigError,
    DatasetError,
    GeneratorError,
    IntegrityError,
    NotFoundError,
    NoWeightsError,
    UnknownPluginError,
    ZooError,
)
from zoo.family import ArchitectureFamily
from zoo.generators import GeneratorKind, kind_of
from zoo.plugins import get_family, resolve_arch
from zoo.records import ArchSpec, CheckpointRecord, GeneratorRecord
from zoo.registry import Registry, _unshare
from zoo.training import accuracy

log = logging.getLogger(__name__)

DEFAULT_MIN_SIMILARITY = (
    0.99  # dataset cosine similarity a checkpoint needs to be served as is (see module docs)
)
SCORE_POOL = 64  # with labelled samples: score every compatible checkpoint up to this many (see module docs)
Source = Literal["retrieved", "generated"]
RegistryLike = (
    Registry | str | os.PathLike[str] | None
)  # a Registry, a URL or SQLite path, or None: Registry()
_Mode = Literal["auto", "retrieve", "generate"]


# ----------------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------------
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
        True  # no generator for the arch: serve the nearest compatible checkpoint anyway
    )
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
        if self.candidates < 1 or self.samples < 1 or self.score_pool < 1:
            raise ConfigError(
                f"candidates, samples and score_pool must be at least 1; got {self.candidates}, "
                f"{self.samples}, {self.score_pool}"
            )
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
    """One network that was considered: a retrieved checkpoint or a generated sample."""

    source: Source
    ref: str  # the checkpoint's ``name:vN``, or ``generator:vN#i`` for generated sample i
    similarity: (
        float | None
    )  # a retrieved checkpoint's dataset similarity (None: generated, or no dataset vector)
    score: float | None  # top-1 accuracy on the labelled samples (None when none were given)
    chosen: bool = False
    error: str | None = (
        None  # why it could not be used (a damaged blob: `zoo verify` reports it); then skipped
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class Provision:
    """Weights for an (architecture, dataset) request, with where they came from and why."""

    module: nn.Module  # ready to use, eval mode
    source: Source  # "retrieved" or "generated"
    arch: ArchSpec
    reason: str  # one human-readable sentence or two: what was chosen and why
    seconds: float  # wall time of the whole request
    min_similarity: float  # the threshold the policy used
    similarity: (
        float | None
    )  # retrieved: its dataset similarity; generated: the nearest compatible checkpoint's
    checkpoint: CheckpointRecord | None = None  # the retrieved checkpoint
    generator: GeneratorRecord | None = None  # the generator version that made the weights
    sample: int | None = None  # which generated sample was chosen
    score: float | None = None  # the chosen network's accuracy on the labelled samples
    candidates: tuple[
        Candidate, ...
    ] = ()  # every checkpoint considered or scored, most similar first; then samples
    dataset: str | None = None  # the registered dataset's name, when the request named one
    registered: CheckpointRecord | None = None  # generated weights stored by ``register=True``
    timings: Mapping[str, float] = field(
        default_factory=dict
    )  # seconds per stage (retrieve, generate, score, ...)

    @property
    def ref(self) -> str:
        """The checkpoint's ``name:vN``, or ``generator:vN#sample`` for generated weights."""
        if self.checkpoint is not None:
            return self.checkpoint.ref
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
        state = _unshare(family.canonicalize(self.arch, tensors))
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


# ----------------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------------
def retrieve_or_generate(
    arch: str | ArchSpec,
    dataset: Any,
    *,
    registry: RegistryLike = None,
    policy: RetrievalPolicy | None = None,
    labelled: Any = None,
    register: bool = False,
    name: str | None = None,
    device: str | torch.device = "cpu",
    **options: Any,
) -> Provision:
    """A ready module of ``arch`` for ``dataset``: the nearest compatible checkpoint or generated weights.

    ``dataset`` is a registered dataset's name or anything :func:`zoo.as_dataset` reads. ``registry``
    defaults to ``Registry()`` (``$ZOO_REGISTRY_URL`` or ``registry.db``). ``labelled`` (``(images, labels)``,
    an :class:`~zoo.ImageDataset`, or anything ``as_dataset`` reads) scores every compatible checkpoint (up to
    ``score_pool``; above, a pool drawn from several rankings) and the generated samples, and picks the best.
    ``register=True`` stores generated weights (origin ``"generated"``, under ``name`` or
    ``<arch>-<dataset>-generated``) with the generator version in their metadata and tags. ``policy`` (or
    its fields as keywords, e.g. ``min_similarity=0.95``) sets the rules; see :class:`RetrievalPolicy` and
    the module docs. Raises :class:`~zoo.errors.NoWeightsError` when nothing can serve the request.

    Example::

        p = zoo.retrieve_or_generate("cnn-tiny", "digits")
        print(p.source, p.ref, p.similarity, p.reason)
        logits = p.module(images)
    """
    return _run("auto", arch, dataset, registry, policy, labelled, register, name, device, options)


def retrieve(
    arch: str | ArchSpec,
    dataset: Any,
    *,
    registry: RegistryLike = None,
    policy: RetrievalPolicy | None = None,
    labelled: Any = None,
    device: str | torch.device = "cpu",
    **options: Any,
) -> Provision:
    """The nearest checkpoint of exactly ``arch`` whose dataset is at least ``min_similarity`` similar.

    With ``labelled`` samples, the best-scoring of the similar-enough checkpoints (all of them up to
    ``score_pool``, see the module docs). Never generates:
    raises :class:`~zoo.errors.NoWeightsError` when no compatible checkpoint is similar enough (lower
    ``min_similarity`` to accept a less similar one). Arguments as in :func:`retrieve_or_generate`.
    """
    return _run("retrieve", arch, dataset, registry, policy, labelled, False, None, device, options)


def generate(
    arch: str | ArchSpec,
    dataset: Any,
    *,
    registry: RegistryLike = None,
    policy: RetrievalPolicy | None = None,
    labelled: Any = None,
    register: bool = False,
    name: str | None = None,
    device: str | torch.device = "cpu",
    **options: Any,
) -> Provision:
    """Weights of ``arch`` for ``dataset`` sampled from the generator, whatever the registry holds.

    One sample; with ``labelled`` samples, the best of ``samples``. Raises
    :class:`~zoo.errors.NoWeightsError` when no generator knows the architecture. Arguments as in
    :func:`retrieve_or_generate`.
    """
    return _run("generate", arch, dataset, registry, policy, labelled, register, name, device, options)


# ----------------------------------------------------------------------------------------------------
# the request
# ----------------------------------------------------------------------------------------------------
class _Query:
    """The requested dataset: a registered name or data; its vector per encoder, computed once."""

    def __init__(self, registry: Registry, dataset: Any) -> None:
        self.registry = registry
        self.name: str | None = None
        self.data: ImageDataset | None = None
        if isinstance(dataset, str):
            try:
                registry.get_dataset(dataset)
                self.name = dataset
            except NotFoundError:
                pass
        if self.name is None:
            try:
                self.data = as_dataset(dataset)
            except DatasetError as exc:
                if not isinstance(dataset, str):
                    raise
                raise DatasetError(
                    f"{dataset!r} is not a registered dataset (`zoo datasets list`); as data: {exc}"
                ) from None
        self._vectors: dict[str, np.ndarray] = {}

    def __str__(self) -> str:
        return f"dataset {self.name!r}" if self.name else repr(self.data)

    def vector(self, encoder: str | None) -> np.ndarray:
        enc = get_dataset_encoder(encoder)
        if enc.id not in self._vectors:
            self._vectors[enc.id] = _query_vector(self.registry, self.name or self.data, enc, enc.version)[0]
        return self._vectors[enc.id]


@dataclass(frozen=True, eq=False)
class _Request:
    """One request, built once at the door (:func:`_run`) and passed down: nothing below resolves it again."""

    mode: _Mode  # "auto" (retrieve_or_generate), "retrieve" or "generate"
    spec: ArchSpec  # the architecture, resolved through the family plugins
    family: ArchitectureFamily  # its family plugin
    label: str  # how messages name the architecture (see _label)
    policy: RetrievalPolicy  # with the call's keyword options applied
    query: _Query  # the dataset asked about
    labelled: tuple[torch.Tensor, torch.Tensor] | None  # images and labels to score on (None: no scoring)
    register: bool  # store generated weights
    name: str | None  # ... under this name (None: <arch>-<dataset>-generated)
    device: str | torch.device  # where the served module lives
    t0: float  # time.perf_counter() when the request arrived

    @property
    def threshold(self) -> float:
        """The dataset similarity a checkpoint needs to be served as is."""
        return self.policy.min_similarity


def _run(
    mode: _Mode,
    arch: str | ArchSpec,
    dataset: Any,
    registry: RegistryLike,
    policy: RetrievalPolicy | None,
    labelled: Any,
    register: bool,
    name: str | None,
    device: str | torch.device,
    options: Mapping[str, Any],
) -> Provision:
    """The door of :func:`retrieve_or_generate`, :func:`retrieve` and :func:`generate`: build the request
    once, then serve it."""
    t0 = time.perf_counter()
    policy = (policy or RetrievalPolicy()).with_options(**options)
    spec = resolve_arch(arch)
    family = get_family(spec.family)
    label = _label(spec, family)
    reg, close = _open(registry)
    try:
        query = _Query(reg, dataset)
        lab = _labelled(reg, labelled, family.input_shape(spec), label) if policy.score_with_labels else None
        req = _Request(mode, spec, family, label, policy, query, lab, register, name, device, t0)
        return _serve(reg, req)
    finally:
        if close:
            reg.close()


class _NoGenerator(Exception):
    """No generator can serve the architecture (internal: callers turn it into a message)."""


def _label(spec: ArchSpec, family: ArchitectureFamily | None = None) -> str:
    """A short name for messages: the variant name when the spec is that variant's default,
    else the full label."""
    try:
        if resolve_arch(spec.name) == spec:
            return spec.name
    except ZooError:
        pass
    return (family if family is not None else get_family(spec.family)).label(spec)


def _fix(spec: ArchSpec) -> str:
    return (
        f"Add a checkpoint of {spec.name} trained on a similar dataset (`zoo add FILE --arch {spec.name} "
        f"--dataset NAME`), or train a generator that knows {spec.name}: `zoo train --arch {spec.name}` "
        f"(or `zoo train --family {spec.family}`), which needs registered {spec.name} checkpoints "
        "with a dataset"
    )


def _open(registry: RegistryLike) -> tuple[Registry, bool]:
    if isinstance(registry, Registry):
        return registry, False
    return Registry(registry, create=False), True  # serving never creates a registry (a mistyped path fails)


def _labelled(
    registry: Registry, labelled: Any, shape: Sequence[int] | None, label: str
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Images and labels to score on: data, or a registered dataset's name whose source zoo can read again.

    ``shape`` is the input shape the architecture (``label`` in messages) takes, when its family knows it.
    """
    if labelled is None:
        return None
    ds: ImageDataset | None = None
    if isinstance(labelled, str):
        try:
            source = registry.get_dataset(labelled).meta.get("source")
        except NotFoundError:
            source = False  # not registered: as_dataset reads it (a built-in name or a folder)
        if source:
            ds = load_source(source)
        elif source is None and labelled not in BUILTIN_SOURCES and not Path(labelled).is_dir():
            raise DatasetError(
                f"zoo cannot read the data of dataset {labelled!r} again (registered from memory "
                "or by name only); pass the labelled images and labels themselves"
            )
    ds = ds if ds is not None else as_dataset(labelled)
    if shape is not None and tuple(ds.image_shape) != tuple(shape):
        got, want = "x".join(map(str, ds.image_shape)), "x".join(map(str, shape))
        raise DatasetError(
            f"the labelled samples are {got} images but {label} takes {want} inputs; resize "
            "them (ImageDataset.map_images) first"
        )
    return ds.images, ds.labels


def _score(module: nn.Module, lab: tuple[torch.Tensor, torch.Tensor], device: str | torch.device) -> float:
    return accuracy(module, lab[0].to(device), lab[1].to(device))


# ----------------------------------------------------------------------------------------------------
# generators, through the contract of zoo.generators
# ----------------------------------------------------------------------------------------------------
_generators: dict[
    tuple[str, str], Any
] = {}  # (blob sha256, device) -> generator: content-addressed, safe to share
_generators_lock = threading.Lock()
_GENERATOR_CACHE = 2  # loaded generators kept per process


@dataclass(frozen=True)
class _Loaded:
    """A stored generator version loaded for sampling: its record, its kind (the contract) and the object."""

    record: GeneratorRecord
    kind: GeneratorKind
    generator: Any

    def knows(self, spec: ArchSpec) -> bool:
        return self.kind.knows(self.generator, spec)


def _load_generator(registry: Registry, rec: GeneratorRecord, device: str | torch.device) -> _Loaded:
    kind = kind_of(rec)
    key = (rec.sha256, str(device))
    with _generators_lock:
        hit = _generators.get(key)
    if hit is None:
        hit = kind.load_record(registry, rec, device=device)
        with _generators_lock:
            while len(_generators) >= _GENERATOR_CACHE:
                _generators.pop(next(iter(_generators)))
            _generators[key] = hit
    return _Loaded(rec, kind, hit)


def _trained_archs(registry: Registry, rec: GeneratorRecord) -> tuple[dict[str, str], bool]:
    """(arch key -> name of the checkpoints it was trained on, whether all of them are still registered)."""
    recs = registry.get_many(rec.trained_on)
    return {r.arch.key: _label(r.arch) for r in recs}, len(recs) == len(set(rec.trained_on))


def _select_generator(registry: Registry, req: _Request) -> tuple[GeneratorRecord, _Loaded]:
    """The generator version to sample ``req.spec`` from, loaded; :class:`_NoGenerator` (with why) if none."""
    spec, ref, device = req.spec, req.policy.generator, req.device
    if ref is not None:
        rec = registry.get_generator(ref)
        gen = _load_generator(registry, rec, device)
        if not gen.knows(spec):
            known = sorted(_trained_archs(registry, rec)[0].values()) or ["(unknown)"]
            raise GeneratorError(
                f"generator {rec.ref} was not trained on {req.label} (it knows "
                f"{', '.join(known)}); pick another (`zoo generators`) or train one: "
                f"`zoo train --arch {spec.name}`"
            )
        return rec, gen
    recs = [g for g in registry.generators(family=spec.family) if g.status != "retired"]
    recs.sort(key=lambda g: g.status != "promoted")  # stable: promoted first, newest first within each
    seen: list[str] = []
    for rec in recs:
        archs, complete = _trained_archs(registry, rec)
        if spec.key in archs or not complete:  # trained on it, or cannot tell without loading it
            try:
                kind_of(rec)
            except UnknownPluginError as exc:  # made by a generator plugin that is not installed here
                seen.append(f"{rec.ref} ({rec.status}) cannot be used: {exc}")
                continue
            gen = _load_generator(registry, rec, device)
            if gen.knows(spec):
                return rec, gen
        knows = ", ".join(sorted(set(archs.values()))) or "other architectures"
        seen.append(f"{rec.ref} ({rec.status}) knows {knows}")
    if seen:
        raise _NoGenerator(f"no generator was trained on {req.label} ({'; '.join(seen)})")
    raise _NoGenerator(f"no generator is trained for family {spec.family!r}")


def _sample(registry: Registry, req: _Request, gen: _Loaded, n: int) -> list[nn.Module]:
    """``n`` networks of ``req.spec`` from ``gen``, conditioned on the query as its own encoders see it."""
    policy = req.policy
    ds_encoder, text_encoder = gen.kind.encoders(gen.generator)
    ds = np.array(req.query.vector(ds_encoder), dtype=np.float32)
    arch = np.array(embed_arch(registry, req.spec, encoder=text_encoder).vector, dtype=np.float32)
    nets = gen.kind.sample(
        gen.generator,
        req.spec,
        ds,
        arch,
        n,
        temperature=policy.temperature,
        top_k=policy.top_k,
        top_p=policy.top_p,
        guidance=policy.guidance,
        seed=policy.seed,
    )
    return [net.to(req.device).eval() for net in nets]


# ----------------------------------------------------------------------------------------------------
# retrieval candidates
# ----------------------------------------------------------------------------------------------------
def _similarity(c: Candidate) -> str:
    return f"similarity {c.similarity:.4f}" if c.similarity is not None else "no dataset vector to compare"


def _why_not(req: _Request, neighbours: Sequence[Neighbor]) -> str:
    """Why no retrieved checkpoint is served as is (the nearest one's similarity, or that there is none)."""
    if not neighbours:
        return f"no checkpoint of {req.label} is registered with a dataset"
    n = neighbours[0]
    return (
        f"the nearest compatible checkpoint {n.checkpoint.ref} (dataset {n.dataset!r}) has similarity "
        f"{n.similarity:.4f} < {req.threshold:g}"
    )


@dataclass
class _Pick:
    """A candidate while the request runs: its record and, once loaded or sampled, its module."""

    cand: Candidate
    module: nn.Module | None = None
    record: CheckpointRecord | None = None  # a retrieved checkpoint's record
    dataset: str | None = None  # a retrieved checkpoint's training dataset
    sample: int | None = None


def _loaded(reg: Registry, p: _Pick, device: str | torch.device, notes: list[str]) -> bool:
    """Load ``p``'s module unless it has one; a damaged blob marks the candidate and is skipped, not fatal."""
    if p.module is not None:
        return True
    try:
        p.module = reg.load(p.record, device=device)  # type: ignore[arg-type]
    except IntegrityError as exc:
        p.cand = dataclasses.replace(p.cand, error=str(exc))
        notes.append(f"skipped {p.cand.ref}: its weights are damaged (`zoo verify` reports it)")
        log.warning("skipping %s: %s", p.cand.ref, exc)
        return False
    return True


def _retrieved(n: Neighbor) -> _Pick:
    return _Pick(
        Candidate("retrieved", n.checkpoint.ref, n.similarity, None), record=n.checkpoint, dataset=n.dataset
    )


def _ranked_by_similarity(
    sims: Mapping[int, float | None], metrics: Mapping[int, Mapping[str, float]], metric: str | None
) -> list[int]:
    """Ids, most similar first (ties by recorded metrics, then newest), then those without a similarity."""
    known = sorted(((s, i) for i, s in sims.items() if s is not None), key=lambda t: (-t[0], -t[1]))
    unknown = [(i, metrics.get(i, {})) for i, s in sims.items() if s is None]
    return [i for _, i in break_ties(known, metrics, metric)] + order_by_metric(unknown, metric)


def _scoring_pool(reg: Registry, req: _Request, query: np.ndarray, floor: float | None) -> list[_Pick]:
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
    ds_sim = {name: float(v @ query) for name, v in vectors.items() if v.shape == query.shape}
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
        _Pick(
            Candidate("retrieved", records[cid].ref, sims[cid], None),
            record=records[cid],
            dataset=dataset_of[cid],
        )
        for cid in pool
        if cid in records
    ]


# ----------------------------------------------------------------------------------------------------
# serving a request: gather -> choose -> explain, then register
# ----------------------------------------------------------------------------------------------------
@dataclass
class _Gathered:
    """What a request gathered: retrieval's neighbours and candidates, generated samples, their scores."""

    neighbours: list[Neighbor] = field(default_factory=list)  # the `candidates` nearest compatible ones
    retrieved: list[_Pick] = field(default_factory=list)  # those, or (with labelled samples) the scoring pool
    generator: GeneratorRecord | None = None  # the generator version sampled
    generated: list[_Pick] = field(default_factory=list)  # its samples
    notes: list[str] = field(default_factory=list)  # what went wrong (no generator, damaged weights)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def picks(self) -> list[_Pick]:
        """Everything considered: the retrieved checkpoints, then the generated samples."""
        return self.retrieved + self.generated


def _serve(reg: Registry, req: _Request) -> Provision:
    """Serve one request: gather the candidates, choose one, explain the choice, register it when asked."""
    found = _gather(reg, req)
    chosen = _first_usable(reg, _choose(req, found), req.device, found.notes)
    if chosen is None:  # every candidate was damaged
        fix = "run `zoo verify` and re-add the damaged checkpoints from their source, or remove them"
        raise NoWeightsError(req.label, str(req.query), "; ".join(found.notes), fix)
    chosen.cand = dataclasses.replace(chosen.cand, chosen=True)
    reason = _explain(req, found, chosen)
    registered, reason = _registration(reg, req, found, chosen, reason)
    return _provision(req, found, chosen, reason, registered)


def _similar(req: _Request, neighbours: Sequence[Neighbor]) -> list[Neighbor]:
    """The neighbours similar enough to be served as they are."""
    return [n for n in neighbours if n.similarity >= req.threshold]


def _gather(reg: Registry, req: _Request) -> _Gathered:
    """Gather the candidates: retrieval's (unless generating), generated samples (when needed), their scores.

    Raises :class:`~zoo.errors.NoWeightsError` when retrieval alone is asked for and nothing is similar
    enough, or when generation is needed and nothing can stand in for it.
    """
    found = _Gathered()
    if req.mode != "generate":
        _gather_retrieved(reg, req, found)
    similar = _similar(req, found.neighbours)
    if req.mode == "retrieve" and not similar:
        fix = (
            (
                "Lower min_similarity (`--min-similarity`) to accept it, or let zoo generate weights "
                "(retrieve_or_generate, or `zoo get` without --retrieve-only)"
            )
            if found.neighbours
            else _fix(req.spec)
        )
        raise NoWeightsError(req.label, str(req.query), _why_not(req, found.neighbours), fix)
    if req.mode == "generate" or (
        req.mode == "auto" and (not similar or (req.labelled is not None and req.policy.challenge))
    ):
        _gather_generated(reg, req, found, similar)
    if req.labelled is not None:
        _gather_scores(reg, req, found)
    return found


def _gather_retrieved(reg: Registry, req: _Request, found: _Gathered) -> None:
    """The nearest compatible checkpoints; with labelled samples, the pool of checkpoints to score."""
    t = time.perf_counter()
    policy = req.policy
    qvec = req.query.vector(policy.encoder)
    found.neighbours = nearest(
        reg, req.spec, qvec, k=policy.candidates, encoder=policy.encoder, match="exact", metric=policy.metric
    )
    if req.labelled is not None:  # labels decide: score a pool that holds the best, not just the nearest few
        found.retrieved = _scoring_pool(reg, req, qvec, req.threshold if req.mode == "retrieve" else None)
    else:
        found.retrieved = [_retrieved(n) for n in found.neighbours]
    found.timings["retrieve"] = time.perf_counter() - t


def _gather_generated(reg: Registry, req: _Request, found: _Gathered, similar: Sequence[Neighbor]) -> None:
    """Samples from the generator (best-of-n with labelled samples, else one); without one, a note or an
    error."""
    t = time.perf_counter()
    try:
        gen_rec, gen = _select_generator(reg, req)
    except _NoGenerator as exc:
        no_gen = str(exc)
        why_not = _why_not(req, found.neighbours)
        policy = req.policy
        if req.mode == "generate" or not found.retrieved or (not similar and not policy.fallback_to_nearest):
            reason = no_gen if req.mode == "generate" else f"{why_not}, and {no_gen}"
            raise NoWeightsError(req.label, str(req.query), reason, _fix(req.spec)) from None
        if similar:
            found.notes.append(f"no generator to compare with ({no_gen})")
        else:
            served = "the best-scoring" if req.labelled is not None else "the nearest"
            found.notes.append(
                f"{why_not}, and {no_gen}; served {served} compatible checkpoint anyway "
                f"(fallback_to_nearest). {_fix(req.spec)}"
            )
            log.warning("%s: %s", req.label, found.notes[-1])
        return
    n = req.policy.samples if req.labelled is not None else 1
    nets = _sample(reg, req, gen, n)
    found.generator = gen_rec
    found.generated = [
        _Pick(Candidate("generated", f"{gen_rec.ref}#{i}", None, None), net, sample=i)
        for i, net in enumerate(nets)
    ]
    found.timings["generate"] = time.perf_counter() - t


def _gather_scores(reg: Registry, req: _Request, found: _Gathered) -> None:
    """Score the eligible candidates on the labelled samples (in retrieve mode only similar-enough
    checkpoints); a candidate whose weights are damaged is noted and left unscored."""
    assert req.labelled is not None, "scores need labelled samples"
    eligible = [
        p
        for p in found.picks
        if req.mode != "retrieve" or (p.cand.similarity is not None and p.cand.similarity >= req.threshold)
    ]
    t = time.perf_counter()
    usable = [p for p in eligible if _loaded(reg, p, req.device, found.notes)]
    for p in usable:
        p.cand = dataclasses.replace(p.cand, score=_score(p.module, req.labelled, req.device))  # type: ignore[arg-type]
    found.timings["score"] = time.perf_counter() - t


def _choose(req: _Request, found: _Gathered) -> list[_Pick]:
    """The candidates in the order they are to be served (a pure function of what was gathered and scored).

    With labelled samples: the highest-scoring one (ties: the first in the order of
    :attr:`_Gathered.picks`, a checkpoint before a sample, the more similar first). Otherwise: the
    similar-enough retrieved checkpoints, nearest first; else the first generated sample; else
    (``fallback_to_nearest``) every retrieved checkpoint, nearest first. The first of them
    whose weights load is served (:func:`_first_usable`).
    """
    if req.labelled is not None:
        scored = [p for p in found.picks if p.cand.score is not None]
        best = max(scored, key=lambda p: p.cand.score, default=None)  # type: ignore[arg-type,return-value]
        return [best] if best is not None else []
    if _similar(req, found.neighbours) and req.mode != "generate":
        thr = req.threshold
        return [p for p in found.retrieved if p.cand.similarity is not None and p.cand.similarity >= thr]
    if found.generated:
        return found.generated[:1]
    return list(found.retrieved)  # fallback_to_nearest


def _first_usable(
    reg: Registry, order: Sequence[_Pick], device: str | torch.device, notes: list[str]
) -> _Pick | None:
    """The first of ``order`` whose weights load (a damaged one is noted and skipped); None if none does."""
    return next((p for p in order if _loaded(reg, p, device, notes)), None)


def _explain(req: _Request, found: _Gathered, chosen: _Pick) -> str:
    """The reason text: what was chosen and why, then the notes gathered on the way (a pure function)."""
    thr, c = req.threshold, chosen.cand
    if req.labelled is None:
        if c.source == "generated":
            gen_ref = found.generator.ref if found.generator is not None else "?"
            reason = (
                f"{_why_not(req, found.neighbours)}; generated with {gen_ref}"
                if req.mode == "auto"
                else f"generated with {gen_ref} (asked to)"
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
        scored_g = [p for p in found.generated if p.cand.score is not None]
        head = (
            f"scored {len(scored_r)} retrieved and {len(scored_g)} generated candidate(s) on "
            f"{len(req.labelled[1])} labelled samples: "
        )
        best_r = max(scored_r, key=lambda p: p.cand.score, default=None)  # type: ignore[arg-type,return-value]
        best_g = max(scored_g, key=lambda p: p.cand.score, default=None)  # type: ignore[arg-type,return-value]
        if c.source == "generated" and best_r is not None:
            reason = head + (
                f"generated sample {c.ref} scored {c.score:.4f}, beating the best retrieved checkpoint "
                f"{best_r.cand.ref} ({best_r.cand.score:.4f}, {_similarity(best_r.cand)})"
            )
        elif c.source == "generated":
            reason = head + f"best generated sample {c.ref} scored {c.score:.4f}"
            if req.mode == "auto":
                reason += f" ({_why_not(req, found.neighbours)})"
        else:
            reason = head + f"retrieved {c.ref} scored best ({c.score:.4f}, {_similarity(c)}"
            reason += (
                f", below the threshold {thr:g})" if c.similarity is not None and c.similarity < thr else ")"
            )
            if best_g is not None:
                reason += f"; the best generated sample {best_g.cand.ref} scored {best_g.cand.score:.4f}"
    return "; ".join(x for x in [reason, *found.notes] if x)


def _registration(
    reg: Registry, req: _Request, found: _Gathered, chosen: _Pick, reason: str
) -> tuple[CheckpointRecord | None, str]:
    """With ``register=True``, store chosen generated weights: the record (or None) and the amended reason."""
    if not req.register:
        return None, reason
    if chosen.cand.source != "generated":
        return None, reason + "; not registered again (it is a registered checkpoint)"
    t = time.perf_counter()
    registered = _register(reg, req, chosen, found, reason)
    found.timings["register"] = time.perf_counter() - t
    return registered, reason + f"; registered as {registered.ref}"


def _register(reg: Registry, req: _Request, chosen: _Pick, found: _Gathered, reason: str) -> CheckpointRecord:
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


def _provision(
    req: _Request, found: _Gathered, chosen: _Pick, reason: str, registered: CheckpointRecord | None
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
        if c.source == "retrieved"
        else (found.neighbours[0].similarity if found.neighbours else None),
        checkpoint=chosen.record,
        generator=found.generator if c.source == "generated" else None,
        sample=chosen.sample,
        score=c.score,
        candidates=tuple(p.cand for p in found.picks),
        dataset=req.query.name,
        registered=registered,
        timings=found.timings,
    )
    log.info("%s for %s on %s: %s (%.2f s)", prov.source, req.label, req.query, prov.reason, seconds)
    return prov


__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "Candidate",
    "Provision",
    "RetrievalPolicy",
    "generate",
    "retrieve",
    "retrieve_or_generate",
]
