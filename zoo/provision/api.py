"""The public calls: :func:`retrieve_or_generate`, :func:`retrieve` and :func:`generate`; each builds the
request once and serves it: gather -> choose -> explain, then register.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

import torch

from zoo.errors import (
    NoWeightsError,
)
from zoo.plugins import get_family, resolve_arch
from zoo.provision.choose import choose, explain, first_usable
from zoo.provision.gather import (
    VERIFY,
    gather,
)
from zoo.provision.register import answer, registration
from zoo.provision.request import (
    Mode,
    Query,
    RegistryLike,
    Request,
    arch_label,
    labelled_samples,
    open_registry,
)
from zoo.provision.results import (
    Provision,
    RetrievalPolicy,
)
from zoo.records import ArchSpec
from zoo.registry import Registry

log = logging.getLogger(__name__)


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
    """A ready module of ``arch`` for ``dataset``: the nearest compatible checkpoint, a checkpoint of another
    architecture of its family adapted to ``arch`` (Net2Net), or generated weights.

    ``dataset`` is a registered dataset's name or anything :func:`zoo.as_dataset` reads. ``registry``
    defaults to ``Registry()`` (``$ZOO_REGISTRY_URL`` or ``registry.db``). ``labelled`` (``(images, labels)``,
    an :class:`~zoo.ImageDataset`, or anything ``as_dataset`` reads) scores every compatible checkpoint (up to
    ``score_pool``; above, a pool drawn from several rankings), the adapted ones and the generated samples,
    and picks the best. ``register=True`` stores generated weights (origin ``"generated"``, under ``name`` or
    ``<arch>-<dataset>-generated``) with the generator version in their metadata and tags, or adapted weights
    (origin ``"adapted"``, under ``name`` or ``<arch>-<dataset>-adapted``, the source checkpoint as their
    ``parent`` and its dataset, the adaptation in their metadata). ``policy`` (or
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
    ``score_pool``, see the module docs). Never generates nor adapts:
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

    One sample; with ``labelled`` samples, the best of ``samples``. Never retrieves nor adapts. Raises
    :class:`~zoo.errors.NoWeightsError` when no generator knows the architecture. Arguments as in
    :func:`retrieve_or_generate`.
    """
    return _run("generate", arch, dataset, registry, policy, labelled, register, name, device, options)


def _run(
    mode: Mode,
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
    label = arch_label(spec, family)
    reg, close = open_registry(registry)
    try:
        query = Query(reg, dataset)
        lab = (
            labelled_samples(reg, labelled, family.input_shape(spec), label)
            if policy.score_with_labels
            else None
        )
        req = Request(mode, spec, family, label, policy, query, lab, register, name, device, t0)
        return _serve(reg, req)
    finally:
        if close:
            reg.close()


def _serve(reg: Registry, req: Request) -> Provision:
    """Serve one request: gather the candidates, choose one, explain the choice, register it when asked."""
    found = gather(reg, req)
    chosen = first_usable(reg, choose(req, found), req.device, found.notes)
    if chosen is None:  # every candidate was damaged
        fix = f"run {VERIFY} and re-add the damaged checkpoints from their source, or remove them"
        raise NoWeightsError(req.label, str(req.query), "; ".join(found.notes), fix).hinting(VERIFY)
    chosen.cand = dataclasses.replace(chosen.cand, chosen=True)
    reason = explain(req, found, chosen)
    registered, reason = registration(reg, req, found, chosen, reason)
    return answer(req, found, chosen, reason, registered)
