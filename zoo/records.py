"""Plain records: what the registry returns. Frozen dataclasses, never ORM rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np

ORIGINS = ("imported", "trained", "fine-tuned", "generated", "adapted")  # how a checkpoint came to be


def _freeze(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class ArchSpec:
    """A concrete architecture: its family, a variant name and the settings that make it exact.

    ``config`` holds everything :meth:`ArchitectureFamily.build` needs (widths, depth, classes, ...).
    Two specs with the same :attr:`key` build modules with identical state-dict layouts.
    """

    family: str  # the family plugin's name, e.g. "resnet"
    name: str  # the variant, e.g. "resnet20"
    config: Mapping[str, Any] = field(default_factory=dict)  # exact settings, JSON-serialisable

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", _freeze(self.config))

    @property
    def key(self) -> str:
        """A canonical string naming this exact architecture (family, name and sorted config)."""
        return (
            f"{self.family}:{self.name}:"
            f"{json.dumps(dict(self.config), sort_keys=True, separators=(',', ':'))}"
        )

    def to_json(self) -> str:
        return json.dumps(
            {"family": self.family, "name": self.name, "config": dict(self.config)}, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        data = json.loads(text)
        return cls(data["family"], data["name"], data.get("config", {}))

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArchSpec) and self.key == other.key

    def __str__(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        return f"{self.name}({extra})" if extra else self.name


@dataclass(frozen=True)
class CheckpointRecord:
    """One registered checkpoint: a named, versioned set of weights with what is known about it."""

    id: int
    name: str  # the checkpoint's name; versions share it
    version: int  # 1, 2, ... per name
    arch: ArchSpec
    arch_text: str  # the family's canonical description (what the text encoder reads)
    sha256: str  # content address of the weights blob
    num_params: int  # parameters in the generated layout (LoRA: the adapter only)
    size_bytes: int  # blob size on disk
    dataset: str | None  # registered dataset name the weights were trained on, if known
    metrics: Mapping[str, float]
    tags: tuple[str, ...]
    origin: str  # one of ORIGINS
    parent_id: int | None  # lineage: the checkpoint this one came from
    base_id: int | None  # a checkpoint these weights are applied to (LoRA base)
    created_at: datetime
    meta: Mapping[str, Any] = field(
        default_factory=dict
    )  # free-form provenance (source path, generator, ...)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", _freeze(self.metrics))
        object.__setattr__(self, "meta", _freeze(self.meta))

    @property
    def ref(self) -> str:
        """``name:vN``: the unambiguous reference of this version."""
        return f"{self.name}:v{self.version}"

    @property
    def family(self) -> str:
        return self.arch.family

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "family": self.arch.family,
            "arch": self.arch.name,
            "arch_config": dict(self.arch.config),
            "arch_text": self.arch_text,
            "sha256": self.sha256,
            "num_params": self.num_params,
            "size_bytes": self.size_bytes,
            "dataset": self.dataset,
            "metrics": dict(self.metrics),
            "tags": list(self.tags),
            "origin": self.origin,
            "parent_id": self.parent_id,
            "base_id": self.base_id,
            "created_at": self.created_at.isoformat(),
            "meta": dict(self.meta),
        }


@dataclass(frozen=True)
class DatasetRecord:
    """A registered dataset: its identity and a fingerprint of its content."""

    id: int
    name: str
    description: str
    num_classes: int
    num_samples: int
    fingerprint: str  # sha256 over the samples and labels that were registered
    created_at: datetime
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", _freeze(self.meta))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "num_classes": self.num_classes,
            "num_samples": self.num_samples,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at.isoformat(),
            "meta": dict(self.meta),
        }


@dataclass(frozen=True, eq=False)
class EmbeddingRecord:
    """A vector made by one encoder (id and version) for a dataset or an architecture."""

    id: int
    subject: str  # "dataset" or "arch"
    subject_key: str  # dataset name, or ArchSpec.key
    encoder_id: str
    encoder_version: str
    source_fingerprint: str  # fingerprint of what was encoded: a changed source makes the vector stale
    vector: np.ndarray  # float32, shape (dim,)
    created_at: datetime

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])


@dataclass(frozen=True)
class AliasRecord:
    """``name@alias`` pointing at one version of a checkpoint; aliases move."""

    name: str
    alias: str
    checkpoint_id: int
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class GeneratorRecord:
    """A trained generator version and what it was trained on."""

    id: int
    name: str
    version: int
    families: tuple[str, ...]
    sha256: str
    config: Mapping[str, Any]
    metrics: Mapping[str, float]
    trained_on: tuple[int, ...]  # checkpoint ids
    watermark: int  # highest checkpoint id seen when training started
    status: str  # "candidate", "promoted" or "retired"
    created_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", _freeze(self.config))
        object.__setattr__(self, "metrics", _freeze(self.metrics))

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"


@dataclass(frozen=True)
class JobRunRecord:
    """One run of a batch job (re-indexing, training): when, what it did, how it ended."""

    id: int
    kind: str  # the job, e.g. "reindex"
    # "running", "succeeded", "failed", "skipped" (nothing to do, or another run held the lease), "killed"
    status: str
    started_at: datetime
    finished_at: datetime | None  # None while running, and for a run found killed
    counts: Mapping[str, int]  # what the run did, by stage (files imported, vectors embedded, ...)
    message: str
    holder: str  # the process that ran it: host:pid:token

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", _freeze(self.counts))

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (None while running or when the end is unknown)."""
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at is not None else None,
            "duration_s": self.duration_s,
            "counts": dict(self.counts),
            "message": self.message,
            "holder": self.holder,
        }


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`Registry.verify` found: damaged blobs and orphans on either side."""

    checked: int  # blobs whose content was hashed
    ok: int
    missing: tuple[str, ...]  # sha256 of blobs the registry references but the store lacks
    corrupt: tuple[str, ...]  # sha256 of blobs whose content no longer matches
    orphan_files: tuple[str, ...]  # files in the store no row references (and stale temp files)
    orphan_rows: tuple[str, ...]  # blob rows no checkpoint or generator references
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupt or self.orphan_files or self.orphan_rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "missing": list(self.missing),
            "corrupt": list(self.corrupt),
            "orphan_files": list(self.orphan_files),
            "orphan_rows": list(self.orphan_rows),
            "repaired": self.repaired,
            "clean": self.clean,
        }


@dataclass(frozen=True)
class RemovalImpact:
    """What removing one checkpoint version touches besides itself (:meth:`Registry.removal_impact`)."""

    checkpoint: CheckpointRecord  # the version that goes
    children: tuple[str, ...]  # refs whose parent it is: they stay, with their parent cleared
    aliases: tuple[str, ...]  # name@alias pointing at it: removed with it
    generators: tuple[str, ...]  # generator refs trained on it: they stay (their trained_on keeps its id)
    base_of: tuple[str, ...]  # refs that apply on top of it (LoRA): while any exist it cannot be removed

    @property
    def orphans(self) -> bool:
        return bool(self.children or self.aliases or self.generators)

    def describe(self) -> list[str]:
        """One line per kind of thing touched, for a prompt or a log."""
        lines = []
        if self.children:
            lines.append(f"parent of {', '.join(self.children)} (their parent is cleared)")
        if self.aliases:
            lines.append(f"aliases {', '.join(self.aliases)} point at it (removed with it)")
        if self.generators:
            lines.append(f"generators {', '.join(self.generators)} were trained on it (they keep working)")
        if self.base_of:
            lines.append(f"base of {', '.join(self.base_of)} (remove those first)")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": self.checkpoint.ref,
            "id": self.checkpoint.id,
            "children": list(self.children),
            "aliases": list(self.aliases),
            "generators": list(self.generators),
            "base_of": list(self.base_of),
        }


@dataclass(frozen=True)
class CheckpointEvent:
    """One entry of a checkpoint's history (:meth:`Registry.history`): its add, or a change made after it.

    ``action`` is "added", "tagged", "untagged", "metrics", "aliased", "unaliased" or "dataset"; ``detail``
    says what changed (tags ``{"tags": [...]}``; metrics ``{"set": {key: [old, new]}, "removed": {key:
    old}}``; aliases ``{"alias": ..., "from"/"moved_to": ref}``; dataset ``{"from": name, "to": None}``).
    """

    id: int | None  # None for the "added" entry (made from the checkpoint's own row)
    checkpoint_id: int
    ref: str
    action: str
    detail: Mapping[str, Any]
    actor: str  # the user who made the change ("" when unknown)
    created_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", _freeze(self.detail))

    def describe(self) -> str:
        """The change in a few words, e.g. ``set top1 90.1 -> 91.2`` or ``tagged prod``."""
        d = self.detail
        if self.action == "added":
            parts = [f"added ({d.get('origin')})"]
            if d.get("parent"):
                parts.append(f"from {d['parent']}")
            if d.get("dataset"):
                parts.append(f"on {d['dataset']}")
            return " ".join(parts)
        if self.action in ("tagged", "untagged"):
            return f"{self.action} {', '.join(d.get('tags', []))}"
        if self.action == "metrics":
            parts = [
                f"set {k} {'-' if old is None else f'{old:g}'} -> {new:g}"
                for k, (old, new) in sorted(d.get("set", {}).items())
            ]
            parts += [f"removed {k} (was {old:g})" for k, old in sorted(d.get("removed", {}).items())]
            return "; ".join(parts)
        if self.action == "aliased":
            moved = f" (moved from {d['from']})" if d.get("from") else ""
            return f"alias @{d.get('alias')} set{moved}"
        if self.action == "unaliased":
            moved = f" (moved to {d['moved_to']})" if d.get("moved_to") else ""
            return f"alias @{d.get('alias')} removed{moved}"
        if self.action == "dataset":
            why = f" ({d['why']})" if d.get("why") else ""
            return f"dataset {d.get('from') or '-'} -> {d.get('to') or '-'}{why}"
        return f"{self.action} {json.dumps(dict(d), sort_keys=True)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "checkpoint_id": self.checkpoint_id,
            "ref": self.ref,
            "action": self.action,
            "detail": json.loads(json.dumps(dict(self.detail))),
            "actor": self.actor,
            "created_at": self.created_at.isoformat(),
            "summary": self.describe(),
        }


@dataclass(frozen=True)
class LineageNode:
    """A checkpoint in a lineage tree (:meth:`Registry.lineage_tree`) with the checkpoints made from it."""

    checkpoint: CheckpointRecord
    relation: str  # how it hangs off its parent node: "root", "parent" (lineage) or "base" (applied on top)
    children: tuple[LineageNode, ...] = ()

    def walk(self) -> list[LineageNode]:
        """This node and every node below it, depth first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out

    def to_dict(self) -> dict[str, Any]:
        c = self.checkpoint
        return {
            "ref": c.ref,
            "id": c.id,
            "arch": c.arch.name,
            "origin": c.origin,
            "dataset": c.dataset,
            "relation": self.relation,
            "children": [child.to_dict() for child in self.children],
        }


@dataclass(frozen=True)
class DatasetRemoval:
    """What removing a dataset touches (:meth:`Registry.remove_dataset`,
    :meth:`Registry.dataset_removal_impact`)."""

    dataset: DatasetRecord  # the dataset that goes
    checkpoints: tuple[str, ...]  # refs registered with it: they stay, with their dataset cleared (detached)
    vectors: int  # its stored vectors (one per encoder), removed with it

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": self.dataset.name,
            "id": self.dataset.id,
            "detached": list(self.checkpoints),
            "vectors": self.vectors,
        }
