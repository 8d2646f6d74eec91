"""The registry: checkpoints, datasets, aliases and lineage in SQL; weights in the blob store.

Entry point: :meth:`Registry.add`. References to a checkpoint (``ref``) take the forms ``name`` (newest
version), ``name:v3`` (a version), ``name@best`` (an alias) or an integer id.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session
from torch import nn

from zoo.checkpoint_io import CheckpointLike, detect_weights, fit_prefix, read_checkpoint
from zoo.errors import (
    DuplicateError,
    NotFoundError,
    ZooError,
    show,
)
from zoo.plugins import get_family, resolve_arch
from zoo.records import (
    ORIGINS,
    AliasRecord,
    ArchSpec,
    CheckpointRecord,
    DatasetRecord,
    GeneratorRecord,
    RemovalImpact,
    VerifyReport,
)
from zoo.refs import parse_ref
from zoo.store import models as m
from zoo.store.blobs import BlobStore
from zoo.store.db import Database, default_url, retry, sqlite_path
from zoo.validation import OPS, as_id, check_json, check_metrics, check_name, parse_metric_filters

log = logging.getLogger(__name__)

ORPHAN_GRACE_S = 600.0
GENERATOR_STATUSES = ("candidate", "promoted", "retired")  # a generator version's life
_INSERT_CHECKPOINT = insert(m.Checkpoint).returning(m.Checkpoint.id)  # built once: values come as parameters  # verify --repair leaves younger unreferenced files alone: an add may be in flight


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

    def __init__(self, url: str | os.PathLike[str] | None = None, *, blob_root: str | os.PathLike[str] | None = None,
                 fsync: bool = False, create: bool = True) -> None:
        url_s = str(url) if url is not None else default_url()
        if "://" not in url_s:  # a bare path means a SQLite file
            url_s = f"sqlite:///{url_s}"
        self.url = url_s
        self.db = Database(url_s, create=create)
        self.blobs = BlobStore(blob_root if blob_root is not None else default_blob_root(url_s), fsync=fsync)

    def __repr__(self) -> str:
        return f"Registry({self.url!r}, blob_root={str(self.blobs.root)!r})"

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> "Registry":
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
        if origin not in ORIGINS:
            raise ZooError(f"unknown origin {show(origin)}; choose from {', '.join(ORIGINS)}")
        metrics = check_metrics(metrics)
        if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
            raise ZooError(f"tags must be a list of names, not {show(tags)}; pass tags=[...]")
        tags = tuple(sorted({check_name(t, "tag") for t in tags}))
        if alias is not None:
            check_name(alias, "alias")
        if meta is not None and not isinstance(meta, Mapping):
            raise ZooError(f"meta must be a mapping of JSON values, not {type(meta).__name__}")
        if arch is not None and not isinstance(arch, (str, ArchSpec)):
            raise ZooError(f"arch must be an architecture name, a spec or a spec's JSON, not {show(arch)}")
        for what, ref in (("parent", parent), ("base", base)):
            if ref is not None and (isinstance(ref, bool) or not isinstance(ref, (str, int))):
                raise ZooError(f"{what} must be a checkpoint reference (name, name:vN, name@alias or id), "
                               f"not {show(ref)}")
        if dataset is not None:
            check_name(dataset, "dataset")
        read = read_checkpoint(checkpoint, weights=weights, strip_prefix=strip_prefix)
        try:
            spec = resolve_arch(arch) if arch is not None else detect_weights(read)  # may strip a shared prefix
            family = get_family(spec.family)
            if base is not None and family.requires_base(spec):  # describe the base as it is registered
                spec = family.with_base(spec, self.get(base).arch)
            elif base is not None:  # a base would block removing it while these weights never needed it
                refusal = ZooError(f"{spec.name} ({spec.family} family) weights are a whole network, not applied on "
                                   "top of a base checkpoint, so base= does not fit them (it is for adapters such "
                                   "as LoRA); leave out base=, and pass parent= to record the checkpoint they "
                                   "came from")
                refusal.keywords = ("base", "parent")  # say it with --base/--parent, or sidecar keys
                raise refusal
            if arch is not None:
                fit_prefix(read, family, spec)  # strips a shared prefix when only that stands in the way
            state = family.canonicalize(spec, read.state_dict)
        except ZooError as exc:
            if isinstance(checkpoint, (str, os.PathLike)):  # say which file does not fit
                exc.about(read.source)
            raise
        if name is None:  # a file stem such as 'my model (v2)' becomes 'my-model-v2'
            name = re.sub(r"[^A-Za-z0-9._-]+", "-", read.default_name or spec.name).strip("-._")[:128] or spec.name
        name = check_name(name)
        if family.requires_base(spec) and base is None:
            raise ZooError(f"{spec} applies on top of a base checkpoint; pass base= (a registered checkpoint)")
        tensors = _unshare(state)
        blob_meta = {"zoo.family": spec.family, "zoo.arch": spec.name}
        meta_all = {**({"source": read.source} if isinstance(checkpoint, (str, os.PathLike)) else {}),
                    **read.notes(), **dict(meta or {})}
        check_json(meta_all, "meta")
        num_params = family.layout(spec).num_params
        arch_text = family.describe(spec)
        sha, created, size = self.blobs.put_tensors(tensors, blob_meta)

        def txn() -> CheckpointRecord:
            with self.db.write() as s:
                self.db.lock_key(s, sha)
                self.db.lock_key(s, f"checkpoint:{name}")  # PostgreSQL: adds of one name pick versions in turn
                rec = self._insert(s, name, spec, arch_text, sha, size, num_params, dataset, metrics, tags,
                                   origin, parent, base, alias, meta_all, exist_ok)
                if not self.blobs.exists(sha):  # a concurrent remove took the file: write it again
                    self.blobs.put_tensors(tensors, blob_meta)
                return rec

        try:
            rec = retry(txn)
        except BaseException:
            if created:  # leave the store as it was
                self._drop_if_unreferenced(sha)
            raise
        log.info("added %s (%s, %s params, blob %s)", rec.ref, spec, num_params, sha[:12])
        return rec

    def _insert(self, s: Session, name: str, spec: ArchSpec, arch_text: str, sha: str, size: int, num_params: int,
                dataset: str | None, metrics: dict[str, float], tags: tuple[str, ...], origin: str,
                parent: str | int | None, base: str | int | None, alias: str | None, meta: dict[str, Any],
                exist_ok: bool) -> CheckpointRecord:
        existing = s.execute(select(m.Checkpoint.id, m.Checkpoint.version, m.Checkpoint.sha256)
                             .where(m.Checkpoint.name == name)).all()
        same = next((row for row in existing if row.sha256 == sha), None)
        if same is not None:
            if exist_ok:
                return self._record(s, s.get_one(m.Checkpoint, same.id))
            raise DuplicateError("checkpoint", f"{name}:v{same.version}",
                                 "these exact weights are already registered under this name; "
                                 "use that version, pass exist_ok=True, or choose another name")
        parent_id = self._resolve(s, parent).id if parent is not None else None
        base_id = self._resolve(s, base).id if base is not None else None
        dataset_id = self._dataset_row(s, dataset).id if dataset is not None else None
        self._upsert_live_blob(s, sha, size)
        version = self._next_version(s, "checkpoint", name)
        now = m.utcnow()
        # PostgreSQL: ids come from a sequence at insert time, so two adds could commit out of id order and a
        # reader's watermark (search(after=...)) step over the one still in flight. Taking this lock before the
        # insert and holding it to commit makes ids follow commit order (SQLite writers are serial anyway).
        self.db.lock_key(s, "checkpoint-ids")
        try:
            cid = s.execute(_INSERT_CHECKPOINT, dict(
                name=name, version=version, family=spec.family, arch_name=spec.name, arch_key=spec.key,
                arch_json=spec.to_json(), arch_text=arch_text, sha256=sha, num_params=num_params, size_bytes=size,
                dataset_id=dataset_id, origin=origin, parent_id=parent_id, base_id=base_id, meta=meta,
                created_at=now)).scalar_one()
        except SAIntegrityError as exc:
            raise DuplicateError("checkpoint", f"{name}:v{version}", "a concurrent add took this version; retry") \
                from exc
        if tags:
            s.execute(insert(m.Tag), [{"checkpoint_id": cid, "tag": t} for t in tags])
        if metrics:
            s.execute(insert(m.Metric), [{"checkpoint_id": cid, "key": k, "value": v} for k, v in metrics.items()])
        if alias is not None:
            self._set_alias(s, s.get_one(m.Checkpoint, cid), alias)
        return CheckpointRecord(
            id=cid, name=name, version=version, arch=spec, arch_text=arch_text, sha256=sha, num_params=num_params,
            size_bytes=size, dataset=dataset, metrics=metrics, tags=tags, origin=origin, parent_id=parent_id,
            base_id=base_id, created_at=now, meta=meta)

    def _next_version(self, s: Session, kind: str, name: str) -> int:
        """The next version of ``name``: one past every version ever handed out, removed ones included."""
        table = m.VersionCounter.__table__
        ins = (sqlite_insert if self.db.dialect == "sqlite" else pg_insert)(table).values(
            kind=kind, name=name, last_version=1)
        ins = ins.on_conflict_do_update(index_elements=[table.c.kind, table.c.name],
                                        set_={"last_version": table.c.last_version + 1})
        return int(s.execute(ins.returning(table.c.last_version)).scalar_one())

    def _upsert_live_blob(self, s: Session, sha: str, size: int) -> None:
        """Insert the blob row, or mark an existing one live again (it may be half-way through removal)."""
        ins = (sqlite_insert if self.db.dialect == "sqlite" else pg_insert)(m.Blob).values(
            sha256=sha, size=size, state="live", created_at=m.utcnow())
        s.execute(ins.on_conflict_do_update(index_elements=[m.Blob.sha256], set_={"state": "live"}))

    def _dataset_row(self, s: Session, name: str) -> m.Dataset:
        row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
        if row is None:  # a dataset known by name only; registering it later fills in the rest
            self.db.lock_key(s, f"dataset:{check_name(name, 'dataset')}")  # as register_dataset does
            row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
        if row is None:
            row = m.Dataset(name=name, description="", meta={"placeholder": True})
            s.add(row)
            s.flush()
        return row

    # ------------------------------------------------------------------------------------------------
    # reading
    # ------------------------------------------------------------------------------------------------
    def get(self, ref: str | int) -> CheckpointRecord:
        """The record of ``ref`` (``name``, ``name:v2``, ``name@alias`` or an id)."""
        with self.db.read() as s:
            return self._record(s, self._resolve(s, ref))

    def list(self, *, family: str | None = None, name: str | None = None, latest_only: bool = False,
             limit: int | None = None) -> list[CheckpointRecord]:
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
        registered after the one with that id (ids grow with every add, follow commit order and are never reused, so a
        watermark such as a generator's sees every later add exactly once).
        """
        q = select(m.Checkpoint)
        if family:
            q = q.where(m.Checkpoint.family == family)
        if isinstance(arch, ArchSpec):
            q = q.where(m.Checkpoint.arch_key == arch.key)
        elif arch:
            q = q.where(m.Checkpoint.arch_name == arch)
        if dataset:
            q = q.join(m.Dataset, m.Dataset.id == m.Checkpoint.dataset_id).where(m.Dataset.name == dataset)
        for tag in ([tags] if isinstance(tags, str) else tags):  # one tag, not its characters
            q = q.where(exists().where(m.Tag.checkpoint_id == m.Checkpoint.id, m.Tag.tag == tag))
        for key, op, value in parse_metric_filters(metrics):
            q = q.where(exists().where(m.Metric.checkpoint_id == m.Checkpoint.id, m.Metric.key == key,
                                       OPS[op](m.Metric.value, value)))
        if name:
            if any(c in name for c in "*?["):
                like = name.replace("%", r"\%").replace("_", r"\_").replace("*", "%").replace("?", "_")
                q = q.where(m.Checkpoint.name.like(like, escape="\\"))
            else:
                q = q.where(m.Checkpoint.name == name)
        if origin:
            q = q.where(m.Checkpoint.origin == origin)
        if after is not None:
            q = q.where(m.Checkpoint.id > as_id(after, "after"))
        if latest_only:
            newest = select(m.Checkpoint.name, func.max(m.Checkpoint.version).label("v")).group_by(
                m.Checkpoint.name).subquery()
            q = q.join(newest, and_(newest.c.name == m.Checkpoint.name, newest.c.v == m.Checkpoint.version))
        q = q.order_by(m.Checkpoint.id.desc())
        if limit:
            q = q.limit(limit)
        with self.db.read() as s:
            rows = s.scalars(q).all()
            out = self._records(s, rows)
        if name and any(c in name for c in "*?["):  # LIKE is case-insensitive on SQLite; keep glob semantics
            out = [r for r in out if fnmatch.fnmatchcase(r.name, name)]
        return out

    def versions(self, name: str) -> list[CheckpointRecord]:
        """Every version of ``name``, oldest first."""
        with self.db.read() as s:
            rows = s.scalars(select(m.Checkpoint).where(m.Checkpoint.name == name).order_by(m.Checkpoint.version)).all()
            if not rows:
                raise NotFoundError("checkpoint", name)
            return self._records(s, rows)

    def lineage(self, ref: str | int) -> list[CheckpointRecord]:
        """``ref`` and its ancestors through ``parent``, nearest first."""
        out: list[CheckpointRecord] = []
        with self.db.read() as s:
            row: m.Checkpoint | None = self._resolve(s, ref)
            seen: set[int] = set()
            while row is not None and row.id not in seen:
                seen.add(row.id)
                out.append(self._record(s, row))
                row = s.get(m.Checkpoint, row.parent_id) if row.parent_id is not None else None
        return out

    def load_state_dict(self, ref: str | int | CheckpointRecord, device: str | torch.device = "cpu"
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

    # ------------------------------------------------------------------------------------------------
    # aliases
    # ------------------------------------------------------------------------------------------------
    def alias(self, ref: str | int, alias: str) -> AliasRecord:
        """Point ``name@alias`` at the version ``ref`` names (moving it if it pointed elsewhere)."""
        check_name(alias, "alias")

        def txn() -> AliasRecord:
            with self.db.write() as s:
                row = self._resolve(s, ref)
                return self._set_alias(s, row, alias)

        return retry(txn)

    def _set_alias(self, s: Session, row: m.Checkpoint, alias: str) -> AliasRecord:
        """Create or move the alias in one statement (an upsert: concurrent writers cannot collide)."""
        now = m.utcnow()
        ins = (sqlite_insert if self.db.dialect == "sqlite" else pg_insert)(m.Alias).values(
            name=row.name, alias=alias, checkpoint_id=row.id, updated_at=now)
        s.execute(ins.on_conflict_do_update(index_elements=[m.Alias.name, m.Alias.alias],
                                            set_={"checkpoint_id": row.id, "updated_at": now}))
        return AliasRecord(row.name, alias, row.id, row.version, now)

    def aliases(self, name: str | None = None) -> list[AliasRecord]:
        """Aliases (of one name, or all), sorted by name and alias."""
        q = select(m.Alias, m.Checkpoint.version).join(m.Checkpoint, m.Checkpoint.id == m.Alias.checkpoint_id)
        if name:
            q = q.where(m.Alias.name == name)
        with self.db.read() as s:
            return [AliasRecord(a.name, a.alias, a.checkpoint_id, v, m.as_utc(a.updated_at))
                    for a, v in s.execute(q.order_by(m.Alias.name, m.Alias.alias)).all()]

    def unalias(self, name: str, alias: str) -> None:
        with self.db.write() as s:
            if s.get(m.Alias, (name, alias)) is None:
                raise NotFoundError("alias", f"{name}@{alias}")
            s.execute(delete(m.Alias).where(m.Alias.name == name, m.Alias.alias == alias))

    # ------------------------------------------------------------------------------------------------
    # removing and verifying
    # ------------------------------------------------------------------------------------------------
    def removal_impact(self, ref: str | int) -> RemovalImpact:
        """What removing ``ref`` would touch: children, aliases, generators trained on it, dependants."""
        with self.db.read() as s:
            return self._impact(s, self._resolve_one(s, ref))

    def remove(self, ref: str | int) -> RemovalImpact:
        """Remove the one checkpoint version ``ref`` names (its aliases, tags and metrics too) and, if
        unreferenced, its blob; return what it touched (:class:`~zoo.records.RemovalImpact`).

        A bare name removes its only version; a name with several versions is refused (name one: ``name:v3``).
        Children keep their record with ``parent_id`` cleared; generators trained on it keep their
        ``trained_on`` (ids are never reused); a checkpoint that is the base of another cannot be removed until
        those are. Its version number and id are never handed out again.
        """

        def txn() -> RemovalImpact:
            with self.db.write() as s:
                row = self._resolve_one(s, ref)
                impact = self._impact(s, row)
                if impact.base_of:
                    raise ZooError(f"{impact.checkpoint.ref} is the base of {', '.join(impact.base_of)}; "
                                   "remove those first")
                self.db.lock_key(s, row.sha256)
                s.execute(delete(m.Checkpoint).where(m.Checkpoint.id == row.id))
                if not self._blob_referenced(s, row.sha256):
                    s.execute(update(m.Blob).where(m.Blob.sha256 == row.sha256).values(state="deleting"))
                return impact

        impact = retry(txn)
        self._drop_if_unreferenced(impact.checkpoint.sha256)
        log.info("removed %s%s", impact.checkpoint.ref, "".join(f"; {line}" for line in impact.describe()))
        return impact

    def _resolve_one(self, s: Session, ref: str | int) -> m.Checkpoint:
        """Like :meth:`_resolve`, but a bare name must have exactly one version (for destructive actions)."""
        row = self._resolve(s, ref)
        r = parse_ref(ref) if not isinstance(ref, CheckpointRecord) else None
        if r is not None and r.name is not None and r.version is None and r.alias is None:
            versions = s.scalars(select(m.Checkpoint.version).where(m.Checkpoint.name == r.name)
                                 .order_by(m.Checkpoint.version)).all()
            if len(versions) > 1:
                raise ZooError(f"{r.name} has {len(versions)} versions ({', '.join(f'v{v}' for v in versions)}); "
                               f"name the one to act on, e.g. {r.name}:v{versions[-1]}")
        return row

    def _impact(self, s: Session, row: m.Checkpoint) -> RemovalImpact:
        def refs(q: Any) -> tuple[str, ...]:
            return tuple(f"{n}:v{v}" for n, v in s.execute(q).all())

        children = refs(select(m.Checkpoint.name, m.Checkpoint.version).where(m.Checkpoint.parent_id == row.id)
                        .order_by(m.Checkpoint.id))
        base_of = refs(select(m.Checkpoint.name, m.Checkpoint.version).where(m.Checkpoint.base_id == row.id)
                       .order_by(m.Checkpoint.id))
        generators = refs(select(m.Generator.name, m.Generator.version).join(
            m.GeneratorCheckpoint, m.GeneratorCheckpoint.generator_id == m.Generator.id)
            .where(m.GeneratorCheckpoint.checkpoint_id == row.id).order_by(m.Generator.id))
        aliases = tuple(f"{n}@{a}" for n, a in s.execute(select(m.Alias.name, m.Alias.alias).where(
            m.Alias.checkpoint_id == row.id).order_by(m.Alias.alias)).all())
        return RemovalImpact(self._record(s, row), children, aliases, generators, base_of)

    def _blob_referenced(self, s: Session, sha: str) -> bool:
        return bool(s.scalar(select(
            exists().where(m.Checkpoint.sha256 == sha) | exists().where(m.Generator.sha256 == sha))))

    def _drop_if_unreferenced(self, sha: str) -> bool:
        """Delete a blob file and row that nothing references (under the blob's write lock)."""

        def txn() -> bool:
            with self.db.write() as s:
                self.db.lock_key(s, sha)
                if self._blob_referenced(s, sha):
                    return False
                blob = s.get(m.Blob, sha)
                if blob is not None and blob.state == "live":
                    return False  # a concurrent add made it live again
                self.blobs.delete(sha)
                s.execute(delete(m.Blob).where(m.Blob.sha256 == sha))
                return True

        return retry(txn)

    def verify(self, *, repair: bool = False, grace_s: float = ORPHAN_GRACE_S) -> VerifyReport:
        """Hash every referenced blob; find missing/corrupt ones and orphans on either side.

        ``repair`` deletes orphan files older than ``grace_s`` (an add may be writing younger ones), stale
        temp files, and blob rows nothing references. Missing or corrupt blobs cannot be repaired from here:
        re-add those checkpoints from their source.
        """
        with self.db.read() as s:
            rows = s.execute(select(m.Blob.sha256, m.Blob.state)).all()
            referenced = set(s.scalars(select(m.Checkpoint.sha256)).all()) | set(
                s.scalars(select(m.Generator.sha256)).all())
        known = {sha for sha, _ in rows}
        ok, missing, corrupt = 0, [], []
        for sha in sorted(referenced):
            status = self.blobs.check(sha)
            if status == "ok":
                ok += 1
            elif status == "missing":
                missing.append(sha)
            else:
                corrupt.append(sha)
        orphan_rows = sorted(known - referenced)
        orphan_files = sorted(sha for sha in self.blobs.iter_shas() if sha not in known
                              and self.blobs.age_s(sha) > grace_s)
        temps = self.blobs.stale_temp_files(grace_s)
        if repair:
            for sha in orphan_rows:
                self._drop_if_unreferenced_any_state(sha)
            for sha in orphan_files:
                self._delete_orphan_file(sha)
            for p in temps:
                p.unlink(missing_ok=True)
        report = VerifyReport(len(referenced), ok, tuple(missing), tuple(corrupt),
                              tuple(orphan_files) + tuple(str(p.name) for p in temps), tuple(orphan_rows),
                              repaired=repair)
        if not report.clean:
            log.warning("verify: %d missing, %d corrupt, %d orphan files, %d orphan rows%s", len(missing),
                        len(corrupt), len(report.orphan_files), len(orphan_rows), " (repaired)" if repair else "")
        return report

    def _drop_if_unreferenced_any_state(self, sha: str) -> None:
        with self.db.write() as s:
            self.db.lock_key(s, sha)
            if not self._blob_referenced(s, sha):
                s.execute(update(m.Blob).where(m.Blob.sha256 == sha).values(state="deleting"))
        self._drop_if_unreferenced(sha)

    def _delete_orphan_file(self, sha: str) -> None:
        with self.db.write() as s:
            self.db.lock_key(s, sha)
            if s.get(m.Blob, sha) is None:  # still no row: no add committed it meanwhile
                self.blobs.delete(sha)

    # ------------------------------------------------------------------------------------------------
    # datasets (names and fingerprints; embeddings arrive with the encoders)
    # ------------------------------------------------------------------------------------------------
    def register_dataset(self, name: str, data: Any, *, description: str | None = None,
                         encoders: Any = None, replace: bool = False) -> DatasetRecord:
        """Register dataset ``name`` (its size, classes, content fingerprint) with a vector per encoder.

        ``data`` is anything :func:`zoo.datasets.as_dataset` reads (tensors, a torch Dataset, an image folder,
        an MNIST folder, ``"digits"``); ``encoders`` defaults to every installed dataset encoder. See
        :func:`zoo.embeddings.register_dataset`.
        """
        from zoo.embeddings import register_dataset

        return register_dataset(self, name, data, description=description, encoders=encoders, replace=replace)

    def nearest(self, arch: str | ArchSpec | None, dataset: Any, k: int = 5, **options: Any) -> list[Any]:
        """Checkpoints of a compatible architecture ranked by dataset similarity (``Neighbor`` records).

        ``dataset`` is a registered dataset's name or data to embed. Options (``encoder``, ``match``,
        ``arch_weight``, ``min_similarity``, ``latest_only``, ``method``) are those of
        :func:`zoo.embeddings.nearest`.
        """
        from zoo.embeddings import nearest

        return nearest(self, arch, dataset, k, **options)

    def get_many(self, ids: Iterable[int]) -> list[CheckpointRecord]:
        """Records of the checkpoints with these ids (ints or ``id:N``; missing ids are skipped), in one read.

        Raises :class:`ZooError` for anything that is not an id: a name such as ``"2"`` is not one (refs grammar).
        """
        ids = [as_id(i, "get_many") for i in ids]
        with self.db.read() as s:
            rows = s.scalars(select(m.Checkpoint).where(m.Checkpoint.id.in_(ids))).all() if ids else []
            return self._records(s, rows)

    # ------------------------------------------------------------------------------------------------
    # generator versions
    # ------------------------------------------------------------------------------------------------
    def add_generator(self, data: bytes, *, name: str = "igpg", families: Iterable[str], config: Mapping[str, Any],
                      metrics: Mapping[str, float], trained_on: Iterable[int], status: str = "candidate"
                      ) -> GeneratorRecord:
        """Store a trained generator (safetensors bytes) as the next version of ``name``.

        ``trained_on`` are the checkpoint ids it learnt from; the highest is its training watermark.
        """
        check_name(name, "generator name")
        if status not in GENERATOR_STATUSES:
            raise ZooError(f"unknown generator status {status!r}; choose from {', '.join(GENERATOR_STATUSES)}")
        ids = sorted(set(int(i) for i in trained_on))
        sha, created = self.blobs.put(data)

        def txn() -> GeneratorRecord:
            with self.db.write() as s:
                self.db.lock_key(s, sha)
                self.db.lock_key(s, f"generator:{name}")  # PostgreSQL: versions of one name in turn
                self._upsert_live_blob(s, sha, len(data))
                version = self._next_version(s, "generator", name)
                row = m.Generator(name=name, version=version, families=",".join(sorted(families)), sha256=sha,
                                  config=dict(config), metrics={k: float(v) for k, v in metrics.items()},
                                  watermark=max(ids, default=0), status=status, created_at=m.utcnow())
                s.add(row)
                s.flush()
                if ids:
                    s.execute(insert(m.GeneratorCheckpoint),
                              [{"generator_id": row.id, "checkpoint_id": i} for i in ids])
                if not self.blobs.exists(sha):
                    self.blobs.put(data, sha)
                return self._generator_record(row, ids)

        try:
            return retry(txn)
        except BaseException:
            if created:
                self._drop_if_unreferenced(sha)
            raise

    def generators(self, *, family: str | None = None, status: str | None = None) -> list[GeneratorRecord]:
        """Generator versions, newest first, optionally only those covering ``family`` or with ``status``."""
        q = select(m.Generator).order_by(m.Generator.id.desc())
        if status:
            q = q.where(m.Generator.status == status)
        with self.db.read() as s:
            rows = [r for r in s.scalars(q).all() if family is None or family in r.families.split(",")]
            return [self._generator_record(r, self._trained_on(s, r.id)) for r in rows]

    def get_generator(self, ref: str | int) -> GeneratorRecord:
        """A generator version by ``name`` (newest), ``name:vN``, ``name@promoted`` (newest promoted; any status
        works) or ``id:N`` / an int id: the grammar of :mod:`zoo.refs`."""
        r = parse_ref(ref, "generator")
        with self.db.read() as s:
            q = select(m.Generator)
            if r.id is not None:
                q = q.where(m.Generator.id == r.id)
            else:
                q = q.where(m.Generator.name == r.name)
                if r.version is not None:
                    q = q.where(m.Generator.version == r.version)
                if r.alias is not None:
                    q = q.where(m.Generator.status == r.alias)
            row = s.scalars(q.order_by(m.Generator.version.desc())).first()
            if row is None:
                raise NotFoundError("generator", str(r), "see `zoo generators`, or train one with `zoo train`")
            return self._generator_record(row, self._trained_on(s, row.id))

    def set_generator_status(self, ref: str | int, status: str) -> GeneratorRecord:
        """Mark a generator version "candidate", "promoted" or "retired"."""
        if status not in GENERATOR_STATUSES:
            raise ZooError(f"unknown generator status {status!r}; choose from {', '.join(GENERATOR_STATUSES)}")
        rec = self.get_generator(ref)
        with self.db.write() as s:
            s.execute(update(m.Generator).where(m.Generator.id == rec.id).values(status=status))
        return self.get_generator(rec.id)

    def load_generator_bytes(self, ref: str | int | GeneratorRecord) -> bytes:
        """The generator's stored bytes, verified against their hash."""
        rec = ref if isinstance(ref, GeneratorRecord) else self.get_generator(ref)
        return self.blobs.read(rec.sha256)

    @staticmethod
    def _trained_on(s: Session, gid: int) -> list[int]:
        return sorted(s.scalars(select(m.GeneratorCheckpoint.checkpoint_id)
                                .where(m.GeneratorCheckpoint.generator_id == gid)).all())

    @staticmethod
    def _generator_record(r: m.Generator, trained_on: Iterable[int]) -> GeneratorRecord:
        return GeneratorRecord(r.id, r.name, r.version, tuple(f for f in r.families.split(",") if f), r.sha256,
                               r.config or {}, r.metrics or {}, tuple(trained_on), r.watermark, r.status,
                               m.as_utc(r.created_at))

    def datasets(self) -> list[DatasetRecord]:
        with self.db.read() as s:
            return [self._dataset_record(r) for r in s.scalars(select(m.Dataset).order_by(m.Dataset.name)).all()]

    def get_dataset(self, name: str) -> DatasetRecord:
        with self.db.read() as s:
            row = s.scalars(select(m.Dataset).where(m.Dataset.name == name)).first()
            if row is None:
                raise NotFoundError("dataset", name, "register it first")
            return self._dataset_record(row)

    @staticmethod
    def _dataset_record(r: m.Dataset) -> DatasetRecord:
        return DatasetRecord(r.id, r.name, r.description, r.num_classes, r.num_samples, r.fingerprint,
                             m.as_utc(r.created_at), r.meta or {})

    def stats(self) -> dict[str, Any]:
        """Counts of what the registry holds."""
        with self.db.read() as s:
            return {
                "checkpoints": s.scalar(select(func.count()).select_from(m.Checkpoint)) or 0,
                "names": s.scalar(select(func.count(func.distinct(m.Checkpoint.name)))) or 0,
                "blobs": s.scalar(select(func.count()).select_from(m.Blob)) or 0,
                "blob_bytes": int(s.scalar(select(func.coalesce(func.sum(m.Blob.size), 0))) or 0),  # PG: numeric
                "datasets": s.scalar(select(func.count()).select_from(m.Dataset)) or 0,
                "generators": s.scalar(select(func.count()).select_from(m.Generator)) or 0,
                "families": sorted(set(s.scalars(select(m.Checkpoint.family).distinct()).all())),
            }

    # ------------------------------------------------------------------------------------------------
    # resolution and conversion
    # ------------------------------------------------------------------------------------------------
    def _resolve(self, s: Session, ref: str | int | CheckpointRecord) -> m.Checkpoint:
        """The row ``ref`` names, in the grammar of :mod:`zoo.refs` (a string is an id only as ``id:N``)."""
        if isinstance(ref, CheckpointRecord):
            ref = ref.id
        r = parse_ref(ref)
        if r.id is not None:
            row = s.get(m.Checkpoint, r.id)
            if row is None:
                raise NotFoundError("checkpoint", str(r), "see `zoo list` for what is registered")
            return row
        name = r.name
        if r.alias is not None:
            a = s.get(m.Alias, (name, r.alias))
            if a is None and not s.scalar(select(exists().where(m.Checkpoint.name == name))):
                raise NotFoundError("checkpoint", name, "see `zoo list` for what is registered")
            if a is None:
                raise NotFoundError("alias", str(r), f"set it with `zoo alias {name}:vN {r.alias}`")
            row = s.get(m.Checkpoint, a.checkpoint_id)
        elif r.version is not None:
            row = s.scalars(select(m.Checkpoint).where(m.Checkpoint.name == name,
                                                       m.Checkpoint.version == r.version)).first()
        else:
            row = s.scalars(select(m.Checkpoint).where(m.Checkpoint.name == name)
                            .order_by(m.Checkpoint.version.desc())).first()
        if row is None:
            hint = "see `zoo list` for what is registered"
            last = s.scalar(select(m.VersionCounter.last_version).where(m.VersionCounter.kind == "checkpoint",
                                                                         m.VersionCounter.name == name))
            if r.version is not None and last is not None:
                hint = (f"{name}:v{r.version} was removed (versions are never reused)" if 1 <= r.version <= last
                        else f"versions of {name} run from v1 to v{last}") + f"; see `zoo list --name {name}`"
            elif isinstance(ref, str) and ref.isdigit() and s.get(m.Checkpoint, int(ref)) is not None:
                hint = f"a string is a name; to refer to the checkpoint with id {ref}, write id:{ref}"
            raise NotFoundError("checkpoint", str(ref), hint)
        return row

    def _record(self, s: Session, row: m.Checkpoint) -> CheckpointRecord:
        return self._records(s, [row])[0]

    def _records(self, s: Session, rows: Sequence[m.Checkpoint]) -> list[CheckpointRecord]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        tags: dict[int, list[str]] = {}
        metrics: dict[int, dict[str, float]] = {}
        datasets: dict[int, str] = {}
        for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
            for cid, tag in s.execute(select(m.Tag.checkpoint_id, m.Tag.tag).where(m.Tag.checkpoint_id.in_(chunk))):
                tags.setdefault(cid, []).append(tag)
            for cid, k, v in s.execute(select(m.Metric.checkpoint_id, m.Metric.key, m.Metric.value)
                                       .where(m.Metric.checkpoint_id.in_(chunk))):
                metrics.setdefault(cid, {})[k] = v
        ds_ids = {r.dataset_id for r in rows if r.dataset_id is not None}
        if ds_ids:
            datasets = dict(s.execute(select(m.Dataset.id, m.Dataset.name).where(m.Dataset.id.in_(ds_ids))).all())
        return [
            CheckpointRecord(
                id=r.id, name=r.name, version=r.version, arch=ArchSpec.from_json(r.arch_json), arch_text=r.arch_text,
                sha256=r.sha256, num_params=r.num_params, size_bytes=r.size_bytes,
                dataset=datasets.get(r.dataset_id) if r.dataset_id is not None else None,
                metrics=metrics.get(r.id, {}), tags=tuple(sorted(tags.get(r.id, []))), origin=r.origin,
                parent_id=r.parent_id, base_id=r.base_id, created_at=m.as_utc(r.created_at), meta=r.meta or {},
            )
            for r in rows
        ]


def _unshare(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Clone tensors that share storage with an earlier one (safetensors stores each tensor once)."""
    seen: set[tuple[int, int]] = set()
    out: dict[str, torch.Tensor] = {}
    for k, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) if t.numel() else (id(t), 0)
        out[k] = t.clone() if key in seen else t
        seen.add(key)
    return out


__all__ = ["Registry", "check_name", "default_blob_root"]
