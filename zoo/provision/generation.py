"""Generators, reached only through the contract of :mod:`zoo.generators`: which stored version serves a
request, loading it (a small per-process cache keyed by blob hash), sampling networks.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.embeddings import (
    embed_arch,
)
from zoo.errors import (
    GeneratorError,
    Hint,
    UnknownPluginError,
)
from zoo.generators import GeneratorKind, kind_of
from zoo.provision.request import (
    Request,
    arch_label,
    fix_hints,
)
from zoo.records import ArchSpec, GeneratorRecord
from zoo.registry import Registry

log = logging.getLogger(__name__)


class NoGenerator(Exception):
    """No generator can serve the architecture (internal: callers turn it into a message)."""


# generators, through the contract of zoo.generators
# ----------------------------------------------------------------------------------------------------
_generators: dict[
    tuple[str, str], Any
] = {}  # (blob sha256, device) -> generator: content-addressed, safe to share
_generators_lock = threading.Lock()
_GENERATOR_CACHE = 2  # loaded generators kept per process


@dataclass(frozen=True)
class LoadedGenerator:
    """A stored generator version loaded for sampling: its record, its kind (the contract) and the object."""

    record: GeneratorRecord
    kind: GeneratorKind
    generator: Any

    def knows(self, spec: ArchSpec) -> bool:
        return self.kind.knows(self.generator, spec)


def load_generator(registry: Registry, rec: GeneratorRecord, device: str | torch.device) -> LoadedGenerator:
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
    return LoadedGenerator(rec, kind, hit)


def trained_archs(registry: Registry, rec: GeneratorRecord) -> tuple[dict[str, ArchSpec], bool]:
    """(arch key -> spec of the checkpoints it was trained on, whether all of them are still registered)."""
    recs = registry.get_many(rec.trained_on)
    return {r.arch.key: r.arch for r in recs}, len(recs) == len(set(rec.trained_on))


def _labels(archs: dict[str, ArchSpec]) -> list[str]:
    """The architectures' names for a message (computed only when one is written), sorted."""
    return sorted({arch_label(spec) for spec in archs.values()})


def select_generator(registry: Registry, req: Request) -> tuple[GeneratorRecord, LoadedGenerator]:
    """The generator version to sample ``req.spec`` from, loaded; :class:`NoGenerator` (with why) if none.

    ``policy.generator`` when given. Else the family's versions (not retired), promoted before candidates and
    the newest first within each, in two passes: first those trained on exactly ``req.spec`` (or whose
    training checkpoints are no longer all registered, so that only the kind can tell), then the others of
    the family, each asked through :meth:`GeneratorKind.knows` whether it can make the architecture (a kind
    may generalise to depths and widths it never saw). Versions are loaded one at a time and the first that
    knows the architecture serves: no more are loaded than needed.
    """
    spec, ref, device = req.spec, req.policy.generator, req.device
    if ref is not None:
        rec = registry.get_generator(ref)
        gen = load_generator(registry, rec, device)
        if not gen.knows(spec):
            known = _labels(trained_archs(registry, rec)[0]) or ["(unknown)"]
            see = Hint("registry.generators()", "`zoo generators`")
            _, train, family = fix_hints(spec)
            raise GeneratorError(
                f"generator {rec.ref} was not trained on {req.label} and cannot make it (it knows "
                f"{', '.join(known)}); pick another ({see}) or train one: {train} (or {family})"
            ).hinting(see, train, family)
        return rec, gen
    recs = [g for g in registry.generators(family=spec.family) if g.status != "retired"]
    recs.sort(key=lambda g: g.status != "promoted")  # stable: promoted first, newest first within each
    trained = {rec.id: trained_archs(registry, rec) for rec in recs}
    first = [r for r in recs if spec.key in trained[r.id][0] or not trained[r.id][1]]
    first_ids = {r.id for r in first}
    then = [r for r in recs if r.id not in first_ids]
    why: dict[int, str] = {}  # version id -> why it does not serve
    for rec in first + then:
        try:
            kind_of(rec)
        except UnknownPluginError as exc:  # made by a generator plugin that is not installed here
            why[rec.id] = f"{rec.ref} ({rec.status}) cannot be used: {exc}"
            continue
        gen = load_generator(registry, rec, device)
        if gen.knows(spec):
            if rec.id not in first_ids:
                log.info("%s was not trained on %s but knows it", rec.ref, req.label)
            return rec, gen
        knows = ", ".join(_labels(trained[rec.id][0])) or "other architectures"
        why[rec.id] = f"{rec.ref} ({rec.status}) knows {knows}"
    if why:
        seen = "; ".join(why[r.id] for r in recs)
        raise NoGenerator(f"no generator knows {req.label} ({seen})")
    raise NoGenerator(f"no generator is trained for family {spec.family!r}")


def sample(registry: Registry, req: Request, gen: LoadedGenerator, n: int) -> list[nn.Module]:
    """``n`` networks of ``req.spec`` from ``gen``, conditioned on the query as its own encoders see it.

    Shows a progress bar on stderr (tqdm: steps done, rate, time left) while the generator samples, when
    stderr is a terminal or a notebook (``TQDM_DISABLE=1`` hides it); a generator kind that reports no
    steps (:meth:`~zoo.generators.GeneratorKind.sample_steps`) gets a bar with the time spent only.
    """
    from tqdm.auto import tqdm

    policy = req.policy
    ds_encoder, text_encoder = gen.kind.encoders(gen.generator)
    ds = np.array(req.query.vector(ds_encoder), dtype=np.float32)
    arch = np.array(embed_arch(registry, req.spec, encoder=text_encoder).vector, dtype=np.float32)
    steps = gen.kind.sample_steps(gen.generator, req.spec)
    extra: dict[str, object] = {}
    if gen.kind.takes_examples:
        extra["examples"] = req.query.examples()
    what = f"{n} network{'s' if n != 1 else ''} of {req.label} from {gen.record.ref}"
    log.info("generating %s (%s steps)", what, steps if steps is not None else "unknown")
    start = time.perf_counter()
    with tqdm(total=steps, desc=f"generate {req.label} x{n}", unit="step", leave=False, disable=None) as bar:
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
            **({"progress": bar} if steps is not None else {}),
            **extra,
        )
    log.info("generated %s in %.1f s", what, time.perf_counter() - start)
    return [net.to(req.device).eval() for net in nets]
