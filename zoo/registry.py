"""The registry: checkpoints, datasets, aliases and lineage in SQL; weights in the blob store.

Entry point: :meth:`Registry.add`. References to a checkpoint (``ref``) take the forms ``name`` (newest
version), ``name:v3`` (a version), ``name@best`` (an alias) or an integer id.

:class:`Registry` is a facade: arguments are checked by :mod:`zoo.validation` and :mod:`zoo.intake`, rows are
read and written by the store repositories (:mod:`zoo.store.checkpoints`, :mod:`zoo.store.datasets`,
:mod:`zoo.store.generators`, :mod:`zoo.store.blobrows`), which own their sessions and return records.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo import retrieval
from zoo.errors import ZooError
from zoo.plugins import get_family
from zoo.records import (
    AliasRecord,
    ArchSpec,
    CheckpointRecord,
    DatasetRecord,
    GeneratorRecord,
    RemovalImpact,
    VerifyReport,
)
from zoo.retrieval.cache import RetrievalCache
from zoo.store.blobrows import ORPHAN_GRACE_S
from zoo.store.blobs import BlobStore
from zoo.store.db import Database, default_url, sqlite_path
from zoo.store.generators import GENERATOR_STATUSES
from zoo.store.repositories import Repositories
from zoo.validation import check_json, check_metrics, check_name

if TYPE_CHECKING:  # pragma: no cover - typing only (torch is imported where weights are read or built)
    import torch
    from torch import nn

    from zoo.checkpoint_io import CheckpointLike
    from zoo.retrieval import DataLike, EncoderChoice, Neighbor

log = logging.getLogger(__name__)


def default_blob_root(url: str) -> Path:
    """Where blobs live when not told: beside a SQLite file (``registry.db`` -> ``registry.blobs/``)."""
    env = os.environ.get("ZOO_BLOB_ROOT")
    if env:
        return Path(env)
    path = sqlite_path(url)
    if path is not None:
        return path.with_suffix(".blobs")
    return Path("zoo-blobs")


class Registry:
    """A registry of checkpoints over a SQL database and a content-addressed blob store.

    ``url`` is any SQLAlchemy URL (default: ``$ZOO_REGISTRY_URL`` or ``sqlite:///registry.db``);
    ``blob_root`` defaults to ``registry.blobs/`` beside a SQLite file, or ``$ZOO_BLOB_ROOT``. A registry
    that does not exist yet is created, unless ``create=False``: then :class:`~zoo.RegistryMissingError`
    names the path (what read-only tools want, so that a mistyped path is not a new empty registry).
    """

    def __init__(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        blob_root: str | os.PathLike[str] | None = None,
        fsync: bool = False,
        create: bool = True,
    ) -> None:
        url_s = str(url) if url is not None else default_url()
        if "://" not in url_s:  # a bare path means a SQLite file
            url_s = f"sqlite:///{url_s}"
        self.url = url_s
        self.db = Database(url_s, create=create)
        self.blobs = BlobStore(blob_root if blob_root is not None else default_blob_root(url_s), fsync=fsync)
        self.repos = Repositories.open(self.db, self.blobs)  # the store repositories, which own the sessions
        # vector tables and opened indexes of this registry (zoo.retrieval)
        self.retrieval_cache = RetrievalCache()

    def __repr__(self) -> str:
        return f"Registry({self.url!r}, blob_root={str(self.blobs.root)!r})"

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------
    # adding
    # ------------------------------------------------------------------------------------------------
    def add(
        self,
        checkpoint: CheckpointLike,
        *,
        name: str | None = None,
        arch: str | ArchSpec | None = None,
        dataset: str | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Iterable[str] = (),
        origin: str = "imported",
        parent: str | int | None = None,
        base: str | int | None = None,
        alias: str | None = None,
        meta: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
        weights: str | None = None,
        strip_prefix: str | None = None,
    ) -> CheckpointRecord:
        """Register a checkpoint and return its record.

        ``checkpoint`` is a ``.safetensors`` file, a weights-only torch file, an ``nn.Module`` or a state
        dict. ``arch`` is a spec or a name the plugins recognise; when omitted it is detected from the
        weights. The weights are checked against the architecture (every key, every shape) before
        anything is stored. Adding under an existing ``name`` makes a new version; adding the very same
        weights under the same name again raises :class:`DuplicateError` (or, with ``exist_ok``, returns
        the existing record). ``parent``/``origin`` record lineage; ``base`` names the checkpoint that
        weights apply on top of (LoRA). On any error nothing is stored.

        Foreign checkpoints (PyTorch Lightning ``.ckpt``, timm, DDP, torch.compile; see
        :mod:`zoo.checkpoint_io`): the weights are taken from under ``state_dict``/``model``/... and a prefix
        that every tensor name shares (``module.``, ``model.``) is removed when that makes them fit; a file
        with several weight sets (``state_dict`` and ``state_dict_ema``) is refused unless ``weights`` names
        the one to take; ``strip_prefix`` removes a prefix explicitly (names without it are left out). What
        was taken, stripped and left out is recorded in ``meta`` (``source_weights``, ``stripped_prefix``,
        ``source_left_out``, ``source_extra``).
        """
        from zoo.intake import prepare_checkpoint

        new = prepare_checkpoint(
            checkpoint,
            base_arch=lambda ref: self.get(ref).arch,
            name=name,
            arch=arch,
            dataset=dataset,
            metrics=metrics,
            tags=tags,
            origin=origin,
            parent=parent,
            base=base,
            alias=alias,
            meta=meta,
            weights=weights,
            strip_prefix=strip_prefix,
        )
        rec = self.repos.checkpoints.add(new, exist_ok=exist_ok)
        log.info("added %s (%s, %s params, blob %s)", rec.ref, rec.arch, rec.num_params, rec.sha256[:12])
        return rec

    # ------------------------------------------------------------------------------------------------
    # reading
    # ------------------------------------------------------------------------------------------------
    def get(self, ref: str | int) -> CheckpointRecord:
        """The record of ``ref`` (``name``, ``name:v2``, ``name@alias`` or an id)."""
        return self.repos.checkpoints.get(ref)

    def list(
        self,
        *,
        family: str | None = None,
        name: str | None = None,
        latest_only: bool = False,
        limit: int | None = None,
    ) -> list[CheckpointRecord]:
        """Checkpoints, newest first, optionally filtered by family or name glob."""
        return self.search(family=family, name=name, latest_only=latest_only, limit=limit)

    def search(
        self,
        *,
        family: str | None = None,
        arch: str | ArchSpec | None = None,
        dataset: str | None = None,
        tags: Iterable[str] = (),
        metrics: Mapping[str, Any] | Sequence[str] | None = None,
        name: str | None = None,
        origin: str | None = None,
        latest_only: bool = False,
        limit: int | None = None,
        after: int | None = None,
    ) -> list[CheckpointRecord]:
        """Checkpoints matching every given filter, newest first.

        ``arch`` is a variant name (``"resnet20"``, any settings) or a spec (exactly that architecture);
        ``tags`` must all be present; ``metrics`` are thresholds such as ``["accuracy>=0.9"]`` or
        ``{"accuracy": ">=0.9"}``; ``name`` may be a glob (``"resnet*"``); ``after`` keeps checkpoints
        registered after the one with that id (ids grow with every add, follow commit order and are never
        reused, so a watermark such as a generator's sees every later add exactly once).
        """
        return self.repos.checkpoints.search(
            family=family,
            arch=arch,
            dataset=dataset,
            tags=tags,
            metrics=metrics,
            name=name,
            origin=origin,
            latest_only=latest_only,
            limit=limit,
            after=after,
        )

    def versions(self, name: str) -> list[CheckpointRecord]:
        """Every version of ``name``, oldest first."""
        return self.repos.checkpoints.versions(name)

    def lineage(self, ref: str | int) -> list[CheckpointRecord]:
        """``ref`` and its ancestors through ``parent``, nearest first."""
        return self.repos.checkpoints.lineage(ref)

    def get_many(self, ids: Iterable[int]) -> list[CheckpointRecord]:
        """Records of the checkpoints with these ids (ints or ``id:N``; missing ids are skipped), in one read.

        Raises :class:`ZooError` for anything that is not an id: a name such as ``"2"`` is not one (refs
        grammar).
        """
        return self.repos.checkpoints.get_many(ids)

    def load_state_dict(
        self, ref: str | int | CheckpointRecord, device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        """The checkpoint's tensors, verified against their hash."""
        rec = ref if isinstance(ref, CheckpointRecord) else self.get(ref)
        return self.blobs.load(rec.sha256, device=device)

    def load(self, ref: str | int | CheckpointRecord, device: str | torch.device = "cpu") -> nn.Module:
        """A ready module (eval mode) holding the checkpoint's weights, built through its family plugin."""
        rec = ref if isinstance(ref, CheckpointRecord) else self.get(ref)
        family = get_family(rec.arch.family)
        base = self.load(rec.base_id) if rec.base_id is not None else None
        module = family.load(rec.arch, self.blobs.load(rec.sha256), base=base)
        return module.to(device)

    def stats(self) -> dict[str, Any]:
        """Counts of what the registry holds."""
        return self.repos.checkpoints.stats()

    # ------------------------------------------------------------------------------------------------
    # aliases
    # ------------------------------------------------------------------------------------------------
    def alias(self, ref: str | int, alias: str) -> AliasRecord:
        """Point ``name@alias`` at the version ``ref`` names (moving it if it pointed elsewhere)."""
        check_name(alias, "alias")
        return self.repos.checkpoints.alias(ref, alias)

    def aliases(self, name: str | None = None) -> list[AliasRecord]:
        """Aliases (of one name, or all), sorted by name and alias."""
        return self.repos.checkpoints.aliases(name)

    def unalias(self, name: str, alias: str) -> None:
        """Remove alias ``name@alias``."""
        self.repos.checkpoints.unalias(name, alias)

    # ------------------------------------------------------------------------------------------------
    # removing and verifying
    # ------------------------------------------------------------------------------------------------
    def removal_impact(self, ref: str | int) -> RemovalImpact:
        """What removing ``ref`` would touch: children, aliases, generators trained on it, dependants."""
        return self.repos.checkpoints.removal_impact(ref)

    def remove(self, ref: str | int) -> RemovalImpact:
        """Remove the one checkpoint version ``ref`` names (its aliases, tags and metrics too) and, if
        unreferenced, its blob; return what it touched (:class:`~zoo.records.RemovalImpact`).

        A bare name removes its only version; a name with several versions is refused (name one: ``name:v3``).
        Children keep their record with ``parent_id`` cleared; generators trained on it keep their
        ``trained_on`` (ids are never reused); a checkpoint that is the base of another cannot be removed
        until those are. Its version number and id are never handed out again.
        """
        impact = self.repos.checkpoints.remove(ref)
        log.info("removed %s%s", impact.checkpoint.ref, "".join(f"; {line}" for line in impact.describe()))
        return impact

    def verify(self, *, repair: bool = False, grace_s: float = ORPHAN_GRACE_S) -> VerifyReport:
        """Hash every referenced blob; find missing/corrupt ones and orphans on either side.

        ``repair`` deletes orphan files older than ``grace_s`` (an add may be writing younger ones), stale
        temp files, and blob rows nothing references. Missing or corrupt blobs cannot be repaired from here:
        re-add those checkpoints from their source.
        """
        return self.repos.blobs.verify(repair=repair, grace_s=grace_s)

    # ------------------------------------------------------------------------------------------------
    # datasets and retrieval (vectors, indexes and ranking: zoo.retrieval)
    # ------------------------------------------------------------------------------------------------
    def register_dataset(
        self,
        name: str,
        data: DataLike,
        *,
        description: str | None = None,
        encoders: EncoderChoice = None,
        replace: bool = False,
    ) -> DatasetRecord:
        """Register dataset ``name`` (its size, classes, content fingerprint) with a vector per encoder.

        ``data`` is anything :func:`zoo.datasets.as_dataset` reads (tensors, a torch Dataset, an image folder,
        an MNIST folder, ``"digits"``); ``encoders`` defaults to every installed dataset encoder. See
        :func:`zoo.retrieval.register_dataset`.
        """
        return retrieval.register_dataset(
            self, name, data, description=description, encoders=encoders, replace=replace
        )

    def nearest(
        self, arch: str | ArchSpec | None, dataset: DataLike | np.ndarray, k: int = 5, **options: Any
    ) -> list[Neighbor]:
        """Checkpoints of a compatible architecture ranked by dataset similarity (``Neighbor`` records).

        ``dataset`` is a registered dataset's name or data to embed. Options (``encoder``, ``match``,
        ``arch_weight``, ``min_similarity``, ``latest_only``, ``method``) are those of
        :func:`zoo.retrieval.nearest`.
        """
        return retrieval.nearest(self, arch, dataset, k, **options)

    def datasets(self) -> list[DatasetRecord]:
        """Registered datasets (also those known by name only), sorted by name."""
        return self.repos.datasets.list()

    def get_dataset(self, name: str) -> DatasetRecord:
        """The record of dataset ``name``."""
        return self.repos.datasets.get(name)

    # ------------------------------------------------------------------------------------------------
    # generator versions
    # ------------------------------------------------------------------------------------------------
    def add_generator(
        self,
        data: bytes,
        *,
        name: str = "igpg",
        families: Iterable[str],
        config: Mapping[str, Any],
        metrics: Mapping[str, float],
        trained_on: Iterable[int],
        status: str = "candidate",
    ) -> GeneratorRecord:
        """Store a trained generator (safetensors bytes) as the next version of ``name``.

        ``trained_on`` are the checkpoint ids it learnt from; the highest is its training watermark.
        """
        check_name(name, "generator name")
        _check_status(status)
        ids = sorted({int(i) for i in trained_on})
        return self.repos.generators.add(
            data, name=name, families=families, config=config, metrics=metrics, trained_on=ids, status=status
        )

    def generators(self, *, family: str | None = None, status: str | None = None) -> list[GeneratorRecord]:
        """Generator versions, newest first, optionally only those covering ``family`` or with ``status``."""
        return self.repos.generators.list(family=family, status=status)

    def get_generator(self, ref: str | int) -> GeneratorRecord:
        """A generator version by ``name`` (newest), ``name:vN``, ``name@promoted`` (newest promoted; any
        status works) or ``id:N`` / an int id: the grammar of :mod:`zoo.refs`."""
        return self.repos.generators.get(ref)

    def set_generator_status(self, ref: str | int, status: str) -> GeneratorRecord:
        """Mark a generator version "candidate", "promoted" or "retired"."""
        _check_status(status)
        rec = self.get_generator(ref)
        self.repos.generators.set_status(rec.id, status)
        return self.get_generator(rec.id)

    def load_generator_bytes(self, ref: str | int | GeneratorRecord) -> bytes:
        """The generator's stored bytes, verified against their hash."""
        rec = ref if isinstance(ref, GeneratorRecord) else self.get_generator(ref)
        return self.blobs.read(rec.sha256)


def _check_status(status: str) -> None:
    if status not in GENERATOR_STATUSES:
        raise ZooError(f"unknown generator status {status!r}; choose from {', '.join(GENERATOR_STATUSES)}")


__all__ = [
    "GENERATOR_STATUSES",
    "ORPHAN_GRACE_S",
    "Registry",
    "check_json",
    "check_metrics",
    "check_name",
    "default_blob_root",
]
