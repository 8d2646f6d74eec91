"""The request, built once at the door of :func:`zoo.retrieve_or_generate` and passed down: the resolved
architecture and its family, the dataset asked about (:class:`Query`, its vector per encoder computed
once), the labelled samples to score on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from zoo.datasets import ImageDataset, as_dataset, load_source
from zoo.embeddings import (
    _query_vector,
)
from zoo.encoders import get_dataset_encoder
from zoo.errors import (
    DatasetError,
    Hint,
    NotFoundError,
    ZooError,
)
from zoo.family import ArchitectureFamily
from zoo.plugins import get_family, resolve_arch
from zoo.provision.results import (
    RetrievalPolicy,
)
from zoo.records import ArchSpec
from zoo.registry import Registry

log = logging.getLogger(__name__)

RegistryLike = (
    Registry | str | os.PathLike[str] | None
)  # a Registry, a URL or SQLite path, or None: Registry()
Mode = Literal["auto", "retrieve", "generate"]


class Query:
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
                hint = Hint("registry.datasets()", "`zoo datasets list`")
                raise DatasetError(
                    f"{dataset!r} is not a registered dataset (list them: {hint}); as data: {exc}"
                ).hinting(hint) from None
        self._vectors: dict[str, np.ndarray] = {}

    def __str__(self) -> str:
        return f"dataset {self.name!r}" if self.name else repr(self.data)

    def vector_or_none(self, encoder: str | None) -> np.ndarray | None:
        """The query's vector by ``encoder``; None for a registered name that has no vector by it yet (then
        only checkpoints registered with exactly that name match: :func:`zoo.retrieval.by_name`)."""
        enc = get_dataset_encoder(encoder)
        if enc.id not in self._vectors:
            self._vectors[enc.id] = _query_vector(self.registry, self.name or self.data, enc, enc.version)[0]
        return self._vectors[enc.id]

    def examples(self) -> ImageDataset | None:
        """The labelled data asked about: the data given, or a registered dataset's data when zoo can read
        them again (its recorded ``source``); None otherwise. Read once."""
        if self.data is not None or self.name is None:
            return self.data
        if not hasattr(self, "_examples"):
            from zoo.generators import registered_data

            self._examples = registered_data(self.registry, self.name)
        return self._examples

    def vector(self, encoder: str | None) -> np.ndarray:
        """The query's vector by ``encoder``; :class:`~zoo.errors.DatasetError` (with the fix) when the
        dataset is a registered name that has none."""
        vec = self.vector_or_none(encoder)
        if vec is None:
            enc_id = get_dataset_encoder(encoder).id
            hint = Hint(
                f"registry.register_dataset({self.name!r}, data)",
                f"`zoo datasets register {self.name} SOURCE`",
            )
            raise DatasetError(
                f"dataset {self.name!r} has no {enc_id} vector (zoo does not hold its data: it is known by "
                f"name only, or was not embedded with {enc_id}); register its data, which computes the "
                f"vector: {hint}"
            ).hinting(hint)
        return vec


@dataclass(frozen=True, eq=False)
class Request:
    """One request, built once at the door (:func:`_run`) and passed down: nothing below resolves it again."""

    mode: Mode  # "auto" (retrieve_or_generate), "retrieve" or "generate"
    spec: ArchSpec  # the architecture, resolved through the family plugins
    family: ArchitectureFamily  # its family plugin
    label: str  # how messages name the architecture (see arch_label)
    policy: RetrievalPolicy  # with the call's keyword options applied
    query: Query  # the dataset asked about
    labelled: tuple[torch.Tensor, torch.Tensor] | None  # images and labels to score on (None: no scoring)
    register: bool  # store generated weights
    name: str | None  # ... under this name (None: <arch>-<dataset>-generated)
    device: str | torch.device  # where the served module lives
    t0: float  # time.perf_counter() when the request arrived

    @property
    def threshold(self) -> float:
        """The dataset similarity a checkpoint needs to be served as is."""
        return self.policy.min_similarity


def arch_label(spec: ArchSpec, family: ArchitectureFamily | None = None) -> str:
    """A short name for messages: the variant name when the spec is that variant's default,
    else the full label."""
    try:
        if resolve_arch(spec.name) == spec:
            return spec.name
    except ZooError:
        pass
    return (family if family is not None else get_family(spec.family)).label(spec)


def fix_hints(spec: ArchSpec) -> tuple[Hint, Hint, Hint]:
    """How to add a checkpoint of ``spec``, and how to train a generator that knows it (on the architecture,
    or on its family)."""
    return (
        Hint(
            f"registry.add(FILE, arch={spec.name!r}, dataset=NAME)",
            f"`zoo add FILE --arch {spec.name} --dataset NAME`",
        ),
        Hint(
            f"igpg.train_on_registry(registry, arch={spec.name!r}, promote=True)",
            f"`zoo train --arch {spec.name} --promote`",
        ),
        Hint(
            f"igpg.train_on_registry(registry, family={spec.family!r}, promote=True)",
            f"`zoo train --family {spec.family} --promote`",
        ),
    )


def fix_hint(spec: ArchSpec) -> str:
    """What to do when nothing can serve ``spec``, in Python's words (its :func:`fix_hints` name the
    commands the CLI says instead)."""
    add, train, family = fix_hints(spec)
    return (
        f"Add a checkpoint of {spec.name} trained on a similar dataset ({add}), or train a generator that "
        f"knows {spec.name} ({train}, or {family}), which needs registered {spec.family} checkpoints "
        "with a dataset"
    )


def open_registry(registry: RegistryLike) -> tuple[Registry, bool]:
    if isinstance(registry, Registry):
        return registry, False
    return Registry(registry, create=False), True  # serving never creates a registry (a mistyped path fails)


def labelled_samples(
    registry: Registry, labelled: Any, shape: Sequence[int] | None, label: str
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Images and labels to score on: data, or a registered dataset's name whose source zoo can read again.

    A registered name always means that dataset's data (never a built-in source or a folder of the same
    name); one whose data zoo cannot read again is refused. ``shape`` is the input shape the architecture
    (``label`` in messages) takes, when its family knows it: samples of another shape are refused naming the
    registered datasets that fit. Raises :class:`~zoo.errors.DatasetError`.
    """
    if labelled is None:
        return None
    ds: ImageDataset | None = None
    if isinstance(labelled, str):
        try:
            rec = registry.get_dataset(labelled)
        except NotFoundError:
            rec = None  # not registered: as_dataset reads it (a built-in name or a folder)
        if rec is not None:
            source = rec.meta.get("source")
            if not source:
                own = Hint("labelled=(images, labels)", "--labelled DIR (an image folder or an MNIST folder)")
                raise DatasetError(
                    f"zoo cannot read the data of dataset {labelled!r} again (registered from memory or by "
                    f"name only); pass the labelled samples themselves: {own}"
                ).hinting(own)
            ds = load_source(source)
    ds = ds if ds is not None else as_dataset(labelled)
    if shape is not None and tuple(ds.image_shape) != tuple(shape):
        got, want = "x".join(map(str, ds.image_shape)), "x".join(map(str, shape))
        fitting = [
            d.name
            for d in registry.datasets()
            if d.meta.get("source") and tuple(d.meta.get("image_shape") or ()) == tuple(shape)
        ]
        resize = Hint(f"ImageDataset.resize({tuple(shape[-2:])})", "an image folder of that size")
        fix = f"pass {want} images ({resize})"
        hints = [resize]
        if fitting:
            use = Hint(f"labelled={fitting[0]!r}", f"--labelled {fitting[0]}")
            fix += f", or a registered dataset of {want} images ({', '.join(fitting[:8])}): {use}"
            hints.append(use)
        raise DatasetError(
            f"the labelled samples are {got} images but {label} takes {want} inputs; {fix}"
        ).hinting(*hints)
    return ds.images, ds.labels
