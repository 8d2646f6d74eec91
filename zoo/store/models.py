"""ORM tables (SQLAlchemy 2.0 typed declarative). Rows never leave the store layer.

The schema is created and changed only by the migrations in ``zoo/store/migrations``; a test checks that
the migrated schema equals these models.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(dt: datetime | None) -> datetime | None:
    """``dt`` marked as UTC when the database handed it back without a zone (SQLite keeps none)."""
    return dt.replace(tzinfo=timezone.utc) if dt is not None and dt.tzinfo is None else dt


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Blob(Base):
    """A weights or generator file in the blob store. ``state`` is "live" or "deleting" (two-phase
    removal)."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="live")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Tables whose integer ids others keep (lineage, watermarks, trained_on, job history): on SQLite they are
# AUTOINCREMENT, so the id of a deleted newest row is never handed out again (PostgreSQL sequences never are).
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    num_classes: Mapped[int] = mapped_column(Integer, default=0)
    num_samples: Mapped[int] = mapped_column(Integer, default=0)
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_checkpoints_name_version"),
        Index("ix_checkpoints_family_arch", "family", "arch_key"),
        NEVER_REUSE_IDS,
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    family: Mapped[str] = mapped_column(String(64))
    arch_name: Mapped[str] = mapped_column(String(128))
    arch_key: Mapped[str] = mapped_column(Text)
    arch_json: Mapped[str] = mapped_column(Text)
    arch_text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    num_params: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), index=True)
    origin: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id", ondelete="SET NULL"))
    base_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    dataset: Mapped[Dataset | None] = relationship(lazy="raise")
    tags: Mapped[list[Tag]] = relationship(lazy="raise", cascade="all, delete-orphan", passive_deletes=True)
    metrics: Mapped[list[Metric]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class Tag(Base):
    __tablename__ = "tags"
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class Metric(Base):
    __tablename__ = "metrics"
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class CheckpointEvent(Base):
    """A change made to a checkpoint after it was added (tags, metrics, aliases, its dataset): who, when,
    what. ``detail`` holds what changed as JSON (e.g. ``{"set": {"top1": [null, 91.2]}}``); the events go
    with the checkpoint when it is removed."""

    __tablename__ = "checkpoint_events"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(32))  # "tagged", "untagged", "metrics", "aliased", ...
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(256), default="")  # the user who made the change
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alias(Base):
    __tablename__ = "aliases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    alias: Mapped[str] = mapped_column(String(128), primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Embedding(Base):
    """A vector for a dataset or an architecture, made by one encoder id and version."""

    __tablename__ = "embeddings"
    __table_args__ = (
        UniqueConstraint("subject", "subject_key", "encoder_id", name="uq_embeddings_subject"),
        NEVER_REUSE_IDS,
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(16))  # "dataset" or "arch"
    subject_key: Mapped[str] = mapped_column(Text)
    encoder_id: Mapped[str] = mapped_column(String(128), index=True)
    encoder_version: Mapped[str] = mapped_column(String(64))
    source_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Generator(Base):
    __tablename__ = "generators"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_generators_name_version"), NEVER_REUSE_IDS)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    families: Mapped[str] = mapped_column(String(256))  # comma-separated family names
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    watermark: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GeneratorCheckpoint(Base):
    """Which checkpoints a generator version was trained on (kept even if a checkpoint is removed later)."""

    __tablename__ = "generator_checkpoints"
    generator_id: Mapped[int] = mapped_column(
        ForeignKey("generators.id", ondelete="CASCADE"), primary_key=True
    )
    checkpoint_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class JobRun(Base):
    __tablename__ = "job_runs"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16))
    holder: Mapped[str] = mapped_column(String(256), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str] = mapped_column(Text, default="")


class Lease(Base):
    """A named lease (e.g. the re-indexing job) held by one process until it expires."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class WatchedFile(Base):
    """A file the re-indexing job found in a watch directory, and what became of it.

    ``(size, mtime_ns)`` unchanged since the last run means the file is not read again; ``sha256`` (of the
    file's bytes) makes imports idempotent by content: a copy of an imported file is not imported twice.
    ``sidecar_sha256`` (of its JSON sidecar's bytes when it was read, "" for none) makes a refused file be
    read again once its sidecar is written, changed or removed.
    """

    __tablename__ = "watched_files"
    path: Mapped[str] = mapped_column(Text, primary_key=True)  # absolute path
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # of the file's bytes, not of the stored blob
    # "imported", "duplicate" (same bytes as another) or "bad"
    status: Mapped[str] = mapped_column(String(16))
    # no foreign key: `zoo rm` may remove it
    checkpoint_id: Mapped[int | None] = mapped_column(Integer, default=None)
    message: Mapped[str] = mapped_column(Text, default="")  # why a bad file was refused
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    sidecar_sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")  # migration 0005


class VersionCounter(Base):
    """The last version number handed out for a name (``kind`` "checkpoint" or "generator").

    Versions come from here, not from the highest surviving row, so removing ``clf:v2`` never lets new
    weights become ``clf:v2`` again.
    """

    __tablename__ = "version_counters"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_version: Mapped[int] = mapped_column(Integer)


class Setting(Base):
    """Small registry-wide key/value state (e.g. the live nearest-neighbour index file)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "Alias",
    "Base",
    "Blob",
    "Checkpoint",
    "CheckpointEvent",
    "Dataset",
    "Embedding",
    "Generator",
    "GeneratorCheckpoint",
    "JobRun",
    "Lease",
    "Metric",
    "Setting",
    "Tag",
    "VersionCounter",
    "WatchedFile",
    "as_utc",
    "utcnow",
]
