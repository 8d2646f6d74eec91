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
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo import retrieval
from zoo.errors import Hint, ZooError, show
from zoo.plugins import families, get_family
from zoo.records import (
    AliasRecord,
    ArchSpec,
    CheckpointEvent,
    CheckpointRecord,
    DatasetRecord,
    DatasetRemoval,
    GeneratorRecord,
    LineageNode,
    RemovalImpact,
    VerifyReport,
)
from zoo.refs import parse_ref
from zoo.retrieval.cache import RetrievalCache
from zoo.store.blobrows import ORPHAN_GRACE_S
from zoo.store.blobs import BlobStore
from zoo.store.db import Database, default_url, sqlite_path
from zoo.store.generators import GENERATOR_STATUSES
from zoo.store.repositories import Repositories
from zoo.validation import check_family, check_json, check_limit, check_metrics, check_name

if TYPE_CHECKING:  # pragma: no cover - typing only
    from zoo.diffing import WeightsDiff

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
        the existing record). ``parent``/``origin`` record lineage (a version added with a ``parent`` and no
        ``dataset`` inherits the parent's dataset); ``base`` names the checkpoint that weights apply on top
        of (LoRA). On any error nothing is stored.

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
            parent_record=self.get,
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
        rec = self.repos.checkpoints.add(new, exist_ok=exist_ok, actor=_actor())
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
        dataset: str | None = None,
        latest_only: bool = False,
        limit: int | None = None,
    ) -> list[CheckpointRecord]:
        """Checkpoints, newest first, optionally filtered by family, name glob or dataset.

        Raises :class:`~zoo.NotFoundError` for a ``dataset`` that is not registered (an empty list would
        not tell a typo from a dataset nothing was trained on).
        """
        if dataset is not None:
            self.get_dataset(dataset)
        return self.search(family=family, name=name, dataset=dataset, latest_only=latest_only, limit=limit)

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
        reused, so a watermark such as a generator's sees every later add exactly once). A ``family`` that is
        neither installed nor registered, or a ``limit`` that is not a positive integer, raises
        :class:`ZooError` (never an empty or unlimited answer).
        """
        check_family(family, families, lambda: self.stats()["families"])
        check_limit(limit)
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
        """Point ``name@alias`` at the version ``ref`` names (moving it if it pointed elsewhere); recorded in
        the history of both versions. A bare name must have one version (name one: ``name:v3``), and an
        alias may not read as a version (``v2``): both raise :class:`ZooError` and change nothing."""
        check_name(alias, "alias")
        if re.fullmatch(r"[vV]\d+", alias):
            raise ZooError(
                f"alias {show(alias)} reads as a version (NAME:{alias.lower()} names that version already); "
                "nothing was changed: choose another alias, e.g. best or prod"
            )
        return self.repos.checkpoints.alias(ref, alias, _actor())

    def aliases(self, name: str | None = None) -> list[AliasRecord]:
        """Aliases (of one name, or all), sorted by name and alias."""
        return self.repos.checkpoints.aliases(name)

    def unalias(self, name: str, alias: str | None = None) -> AliasRecord:
        """Remove alias ``name@alias`` (also written ``unalias("name@alias")``) and return what it pointed at.

        ``name`` may be ``name:vN``: the alias is then removed only if it points at that version. The removal
        is recorded in the history of the checkpoint it pointed at. Raises :class:`~zoo.NotFoundError` when
        there is no such alias (naming the aliases ``name`` has).
        """
        r = parse_ref(name)
        if alias is None:
            if r.alias is None:
                base = r.name or name
                how = Hint(
                    f"unalias({base!r}, 'ALIAS') or unalias('{base}@ALIAS')",
                    f"`zoo unalias {base}@ALIAS` or `zoo unalias {base} ALIAS`",
                )
                raise ZooError(f"name the alias to remove: {how}").hinting(how)
            alias = r.alias
        elif r.alias is not None:
            raise ZooError(f"{name} already names an alias; pass either 'NAME@ALIAS' or NAME and ALIAS")
        if r.id is not None:
            rec = self.get(r.id)
            base, version = rec.name, rec.version
        else:
            base, version = str(r.name), r.version
        check_name(alias, "alias")
        return self.repos.checkpoints.unalias(base, alias, _actor(), version)

    # ------------------------------------------------------------------------------------------------
    # editing after add (recorded in each checkpoint's history)
    # ------------------------------------------------------------------------------------------------
    def tag(self, ref: str | int, *tags: str | Iterable[str]) -> CheckpointRecord:
        """Add ``tags`` (each a tag or a list of them) to the one version ``ref`` names (a bare name must have
        one version); tags it already has are left as they are. Returns the updated record; the change is
        recorded (:meth:`history`)."""
        checked = [check_name(t, "tag") for t in _flat(tags)]
        return self.repos.checkpoints.edit(ref, add_tags=checked, actor=_actor())

    def untag(self, ref: str | int, *tags: str | Iterable[str]) -> CheckpointRecord:
        """Remove ``tags`` (each a tag or a list of them) from the one version ``ref`` names. A tag it does
        not have is refused and nothing changes (:class:`ZooError`, naming its tags)."""
        return self.repos.checkpoints.edit(
            ref, remove_tags=[check_name(t, "tag") for t in _flat(tags)], actor=_actor()
        )

    def set_metrics(
        self, ref: str | int, metrics: Mapping[str, float] | None = None, *, remove: Iterable[str] = ()
    ) -> CheckpointRecord:
        """Set (add or change) metrics of the one version ``ref`` names, and remove those named in ``remove``,
        in one step; old and new values are recorded in its history. Raises :class:`ZooError` for a metric
        that is not a finite number, or one to remove that it does not have (nothing changes then)."""
        if isinstance(remove, str):
            remove = [remove]
        return self.repos.checkpoints.edit(
            ref, set_metrics=check_metrics(metrics), remove_metrics=list(remove), actor=_actor()
        )

    def remove_metrics(self, ref: str | int, *keys: str) -> CheckpointRecord:
        """Remove metrics ``keys`` of the one version ``ref`` names (their last values are recorded in its
        history). A metric it does not have is refused and nothing changes."""
        return self.repos.checkpoints.edit(ref, remove_metrics=list(keys), actor=_actor())

    def history(self, ref: str | int) -> list[CheckpointEvent]:
        """The version ``ref`` names: its add, then every change made to it since (tags, metrics, aliases,
        its dataset), oldest first, with who made it and when."""
        return self.repos.checkpoints.history(ref)

    def lineage_tree(self, ref: str | int) -> LineageNode:
        """The lineage tree ``ref`` belongs to: from its oldest ancestor (through ``parent``) down to every
        checkpoint made from it (children through ``parent``, adapters through ``base``)."""
        return self.repos.checkpoints.lineage_tree(ref)[0]

    # ------------------------------------------------------------------------------------------------
    # weights out: export and diff
    # ------------------------------------------------------------------------------------------------
    def export(
        self,
        ref: str | int | CheckpointRecord,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write the weights of ``ref`` to ``path`` and return it, checked against their hash first.

        ``format`` is "safetensors" (the stored file as is: its sha256 is the checkpoint's) or "pt" (a plain
        state dict for ``torch.load(weights_only=True)``); by default the suffix of ``path`` decides. Raises
        :class:`ZooError` when ``path`` exists (unless ``overwrite``) or its suffix names no format, and
        :class:`~zoo.IntegrityError` when the stored weights are damaged (nothing is written then).
        """
        from zoo.exporting import export_checkpoint

        rec = ref if isinstance(ref, CheckpointRecord) else self.get(ref)
        return export_checkpoint(self.blobs, rec, path, fmt=format, overwrite=overwrite)

    def diff(self, ref_a: str | int, ref_b: str | int) -> WeightsDiff:
        """How the weights of ``ref_b`` differ from those of ``ref_a``, tensor by tensor: a
        :class:`zoo.diffing.WeightsDiff` (tensors changed with their relative L2 and largest absolute
        difference, reshaped, added and removed; both checked against their hash)."""
        from zoo.diffing import diff_state_dicts

        a, b = self.get(ref_a), self.get(ref_b)
        tensors_a = self.load_state_dict(a)
        tensors_b = tensors_a if b.sha256 == a.sha256 else self.load_state_dict(b)
        return diff_state_dicts(tensors_a, tensors_b, names=(a.ref, b.ref))

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

    def dataset_removal_impact(self, name: str) -> DatasetRemoval:
        """What removing dataset ``name`` would touch: the checkpoints registered with it, its vectors."""
        return self.repos.datasets.removal_impact(name)

    def remove_dataset(self, name: str, *, detach: bool = False) -> DatasetRemoval:
        """Remove dataset ``name`` (its record and vectors; never another dataset, never a checkpoint).

        While checkpoints are registered with it the removal is refused and nothing changes, unless
        ``detach``: then those checkpoints stay, with their dataset cleared (recorded in their history).
        Raises :class:`~zoo.NotFoundError` when there is no such dataset.
        """
        from zoo.retrieval.base import invalidate

        removal = self.repos.datasets.remove(name, detach=detach, actor=_actor())
        invalidate(self)  # cached vector tables and indexes of this registry
        log.info("removed dataset %s (%d vectors; detached %s)", name, removal.vectors, removal.checkpoints)
        return removal

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
        """Generator versions, newest first, optionally only those covering ``family`` or with ``status`` (an
        unknown family or status raises :class:`ZooError` naming the known ones)."""
        check_family(family, families, lambda: {f for g in self.repos.generators.list() for f in g.families})
        if status is not None:
            _check_status(status)
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


def _flat(items: Iterable[str | Iterable[str]]) -> list[Any]:
    """``("a", ["b", "c"])`` -> ``["a", "b", "c"]``: tags given one by one or as lists (anything else is
    passed on, for the name check to refuse)."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, (list, tuple, set, frozenset)):
            out.extend(item)
        else:
            out.append(item)
    return out


def _actor() -> str:
    """Who makes a change (for checkpoint histories): the login name, or "" when it cannot be told."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return ""


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
