"""Checkpoints: their rows (with tags, metrics, aliases and lineage), resolved from references, as records.

:class:`CheckpointRepository` owns every session that reads or writes checkpoint rows and hands out plain
:class:`~zoo.records.CheckpointRecord` values. Concurrency rules it keeps (see
``tests/zoo/test_concurrency.py``):

- an add locks its blob and then its name (PostgreSQL advisory locks; SQLite writers are serial anyway), takes
  its version from the never-reused counter, and takes the ``checkpoint-ids`` lock right before the insert,
  holding it to commit, so that ids follow commit order;
- a remove marks an unreferenced blob ``deleting`` in its transaction and deletes the file afterwards
  (:class:`~zoo.store.blobrows.BlobRepository`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, delete, exists, func, insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from zoo.errors import DuplicateError, Hint, NotFoundError, ZooError
from zoo.records import AliasRecord, ArchSpec, CheckpointEvent, CheckpointRecord, LineageNode, RemovalImpact
from zoo.refs import parse_ref
from zoo.store import models as m
from zoo.store.blobrows import BlobRepository
from zoo.store.datasets import DatasetRepository
from zoo.store.db import Database, retry
from zoo.validation import OPS, as_id, parse_metric_filters

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

LIST = Hint("registry.list()", "`zoo list`")  # where to see what is registered
_INSERT_CHECKPOINT = insert(m.Checkpoint).returning(m.Checkpoint.id)  # built once: values come as parameters


@dataclass(frozen=True)
class NewCheckpoint:
    """A checkpoint ready to be stored: checked weights and every field of its row (see :mod:`zoo.intake`)."""

    name: str
    spec: ArchSpec
    arch_text: str  # the family's description of spec
    num_params: int
    tensors: Mapping[str, torch.Tensor]  # canonical, no shared storage
    blob_meta: Mapping[str, str]  # safetensors metadata
    dataset: str | None
    metrics: dict[str, float]
    tags: tuple[str, ...]
    origin: str
    parent: str | int | None  # references, resolved inside the transaction
    base: str | int | None
    alias: str | None
    meta: dict[str, Any]


class CheckpointRepository:
    """The ``checkpoints`` table and what hangs off it (tags, metrics, aliases)."""

    def __init__(self, db: Database, blobs: BlobRepository, datasets: DatasetRepository) -> None:
        self.db = db
        self.blobs = blobs
        self.datasets = datasets

    # -- adding -------------------------------------------------------------------------------------
    def add(self, new: NewCheckpoint, *, exist_ok: bool, actor: str = "") -> CheckpointRecord:
        """Write the blob, then the rows in one transaction; on any error the store is left as it was.
        ``actor`` (who adds it) is recorded in the checkpoint's history."""
        sha, created, size = self.blobs.files.put_tensors(new.tensors, new.blob_meta)

        def txn() -> CheckpointRecord:
            with self.db.write() as s:
                self.db.lock_key(s, sha)
                # PostgreSQL: adds of one name pick versions in turn
                self.db.lock_key(s, f"checkpoint:{new.name}")
                rec = self.insert_rows(s, new, sha, size, exist_ok, actor, repairs=created)
                if not self.blobs.files.exists(sha):  # a concurrent remove took the file: write it again
                    self.blobs.files.put_tensors(new.tensors, new.blob_meta)
                return rec

        try:
            return retry(txn)
        except BaseException:
            if created:  # leave the store as it was
                self.blobs.drop_if_unreferenced(sha)
            raise

    def insert_rows(
        self,
        s: Session,
        new: NewCheckpoint,
        sha: str,
        size: int,
        exist_ok: bool,
        actor: str = "",
        *,
        repairs: bool = False,
    ) -> CheckpointRecord:
        """The rows of ``new`` (or, with ``exist_ok``, the record of the same weights under the same name).
        ``repairs``: the blob file was written anew; when those weights are registered under this name
        already, their file was missing or damaged and is now repaired: that record is returned (with a
        warning saying so and an event in its history) rather than a :class:`DuplicateError`."""
        name, spec = new.name, new.spec
        existing = s.execute(
            select(m.Checkpoint.id, m.Checkpoint.version, m.Checkpoint.sha256).where(
                m.Checkpoint.name == name
            )
        ).all()
        same = next((row for row in existing if row.sha256 == sha), None)
        if same is not None:
            if repairs:  # re-adding the source of a damaged blob is how it is repaired: say so
                log.warning(
                    "repaired blob %s… of %s:v%d: its file was missing or damaged and the weights added "
                    "again match it",
                    sha[:16],
                    name,
                    same.version,
                )
                self.log_event(s, same.id, "blob_repaired", {"sha256": sha}, actor)
            if exist_ok or repairs:
                return self.record(s, s.get_one(m.Checkpoint, same.id))
            exist_ok_hint = Hint("pass exist_ok=True", "pass --exist-ok")
            raise DuplicateError(
                "checkpoint",
                f"{name}:v{same.version}",
                "these exact weights are already registered under this name; "
                f"use {name}:v{same.version}, {exist_ok_hint} to get it back, or choose another name "
                "(new weights under this name make a new version)",
            ).hinting(exist_ok_hint)
        parent_id = self.resolve(s, new.parent).id if new.parent is not None else None
        base_id = self.resolve(s, new.base).id if new.base is not None else None
        dataset_id = self.datasets.row_for(s, new.dataset).id if new.dataset is not None else None
        self.blobs.upsert_live(s, sha, size)
        version = self.db.next_version(s, "checkpoint", name)
        now = m.utcnow()
        # PostgreSQL: ids come from a sequence at insert time, so two adds could commit out of id order and a
        # reader's watermark (search(after=...)) step over the one still in flight. Taking this lock before
        # the
        # insert and holding it to commit makes ids follow commit order (SQLite writers are serial anyway).
        self.db.lock_key(s, "checkpoint-ids")
        try:
            cid = s.execute(
                _INSERT_CHECKPOINT,
                {
                    "name": name,
                    "version": version,
                    "family": spec.family,
                    "arch_name": spec.name,
                    "arch_key": spec.key,
                    "arch_json": spec.to_json(),
                    "arch_text": new.arch_text,
                    "sha256": sha,
                    "num_params": new.num_params,
                    "size_bytes": size,
                    "dataset_id": dataset_id,
                    "origin": new.origin,
                    "parent_id": parent_id,
                    "base_id": base_id,
                    "meta": new.meta,
                    "created_at": now,
                },
            ).scalar_one()
        except SAIntegrityError as exc:
            raise DuplicateError(
                "checkpoint", f"{name}:v{version}", "a concurrent add took this version; retry"
            ) from exc
        if new.tags:
            s.execute(insert(m.Tag), [{"checkpoint_id": cid, "tag": t} for t in new.tags])
        if new.metrics:
            s.execute(
                insert(m.Metric),
                [{"checkpoint_id": cid, "key": k, "value": v} for k, v in new.metrics.items()],
            )
        self.log_event(s, cid, "added", {}, actor)  # who added it (its row holds the rest)
        if new.alias is not None:
            self.set_alias(s, s.get_one(m.Checkpoint, cid), new.alias, actor)
        return CheckpointRecord(
            id=cid,
            name=name,
            version=version,
            arch=spec,
            arch_text=new.arch_text,
            sha256=sha,
            num_params=new.num_params,
            size_bytes=size,
            dataset=new.dataset,
            metrics=new.metrics,
            tags=new.tags,
            origin=new.origin,
            parent_id=parent_id,
            base_id=base_id,
            created_at=now,
            meta=new.meta,
        )

    # -- reading ------------------------------------------------------------------------------------
    def get(self, ref: str | int | CheckpointRecord) -> CheckpointRecord:
        with self.db.read() as s:
            return self.record(s, self.resolve(s, ref))

    def get_many(self, ids: Iterable[object]) -> list[CheckpointRecord]:
        """Records of the checkpoints with these ids (missing ones skipped), in one read."""
        wanted = [as_id(i, "get_many") for i in ids]
        with self.db.read() as s:
            rows = s.scalars(select(m.Checkpoint).where(m.Checkpoint.id.in_(wanted))).all() if wanted else []
            return self.records(s, rows)

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
        """See :meth:`zoo.registry.Registry.search`."""
        q = select(m.Checkpoint)
        if family:
            q = q.where(m.Checkpoint.family == family)
        if isinstance(arch, ArchSpec):
            q = q.where(m.Checkpoint.arch_key == arch.key)
        elif arch:
            q = q.where(m.Checkpoint.arch_name == arch)
        if dataset:
            q = q.join(m.Dataset, m.Dataset.id == m.Checkpoint.dataset_id).where(m.Dataset.name == dataset)
        for tag in [tags] if isinstance(tags, str) else tags:  # one tag, not its characters
            q = q.where(exists().where(m.Tag.checkpoint_id == m.Checkpoint.id, m.Tag.tag == tag))
        for key, op, value in parse_metric_filters(metrics):
            q = q.where(
                exists().where(
                    m.Metric.checkpoint_id == m.Checkpoint.id,
                    m.Metric.key == key,
                    OPS[op](m.Metric.value, value),
                )
            )
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
            newest = (
                select(m.Checkpoint.name, func.max(m.Checkpoint.version).label("v"))
                .group_by(m.Checkpoint.name)
                .subquery()
            )
            q = q.join(newest, and_(newest.c.name == m.Checkpoint.name, newest.c.v == m.Checkpoint.version))
        q = q.order_by(m.Checkpoint.id.desc())
        if limit:
            q = q.limit(limit)
        with self.db.read() as s:
            rows = s.scalars(q).all()
            out = self.records(s, rows)
        if name and any(c in name for c in "*?["):  # LIKE is case-insensitive on SQLite; keep glob semantics
            out = [r for r in out if fnmatch.fnmatchcase(r.name, name)]
        return out

    def versions(self, name: str) -> list[CheckpointRecord]:
        """Every version of ``name``, oldest first."""
        with self.db.read() as s:
            rows = s.scalars(
                select(m.Checkpoint).where(m.Checkpoint.name == name).order_by(m.Checkpoint.version)
            ).all()
            if not rows:
                raise NotFoundError("checkpoint", name)
            return self.records(s, rows)

    def lineage(self, ref: str | int) -> list[CheckpointRecord]:
        """``ref`` and its ancestors through ``parent``, nearest first."""
        out: list[CheckpointRecord] = []
        with self.db.read() as s:
            row: m.Checkpoint | None = self.resolve(s, ref)
            seen: set[int] = set()
            while row is not None and row.id not in seen:
                seen.add(row.id)
                out.append(self.record(s, row))
                row = s.get(m.Checkpoint, row.parent_id) if row.parent_id is not None else None
        return out

    def stats(self) -> dict[str, Any]:
        """Counts of what the registry holds."""
        with self.db.read() as s:
            return {
                "checkpoints": s.scalar(select(func.count()).select_from(m.Checkpoint)) or 0,
                "names": s.scalar(select(func.count(func.distinct(m.Checkpoint.name)))) or 0,
                "blobs": s.scalar(select(func.count()).select_from(m.Blob)) or 0,
                # PostgreSQL sums to a numeric
                "blob_bytes": int(s.scalar(select(func.coalesce(func.sum(m.Blob.size), 0))) or 0),
                "datasets": s.scalar(select(func.count()).select_from(m.Dataset)) or 0,
                "generators": s.scalar(select(func.count()).select_from(m.Generator)) or 0,
                "families": sorted(set(s.scalars(select(m.Checkpoint.family).distinct()).all())),
            }

    # -- aliases ------------------------------------------------------------------------------------
    def alias(self, ref: str | int, alias: str, actor: str = "") -> AliasRecord:
        def txn() -> AliasRecord:
            with self.db.write() as s:
                return self.set_alias(s, self.resolve_one(s, ref), alias, actor)

        return retry(txn)

    def set_alias(self, s: Session, row: m.Checkpoint, alias: str, actor: str = "") -> AliasRecord:
        """Create or move the alias in one statement (an upsert: concurrent writers cannot collide); the move
        is recorded in the history of both checkpoints."""
        now = m.utcnow()
        before = s.get(m.Alias, (row.name, alias))
        before_id = before.checkpoint_id if before is not None else None
        if before_id != row.id:
            old = s.get(m.Checkpoint, before_id) if before_id is not None else None
            old_ref = f"{old.name}:v{old.version}" if old is not None else None
            self.log_event(s, row.id, "aliased", {"alias": alias, "from": old_ref}, actor)
            if old is not None:
                self.log_event(
                    s, old.id, "unaliased", {"alias": alias, "moved_to": f"{row.name}:v{row.version}"}, actor
                )
        s.execute(
            self.db.upsert(
                m.Alias,
                {"name": row.name, "alias": alias, "checkpoint_id": row.id, "updated_at": now},
                [m.Alias.name, m.Alias.alias],
                {"checkpoint_id": row.id, "updated_at": now},
            )
        )
        return AliasRecord(row.name, alias, row.id, row.version, now)

    def aliases(self, name: str | None = None) -> list[AliasRecord]:
        q = select(m.Alias, m.Checkpoint.version).join(m.Checkpoint, m.Checkpoint.id == m.Alias.checkpoint_id)
        if name:
            q = q.where(m.Alias.name == name)
        with self.db.read() as s:
            return [
                AliasRecord(a.name, a.alias, a.checkpoint_id, v, m.as_utc(a.updated_at))
                for a, v in s.execute(q.order_by(m.Alias.name, m.Alias.alias)).all()
            ]

    def unalias(self, name: str, alias: str, actor: str = "", version: int | None = None) -> AliasRecord:
        """Remove ``name@alias`` and return what it was; with ``version``, only if it points at that
        version."""

        def txn() -> AliasRecord:
            with self.db.write() as s:
                a = s.get(m.Alias, (name, alias))
                if a is None:
                    have = s.scalars(
                        select(m.Alias.alias).where(m.Alias.name == name).order_by(m.Alias.alias)
                    ).all()
                    hint = (
                        f"{name} has aliases {', '.join('@' + x for x in have)}"
                        if have
                        else f"{name} has no aliases"
                    )
                    see = Hint(f"registry.aliases({name!r})", f"`zoo show {name}`")
                    raise NotFoundError("alias", f"{name}@{alias}", f"{hint}; see {see}").hinting(see)
                row = s.get_one(m.Checkpoint, a.checkpoint_id)
                if version is not None and row.version != version:
                    raise ZooError(
                        f"{name}@{alias} points at {name}:v{row.version}, not {name}:v{version}; nothing was "
                        f"removed (to remove it, name it as {name}@{alias})"
                    )
                rec = AliasRecord(name, alias, row.id, row.version, m.as_utc(a.updated_at))
                s.execute(delete(m.Alias).where(m.Alias.name == name, m.Alias.alias == alias))
                self.log_event(s, row.id, "unaliased", {"alias": alias}, actor)
                return rec

        return retry(txn)

    # -- editing after add, and the history of edits --------------------------------------------------
    def log_event(
        self, s: Session, checkpoint_id: int, action: str, detail: dict[str, Any], actor: str
    ) -> None:
        s.add(
            m.CheckpointEvent(
                checkpoint_id=checkpoint_id, action=action, detail=detail, actor=actor, created_at=m.utcnow()
            )
        )

    def edit(
        self,
        ref: str | int,
        *,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
        set_metrics: Mapping[str, float] | None = None,
        remove_metrics: Sequence[str] = (),
        actor: str = "",
    ) -> CheckpointRecord:
        """Change the tags or metrics of the one version ``ref`` names, in one transaction recorded as events.

        Removing a tag or metric the checkpoint does not have is refused and nothing changes."""

        def txn() -> CheckpointRecord:
            with self.db.write() as s:
                row = self.resolve_one(s, ref)
                ref_s = f"{row.name}:v{row.version}"
                tags = set(s.scalars(select(m.Tag.tag).where(m.Tag.checkpoint_id == row.id)).all())
                metrics = {
                    k: v
                    for k, v in s.execute(
                        select(m.Metric.key, m.Metric.value).where(m.Metric.checkpoint_id == row.id)
                    ).all()
                }
                missing_tags = sorted(set(remove_tags) - tags)
                if missing_tags:
                    raise ZooError(
                        f"{ref_s} has no tag {', '.join(map(repr, missing_tags))} (its tags: "
                        f"{', '.join(sorted(tags)) or 'none'}); nothing was changed"
                    )
                missing_metrics = sorted(set(remove_metrics) - set(metrics))
                if missing_metrics:
                    raise ZooError(
                        f"{ref_s} has no metric {', '.join(map(repr, missing_metrics))} (its metrics: "
                        f"{', '.join(sorted(metrics)) or 'none'}); nothing was changed"
                    )
                added = sorted(set(add_tags) - tags)
                if added:
                    s.execute(insert(m.Tag), [{"checkpoint_id": row.id, "tag": t} for t in added])
                    self.log_event(s, row.id, "tagged", {"tags": added}, actor)
                if remove_tags:
                    s.execute(delete(m.Tag).where(m.Tag.checkpoint_id == row.id, m.Tag.tag.in_(remove_tags)))
                    self.log_event(s, row.id, "untagged", {"tags": sorted(set(remove_tags))}, actor)
                changed = {
                    k: [metrics.get(k), v] for k, v in (set_metrics or {}).items() if metrics.get(k) != v
                }
                for key, (old, new) in changed.items():
                    s.execute(
                        self.db.upsert(
                            m.Metric,
                            {"checkpoint_id": row.id, "key": key, "value": new},
                            [m.Metric.checkpoint_id, m.Metric.key],
                            {"value": new},
                        )
                    )
                removed = {k: metrics[k] for k in sorted(set(remove_metrics))}
                if removed:
                    s.execute(
                        delete(m.Metric).where(
                            m.Metric.checkpoint_id == row.id, m.Metric.key.in_(list(removed))
                        )
                    )
                if changed or removed:
                    detail: dict[str, Any] = {}
                    if changed:
                        detail["set"] = changed
                    if removed:
                        detail["removed"] = removed
                    self.log_event(s, row.id, "metrics", detail, actor)
                s.flush()
                return self.record(s, row)

        return retry(txn)

    def history(self, ref: str | int) -> list[CheckpointEvent]:
        """The add of the version ``ref`` names, then every change made to it since, oldest first."""
        with self.db.read() as s:
            row = self.resolve(s, ref)
            rec = self.record(s, row)
            parent = s.get(m.Checkpoint, row.parent_id) if row.parent_id is not None else None
            rows = s.scalars(
                select(m.CheckpointEvent)
                .where(m.CheckpointEvent.checkpoint_id == row.id)
                .order_by(m.CheckpointEvent.id)
            ).all()
            events = [
                CheckpointEvent(
                    e.id, e.checkpoint_id, rec.ref, e.action, e.detail or {}, e.actor, m.as_utc(e.created_at)
                )
                for e in rows
            ]
            stored_add = next((e for e in events if e.action == "added"), None)  # none before migration 0006
            events = [e for e in events if e.action != "added"]
            metrics, tags = dict(rec.metrics), set(rec.tags)
            for e in reversed(events):  # undo the edits: the metrics and tags it was added with
                d = e.detail
                if e.action == "metrics":
                    for key, (old, _new) in d.get("set", {}).items():
                        if old is None:
                            metrics.pop(key, None)
                        else:
                            metrics[key] = old
                    metrics.update(d.get("removed", {}))
                elif e.action == "tagged":
                    tags -= set(d.get("tags", []))
                elif e.action == "untagged":
                    tags |= set(d.get("tags", []))
            added = CheckpointEvent(
                None,
                rec.id,
                rec.ref,
                "added",
                {
                    "origin": rec.origin,
                    "parent": f"{parent.name}:v{parent.version}" if parent is not None else None,
                    "dataset": next(
                        (e.detail.get("from") for e in events if e.action == "dataset"), rec.dataset
                    ),
                    "metrics": metrics,
                    "tags": sorted(tags),
                },
                stored_add.actor if stored_add is not None else "",
                rec.created_at,
            )
            return [added, *events]

    def lineage_tree(self, ref: str | int, max_nodes: int = 10_000) -> tuple[LineageNode, int]:
        """The tree of the oldest ancestor of ``ref`` (through ``parent``) and everything made from it
        (through ``parent`` or ``base``), and the id ``ref`` names."""
        with self.db.read() as s:
            row = self.resolve(s, ref)
            target = row.id
            seen = {row.id}
            while row.parent_id is not None and row.parent_id not in seen:
                up = s.get(m.Checkpoint, row.parent_id)
                if up is None:
                    break
                row, _ = up, seen.add(up.id)
            rows: dict[int, m.Checkpoint] = {row.id: row}
            edges: dict[int, list[tuple[int, str]]] = {}
            frontier = [row.id]
            while frontier and len(rows) < max_nodes:
                found = s.scalars(
                    select(m.Checkpoint)
                    .where((m.Checkpoint.parent_id.in_(frontier)) | (m.Checkpoint.base_id.in_(frontier)))
                    .order_by(m.Checkpoint.id)
                ).all()
                frontier = []
                for child in found:
                    if child.id in rows:
                        continue
                    via = child.parent_id if child.parent_id in rows else child.base_id
                    relation = "parent" if via == child.parent_id else "base"
                    rows[child.id] = child
                    edges.setdefault(int(via), []).append((child.id, relation))  # type: ignore[arg-type]
                    frontier.append(child.id)
            records = {r.id: r for r in self.records(s, list(rows.values()))}
            root = row.id

        relations = {c: rel for kids in edges.values() for c, rel in kids} | {root: "root"}
        nodes: dict[int, LineageNode] = {}
        for cid in reversed(list(rows)):  # children were found after their parents: build from the leaves up
            kids = tuple(nodes[c] for c, _ in edges.get(cid, []))
            nodes[cid] = LineageNode(records[cid], relations[cid], kids)
        return nodes[root], target

    # -- removing -----------------------------------------------------------------------------------
    def removal_impact(self, ref: str | int) -> RemovalImpact:
        with self.db.read() as s:
            return self._impact(s, self.resolve_one(s, ref))

    def remove(self, ref: str | int) -> RemovalImpact:
        """Remove one version (refused while it is the base of another), then its blob if unreferenced."""

        def txn() -> RemovalImpact:
            with self.db.write() as s:
                row = self.resolve_one(s, ref)
                impact = self._impact(s, row)
                if impact.base_of:
                    raise ZooError(
                        f"{impact.checkpoint.ref} is the base of {', '.join(impact.base_of)}; "
                        "remove those first"
                    )
                self.db.lock_key(s, row.sha256)
                s.execute(delete(m.Checkpoint).where(m.Checkpoint.id == row.id))
                self.blobs.mark_deleting_if_unreferenced(s, row.sha256)
                return impact

        impact = retry(txn)
        self.blobs.drop_if_unreferenced(impact.checkpoint.sha256)
        return impact

    def _impact(self, s: Session, row: m.Checkpoint) -> RemovalImpact:
        def refs(q: Select[Any]) -> tuple[str, ...]:
            return tuple(f"{n}:v{v}" for n, v in s.execute(q).all())

        children = refs(
            select(m.Checkpoint.name, m.Checkpoint.version)
            .where(m.Checkpoint.parent_id == row.id)
            .order_by(m.Checkpoint.id)
        )
        base_of = refs(
            select(m.Checkpoint.name, m.Checkpoint.version)
            .where(m.Checkpoint.base_id == row.id)
            .order_by(m.Checkpoint.id)
        )
        generators = refs(
            select(m.Generator.name, m.Generator.version)
            .join(m.GeneratorCheckpoint, m.GeneratorCheckpoint.generator_id == m.Generator.id)
            .where(m.GeneratorCheckpoint.checkpoint_id == row.id)
            .order_by(m.Generator.id)
        )
        aliases = tuple(
            f"{n}@{a}"
            for n, a in s.execute(
                select(m.Alias.name, m.Alias.alias)
                .where(m.Alias.checkpoint_id == row.id)
                .order_by(m.Alias.alias)
            ).all()
        )
        return RemovalImpact(self.record(s, row), children, aliases, generators, base_of)

    # -- resolution and conversion ------------------------------------------------------------------
    def resolve(self, s: Session, ref: str | int | CheckpointRecord) -> m.Checkpoint:
        """The row ``ref`` names, in the grammar of :mod:`zoo.refs` (a string is an id only as ``id:N``)."""
        if isinstance(ref, CheckpointRecord):
            ref = ref.id
        r = parse_ref(ref)
        if r.id is not None:
            row = s.get(m.Checkpoint, r.id)
            if row is None:
                raise NotFoundError("checkpoint", str(r), f"see {LIST} for what is registered").hinting(LIST)
            return row
        name = r.name
        if r.alias is not None:
            a = s.get(m.Alias, (name, r.alias))
            if a is None and not s.scalar(select(exists().where(m.Checkpoint.name == name))):
                raise NotFoundError("checkpoint", name, f"see {LIST} for what is registered").hinting(LIST)
            if a is None:
                set_it = Hint(f"registry.alias('{name}:vN', {r.alias!r})", f"`zoo alias {name}:vN {r.alias}`")
                raise NotFoundError("alias", str(r), f"set it with {set_it}").hinting(set_it)
            row = s.get(m.Checkpoint, a.checkpoint_id)
        elif r.version is not None:
            row = s.scalars(
                select(m.Checkpoint).where(m.Checkpoint.name == name, m.Checkpoint.version == r.version)
            ).first()
        else:
            row = s.scalars(
                select(m.Checkpoint).where(m.Checkpoint.name == name).order_by(m.Checkpoint.version.desc())
            ).first()
        if row is None:
            hint = f"see {LIST} for what is registered"
            listing = LIST
            last = s.scalar(
                select(m.VersionCounter.last_version).where(
                    m.VersionCounter.kind == "checkpoint", m.VersionCounter.name == name
                )
            )
            if r.version is not None and last is not None:
                hint = (
                    f"{name}:v{r.version} was removed (versions are never reused)"
                    if 1 <= r.version <= last
                    else f"versions of {name} run from v1 to v{last}"
                ) + f"; see {(listing := Hint(f'registry.versions({name!r})', f'`zoo list --name {name}`'))}"
            elif isinstance(ref, str) and ref.isdigit() and s.get(m.Checkpoint, int(ref)) is not None:
                hint = f"a string is a name; to refer to the checkpoint with id {ref}, write id:{ref}"
            raise NotFoundError("checkpoint", str(ref), hint).hinting(listing)
        return row

    def resolve_one(self, s: Session, ref: str | int) -> m.Checkpoint:
        """Like :meth:`resolve`, but a bare name must have exactly one version (for destructive actions)."""
        row = self.resolve(s, ref)
        r = parse_ref(ref) if not isinstance(ref, CheckpointRecord) else None
        if r is not None and r.name is not None and r.version is None and r.alias is None:
            versions = s.scalars(
                select(m.Checkpoint.version).where(m.Checkpoint.name == r.name).order_by(m.Checkpoint.version)
            ).all()
            if len(versions) > 1:
                raise ZooError(
                    f"{r.name} has {len(versions)} versions ({', '.join(f'v{v}' for v in versions)}); "
                    f"name the one to act on, e.g. {r.name}:v{versions[-1]}"
                )
        return row

    def record(self, s: Session, row: m.Checkpoint) -> CheckpointRecord:
        return self.records(s, [row])[0]

    def records(self, s: Session, rows: Sequence[m.Checkpoint]) -> list[CheckpointRecord]:
        """Records of ``rows`` with their tags, metrics and dataset names, in a few reads per 500 rows."""
        if not rows:
            return []
        ids = [r.id for r in rows]
        tags: dict[int, list[str]] = {}
        metrics: dict[int, dict[str, float]] = {}
        datasets: dict[int, str] = {}
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            for cid, tag in s.execute(
                select(m.Tag.checkpoint_id, m.Tag.tag).where(m.Tag.checkpoint_id.in_(chunk))
            ):
                tags.setdefault(cid, []).append(tag)
            for cid, k, v in s.execute(
                select(m.Metric.checkpoint_id, m.Metric.key, m.Metric.value).where(
                    m.Metric.checkpoint_id.in_(chunk)
                )
            ):
                metrics.setdefault(cid, {})[k] = v
        ds_ids = {r.dataset_id for r in rows if r.dataset_id is not None}
        if ds_ids:
            datasets = dict(
                s.execute(select(m.Dataset.id, m.Dataset.name).where(m.Dataset.id.in_(ds_ids))).all()
            )
        return [
            CheckpointRecord(
                id=r.id,
                name=r.name,
                version=r.version,
                arch=ArchSpec.from_json(r.arch_json),
                arch_text=r.arch_text,
                sha256=r.sha256,
                num_params=r.num_params,
                size_bytes=r.size_bytes,
                dataset=datasets.get(r.dataset_id) if r.dataset_id is not None else None,
                metrics=metrics.get(r.id, {}),
                tags=tuple(sorted(tags.get(r.id, []))),
                origin=r.origin,
                parent_id=r.parent_id,
                base_id=r.base_id,
                created_at=m.as_utc(r.created_at),
                meta=r.meta or {},
            )
            for r in rows
        ]


__all__ = ["CheckpointRepository", "NewCheckpoint"]
