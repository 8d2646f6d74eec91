"""Dataset and architecture embeddings in the registry, and nearest-neighbour retrieval over them.

Service functions over a :class:`~zoo.registry.Registry`:

- :func:`register_dataset` validates a dataset, stores its name, description, class count and content
  fingerprint, and its vector from every requested dataset encoder.
- :func:`embed_arch` stores the text-encoder vector of an architecture's canonical description.
- :func:`nearest` ranks checkpoints of a compatible architecture by how similar their training dataset is
  to a query dataset (and, when asked, how similar their architecture is).
- :func:`refresh_stale` recomputes what is stale and brings the persisted index up to date.

Every vector is stored with its encoder's id and version and the fingerprint of what it encodes (the
dataset's content fingerprint; the sha256 of the architecture text). A vector is recomputed only when one
of those changes. Search is exact (NumPy) below :data:`~zoo.index.ANN_MIN_VECTORS` dataset vectors and
uses a persisted HNSW index (usearch) above; on PostgreSQL with the pgvector extension the database searches
(exactly, with an HNSW index from that size on; :func:`_pgvector_search`, :mod:`zoo.store.pgvector`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from zoo.datasets import ImageDataset, as_dataset, load_source
from zoo.encoders import (
    DatasetEncoder,
    TextEncoder,
    dataset_encoders,
    get_dataset_encoder,
    get_text_encoder,
    unavailable_reason,
)
from zoo.errors import ConfigError, DatasetError, DuplicateError, NotFoundError, ZooError
from zoo.index import ANN_MIN_VECTORS, ExactIndex, SearchHits, USearchIndex
from zoo.plugins import get_family, resolve_arch
from zoo.records import ArchSpec, CheckpointRecord, DatasetRecord, EmbeddingRecord
from zoo.store import pgvector
from zoo.store.blobs import BlobStore
from zoo.store.db import Database
from zoo.store.repositories import Repositories
from zoo.store.vectors import ARCH, DATASET, Compatible, DatasetData, VectorRepository, VectorTable
from zoo.validation import check_name

log = logging.getLogger(__name__)

ENV_INDEX_DIR = "ZOO_INDEX_DIR"
Match = Literal["exact", "family", "any"]
Method = Literal["auto", "exact", "ann", "pgvector"]
DataLike = Any  # what zoo.datasets.as_dataset reads (ImageDataset, (images, labels), torch Dataset, path, name)
EncoderChoice = Iterable[str | DatasetEncoder] | str | DatasetEncoder | None


class RegistryLike(Protocol):
    """What these functions use of a :class:`~zoo.registry.Registry` (a protocol, so that this module never
    imports the registry: the registry imports it)."""

    @property
    def url(self) -> str: ...

    @property
    def db(self) -> Database: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def repos(self) -> Repositories: ...

    def get_many(self, ids: Iterable[int]) -> list[CheckpointRecord]: ...


# ----------------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Neighbor:
    """One retrieved checkpoint and why it ranks where it does."""

    checkpoint: CheckpointRecord
    similarity: float  # the ranking score: dataset similarity, blended with arch similarity when asked
    dataset: str  # the checkpoint's training dataset
    dataset_similarity: float  # cosine similarity of the query's and that dataset's vectors
    arch_similarity: float | None  # cosine similarity of the architecture texts' vectors (None: not used)
    encoder_id: str  # dataset encoder that made both vectors
    encoder_version: str
    method: str  # "exact", "usearch" or "pgvector"

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint.ref, "checkpoint_id": self.checkpoint.id, "arch": self.checkpoint.arch.name,
                "similarity": self.similarity, "dataset": self.dataset, "dataset_similarity": self.dataset_similarity,
                "arch_similarity": self.arch_similarity, "encoder_id": self.encoder_id,
                "encoder_version": self.encoder_version, "method": self.method}


@dataclass(frozen=True)
class IndexInfo:
    """The persisted nearest-neighbour index of one dataset encoder."""

    encoder_id: str
    encoder_version: str
    path: str
    count: int  # vectors in the index
    dim: int
    dtype: str  # how the index stores vectors ("f32", "f16", "i8")
    rebuilt: bool  # built (or extended) by this call, rather than already current


@dataclass(frozen=True)
class RefreshReport:
    """What :func:`refresh_stale` did."""

    datasets_embedded: tuple[str, ...]  # "dataset/encoder" pairs (re)computed
    datasets_current: int  # (dataset, encoder) pairs that were already current
    datasets_changed: tuple[str, ...]  # datasets whose source data changed since registration
    datasets_need_data: tuple[str, ...]  # stale or never embedded, and zoo cannot read their data again
    archs_embedded: int  # architecture vectors (re)computed
    archs_current: int
    indexes: tuple[IndexInfo, ...]  # persisted ANN indexes checked (rebuilt or not)
    skipped_encoders: tuple[str, ...]  # encoders left out, with the reason

    def to_dict(self) -> dict[str, Any]:
        return {"datasets_embedded": list(self.datasets_embedded), "datasets_current": self.datasets_current,
                "datasets_changed": list(self.datasets_changed), "datasets_need_data": list(self.datasets_need_data),
                "archs_embedded": self.archs_embedded, "archs_current": self.archs_current,
                "indexes": [i.__dict__ for i in self.indexes], "skipped_encoders": list(self.skipped_encoders)}


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def _text_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_vector(vec: np.ndarray, encoder: DatasetEncoder | TextEncoder, what: str) -> np.ndarray:
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    if not np.isfinite(v).all() or not v.any():
        raise ZooError(f"encoder {encoder.id!r} returned a zero or non-finite vector for {what}; the encoder is broken")
    return v / np.linalg.norm(v)


_upsert = VectorRepository._upsert  # (session, subject, key, encoder id, version, fingerprint, vector): tests write rows


def _current(state: tuple[str, str] | None, version: str, fingerprint: str) -> bool:
    """Whether a stored vector's ``(encoder version, source fingerprint)`` is current."""
    return state is not None and state == (version, fingerprint)


def _resolve_encoders(encoders: EncoderChoice) -> tuple[list[DatasetEncoder], list[str]]:
    """(encoders to use, "id: reason" for registered ones left out because they cannot run here)."""
    if encoders is None:
        out, skipped = [], []
        for enc in dataset_encoders().values():
            reason = unavailable_reason(enc)
            (skipped.append(f"{enc.id}: {reason}") if reason else out.append(enc))
        return out, skipped
    if isinstance(encoders, (str, DatasetEncoder)) or hasattr(encoders, "embed"):
        encoders = [encoders]  # type: ignore[list-item]
    return [get_dataset_encoder(e) for e in encoders], []  # type: ignore[union-attr]


def index_dir(registry: RegistryLike) -> Path:
    """Where persisted indexes live: ``$ZOO_INDEX_DIR``, or ``<name>.indexes`` beside the blob store."""
    env = os.environ.get(ENV_INDEX_DIR)
    return Path(env) if env else registry.blobs.root.with_suffix(".indexes")


# ----------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------
def register_dataset(registry: RegistryLike, name: str, data: DataLike, *, description: str | None = None,
                     encoders: EncoderChoice = None, replace: bool = False) -> DatasetRecord:
    """Register (or update) dataset ``name`` and store its vector from each encoder.

    ``data`` is anything :func:`zoo.datasets.as_dataset` reads: an ``ImageDataset``, ``(images, labels)``,
    a torch ``Dataset``, an image-folder or MNIST path, or ``"digits"``. ``encoders`` defaults to every
    registered dataset encoder that can run here (``pixels`` always; ``clip`` once it has weights).
    Registering the same data again only computes vectors that are missing or stale. A dataset already
    registered with *different* data raises :class:`DuplicateError` unless ``replace=True``. Every vector
    is computed before anything is written: on any error nothing is stored.
    """
    check_name(name, "dataset")
    ds = as_dataset(data)
    encs, skipped = _resolve_encoders(encoders)
    for reason in skipped:
        log.info("dataset %s: not embedded with %s", name, reason)
    if not encs:
        raise ConfigError("no dataset encoder can run here; install one or pass encoders=['pixels']")
    fp = ds.fingerprint
    row, existing = registry.repos.vectors.dataset_vectors(name)
    placeholder = row is None or bool(row.meta.get("placeholder")) or not row.fingerprint
    if row is not None and not placeholder and row.fingerprint != fp and not replace:
        raise DuplicateError("dataset", name, f"it is registered with different data (fingerprint "
                             f"{row.fingerprint[:12]}, these data {fp[:12]}); pass replace=True to replace its "
                             "data and vectors, or register the new data under another name")
    vectors: dict[str, tuple[str, np.ndarray]] = {}
    for enc in encs:
        version = enc.version
        if existing.get(enc.id) == (version, fp):
            continue
        vectors[enc.id] = (version, _check_vector(enc.embed(ds), enc, f"dataset {name!r}"))
        log.info("embedded dataset %s with %s@%s", name, enc.id, version)

    meta = {"source": dict(ds.source) if ds.source is not None else None, "image_shape": list(ds.image_shape),
            "class_names": list(ds.class_names), "class_counts": [int(c) for c in ds.class_counts]}

    rec = registry.repos.vectors.save_dataset(
        name, DatasetData(fp, ds.num_classes, ds.num_samples, meta), description=description, replace=replace,
        vectors=vectors)
    _invalidate(registry)
    log.info("registered dataset %s (%d images, %d classes, %d new vectors)", name, ds.num_samples,
             ds.num_classes, len(vectors))
    return rec


def get_embedding(registry: RegistryLike, subject: str, key: str, encoder_id: str) -> EmbeddingRecord:
    """The stored vector of ``(subject, key)`` by ``encoder_id`` (check its version for staleness)."""
    rec = registry.repos.vectors.get(subject, key, encoder_id)
    if rec is None:
        raise NotFoundError(f"{subject} embedding by {encoder_id}", key,
                            "register the dataset (or run refresh_stale) with that encoder")
    return rec


def embeddings(registry: RegistryLike, *, subject: str | None = None, encoder_id: str | None = None
               ) -> list[EmbeddingRecord]:
    """Stored vectors, optionally of one subject (``"dataset"``/``"arch"``) and encoder."""
    return registry.repos.vectors.list(subject=subject, encoder_id=encoder_id)


# ----------------------------------------------------------------------------------------------------
# architectures
# ----------------------------------------------------------------------------------------------------
def _arch_vectors(registry: RegistryLike, texts: Mapping[str, str], encoder: TextEncoder) -> dict[str, np.ndarray]:
    """Vectors for ``{arch_key: text}``: stored ones when current, the rest computed and stored."""
    version = encoder.version
    keys = list(texts)
    fingerprints = {k: _text_fingerprint(t) for k, t in texts.items()}
    out = {k: vec for k, (state, vec) in registry.repos.vectors.arch_vectors(keys, encoder.id).items()
           if _current(state, version, fingerprints[k])}
    todo = [k for k in keys if k not in out]
    if todo:
        vecs = encoder.embed([texts[k] for k in todo])
        new = {k: _check_vector(v, encoder, f"architecture {k}") for k, v in zip(todo, vecs)}
        registry.repos.vectors.save_arch_vectors(new, encoder.id, version, fingerprints)
        _invalidate(registry)
        out.update(new)
        log.info("embedded %d architecture text(s) with %s", len(new), encoder.id)
    return out


def embed_arch(registry: RegistryLike, arch: str | ArchSpec | CheckpointRecord, *,
               encoder: str | TextEncoder | None = None) -> EmbeddingRecord:
    """Store (if not current) and return the text vector of an architecture's canonical description.

    The text is ``family.describe(spec)``, the same as ``CheckpointRecord.arch_text``.
    """
    spec = arch.arch if isinstance(arch, CheckpointRecord) else resolve_arch(arch)
    enc = get_text_encoder(encoder)
    _arch_vectors(registry, {spec.key: get_family(spec.family).describe(spec)}, enc)
    return get_embedding(registry, ARCH, spec.key, enc.id)


# ----------------------------------------------------------------------------------------------------
# vector tables and indexes
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Table:
    token: tuple[int, int]  # the encoder's _change_key when loaded
    ids: np.ndarray  # (N,) embedding row ids
    names: tuple[str, ...]  # subject keys, row-aligned
    row_of: Mapping[str, int]  # subject key -> row
    index: ExactIndex


_tables: dict[tuple[str, str, str, str], _Table] = {}
_ann_cache: dict[str, USearchIndex] = {}
_cache_lock = threading.Lock()


TOKEN_TTL_S = 1.0  # how long a process trusts its view of the vector tables (its own writes count at once)
_changes: dict[tuple[str, str], tuple[float, tuple[int, int]]] = {}
_ann_current: dict[tuple[str, str, str], tuple[tuple[int, int], USearchIndex]] = {}


def _invalidate(registry: RegistryLike) -> None:
    """Forget cached table states of ``registry`` (after this process wrote vectors)."""
    with _cache_lock:
        for key in [k for k in _changes if k[0] == registry.url]:
            del _changes[key]


def _cached_change(registry: RegistryLike, encoder_id: str) -> tuple[int, int]:
    """The encoder's change key (:meth:`~zoo.store.vectors.VectorRepository.change_key`), re-read at most every :data:`TOKEN_TTL_S` seconds: vectors written by other
    processes become searchable within that time; this process's own writes count at once."""
    key = (registry.url, encoder_id)
    now = time.monotonic()
    hit = _changes.get(key)
    if hit is not None and now - hit[0] < TOKEN_TTL_S:
        return hit[1]
    change = registry.repos.vectors.change_key(encoder_id)
    with _cache_lock:
        _changes[key] = (now, change)
    return change


def _load_table(registry: RegistryLike, subject: str, encoder_id: str, version: str) -> _Table:
    """Every current vector of ``subject`` by the encoder, cached per process until the rows change."""
    cache_key = (registry.url, subject, encoder_id, version)
    change = _cached_change(registry, encoder_id)
    table = _tables.get(cache_key)
    if table is not None and table.token == change:
        return table
    read: VectorTable = registry.repos.vectors.table(subject, encoder_id, version)
    change = read.change
    table = _Table(change, read.ids, read.names, {n: i for i, n in enumerate(read.names)},
                   ExactIndex(read.ids, read.vectors))
    with _cache_lock:
        _tables[cache_key] = table
        _changes[(registry.url, encoder_id)] = (time.monotonic(), change)
    return table


def _setting_key(subject: str, encoder_id: str) -> str:
    return f"index:{subject}:{encoder_id}"


def build_index(registry: RegistryLike, encoder: str | DatasetEncoder | None = None, *, force: bool = False,
                dtype: str = "f16") -> IndexInfo:
    """Bring the persisted HNSW index of the encoder's dataset vectors up to date, and describe it.

    The index file lives in :func:`index_dir`; its state (file, encoder version, row count, newest row) is
    kept in the registry's ``settings`` table under ``index:dataset:<encoder id>``. An index that only
    lacks newly added vectors is extended; one whose vectors changed (re-embedded, removed, a new encoder
    version) is rebuilt; ``force`` always rebuilds. Files are written under a new name and swapped in.
    """
    enc = get_dataset_encoder(encoder)
    version = enc.version
    key = _setting_key(DATASET, enc.id)
    directory = index_dir(registry)

    def file_of(state: dict[str, Any]) -> Path:
        return directory / state["file"]

    def current(token: tuple[int, int, str], state: dict[str, Any]) -> bool:
        return (not force and state["version"] == version and tuple(state["token"]) == token
                and file_of(state).is_file())

    def extendable(token: tuple[int, int, str], state: dict[str, Any]) -> bool:
        return (not current(token, state) and not force and state["version"] == version
                and state["dtype"] == dtype and file_of(state).is_file())

    found = registry.repos.vectors.index_state(key, DATASET, enc.id, version, extendable)
    token, state, appended = found.token, found.state, found.appended
    old_path = file_of(state) if state else None
    if state and current(token, state):
        return IndexInfo(enc.id, version, str(old_path), token[0], state["dim"], state["dtype"], False)
    if appended is not None and old_path is not None:
        index = USearchIndex.open(old_path, view=False)
        if appended:
            index.add(np.array([a[0] for a in appended]), np.stack([a[1] for a in appended]))
        how = f"extended by {len(appended)}"
    else:
        table = _load_table(registry, DATASET, enc.id, version)
        index = USearchIndex.build(table.ids, table.index.vectors, dtype=dtype)
        how = f"built over {len(table.ids)}"
    path = directory / f"{DATASET}-{enc.id}-{uuid.uuid4().hex[:12]}.usearch"
    index.save(path)
    new_state = {"file": path.name, "version": version, "token": list(token), "dim": index.dim, "dtype": dtype}

    registry.repos.vectors.save_setting(key, new_state)
    if old_path is not None and old_path != path:
        old_path.unlink(missing_ok=True)  # an open memory map keeps working on POSIX
    with _cache_lock:
        _ann_cache[str(path)] = index
    log.info("nearest-neighbour index for %s@%s %s vectors: %s", enc.id, version, how, path)
    return IndexInfo(enc.id, version, str(path), len(index), index.dim, dtype, True)


def _ann(registry: RegistryLike, enc: DatasetEncoder, version: str) -> USearchIndex:
    key = (registry.url, enc.id, version)
    change = _cached_change(registry, enc.id)
    hit = _ann_current.get(key)
    if hit is not None and hit[0] == change:
        return hit[1]
    info = build_index(registry, enc)
    with _cache_lock:
        index = _ann_cache.get(info.path)
    if index is None:
        index = USearchIndex.open(info.path, view=True)
        with _cache_lock:
            _ann_cache[info.path] = index
    with _cache_lock:
        _ann_current[key] = (change, index)
    return index


def _pgvector_search(registry: RegistryLike, enc: DatasetEncoder, query: np.ndarray, k: int) -> SearchHits | None:
    """The ``k`` dataset vectors of ``enc`` nearest to ``query``, found by PostgreSQL with pgvector; None where
    pgvector is not usable (not PostgreSQL, extension missing, ``ZOO_PGVECTOR=0``). See :mod:`zoo.store.pgvector`.

    Vectors without an in-database copy yet are copied first (only when this process sees the encoder's
    vectors changed). From :data:`~zoo.index.ANN_MIN_VECTORS` vectors on, an HNSW index answers.
    """
    if not pgvector.usable(registry.db):
        return None
    version = enc.version
    change = _cached_change(registry, enc.id)
    pgvector.sync(registry.db, DATASET, enc.id, version, token=change)
    if change[0] >= ANN_MIN_VECTORS and (registry.url, query.shape[0]) not in _hnsw_checked:
        pgvector.ensure_hnsw(registry.db, int(query.shape[0]))
        _hnsw_checked.add((registry.url, int(query.shape[0])))
    ids, sims = pgvector.search(registry.db, DATASET, enc.id, version, query, k)
    return SearchHits(ids, sims, "pgvector")


_hnsw_checked: set[tuple[str, int]] = set()  # (url, dim) whose HNSW index this process made sure of


# ----------------------------------------------------------------------------------------------------
# nearest neighbours
# ----------------------------------------------------------------------------------------------------
TIE_METRICS = ("accuracy", "acc", "top1", "acc@1", "top-1", "top1_acc", "val_accuracy", "val_acc", "test_accuracy",
               "test_acc", "labelled_accuracy", "loss", "val_loss", "test_loss")
"""Recorded metrics that order equally similar checkpoints, in order of preference (see :func:`order_by_metric`)."""
TIE_TOLERANCE = 1e-6  # similarities this close count as equal (float32 rounding of the same cosine)
_LOWER_IS_BETTER = frozenset({"loss", "error", "err", "nll", "mse", "mae", "rmse", "perplexity", "ppl"})


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better: one of its words is loss-like (``loss``, ``error``,
    ``err``, ``nll``, ``mse``, ``mae``, ``rmse``, ``perplexity``, ``ppl``). Words are split at anything but
    letters and at camelCase humps, so ``val_loss``, ``val loss``, ``top-1 error (%)``, ``loss@1`` and
    ``valLoss`` all are. Every other metric (accuracy, acc, top1, f1, ...) is higher-is-better."""
    words = re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", metric).lower())
    return any(w in _LOWER_IS_BETTER for w in words)


def tie_metric(metrics: Iterable[Mapping[str, float]], metric: str | None = None) -> str | None:
    """The metric that orders a group of checkpoints: ``metric`` when named, else the first name of
    :data:`TIE_METRICS` that at least one of them records (None: no such metric, the newest goes first)."""
    if metric:
        return metric
    recorded = set().union(*(rec.keys() for rec in metrics))
    return next((name for name in TIE_METRICS if name in recorded), None)


def order_by_metric(items: Iterable[tuple[int, Mapping[str, float]]], metric: str | None = None) -> list[int]:
    """Checkpoint ids of ``(id, recorded metrics)`` pairs, best first by :func:`tie_metric` (higher first;
    lower first for a loss-like name, :func:`lower_is_better`), those that do not record it after the
    others, and the newest (highest id) first among equals. Deterministic: never the order given."""
    items = list(items)
    name = tie_metric((rec for _, rec in items), metric)
    sign = 1.0 if name is not None and lower_is_better(name) else -1.0

    def key(item: tuple[int, Mapping[str, float]]) -> tuple[int, float, int]:
        value = item[1].get(name) if name is not None else None
        if value is None or value != value:  # not recorded (or NaN): after those that record it
            return (1, 0.0, -item[0])
        return (0, sign * float(value), -item[0])

    return [i for i, _ in sorted(items, key=key)]


def break_ties(ranked: Sequence[tuple[float, int]], metrics: Mapping[int, Mapping[str, float]],
               metric: str | None = None, tolerance: float = TIE_TOLERANCE) -> list[tuple[float, int]]:
    """``(score, checkpoint id)`` pairs sorted best score first, with every run of equal scores (within
    ``tolerance`` of the run's first) reordered by :func:`order_by_metric` of the ``metrics`` recorded per id."""
    out: list[tuple[float, int]] = []
    i = 0
    while i < len(ranked):
        j = i + 1
        while j < len(ranked) and ranked[i][0] - ranked[j][0] <= tolerance:
            j += 1
        run = ranked[i:j]
        if len(run) > 1:
            score = {cid: sc for sc, cid in run}
            order = order_by_metric(((cid, metrics.get(cid, {})) for _, cid in run), metric)
            run = [(score[cid], cid) for cid in order]
        out += run
        i = j
    return out


def _query_vector(registry: RegistryLike, dataset: DataLike | np.ndarray, enc: DatasetEncoder, version: str) -> tuple[np.ndarray, str | None]:
    """(query vector, name of the registered dataset it came from, if any)."""
    if isinstance(dataset, np.ndarray) and dataset.ndim == 1:
        if dataset.shape[0] != enc.dim:
            raise ZooError(f"query vector has {dataset.shape[0]} values but encoder {enc.id!r} makes {enc.dim}")
        return _check_vector(dataset, enc, "the query"), None
    if isinstance(dataset, str):
        row, emb = registry.repos.vectors.dataset_vector(dataset, enc.id)
        if row is not None:
            if emb is None:
                raise NotFoundError(f"vector of dataset {dataset!r} by encoder", enc.id,
                                    f"register_dataset(registry, {dataset!r}, data, encoders=[{enc.id!r}]) first")
            if not _current((emb.encoder_version, emb.source_fingerprint), version, row.fingerprint):
                raise ZooError(f"the {enc.id} vector of dataset {dataset!r} is stale (made by version "
                               f"{emb.encoder_version}, installed {version}); run refresh_stale(registry)")
            return emb.vector, dataset
    ds: ImageDataset = as_dataset(dataset)
    return _check_vector(enc.embed(ds), enc, "the query dataset"), None


_compat_cache: dict[tuple[Any, ...], tuple[tuple[Any, ...], Compatible]] = {}


def _all_compatible(registry: RegistryLike, spec: ArchSpec | None, match: Match, latest_only: bool) -> Compatible:
    """Every checkpoint that fits ``spec`` under ``match`` with a dataset, as ``(id, dataset name, arch key)``;
    cached until checkpoints or datasets are added or removed."""
    key = (registry.url, spec.key if spec is not None else None, match, latest_only)
    hit = _compat_cache.get(key)
    token, rows = registry.repos.vectors.compatible_if_changed(spec, match, latest_only,
                                                               hit[0] if hit is not None else None)
    if rows is None:
        assert hit is not None, "the repository answers None only for a known token"
        return hit[1]
    with _cache_lock:
        _compat_cache[key] = (token, rows)
    return rows


def nearest(
    registry: RegistryLike,
    arch: str | ArchSpec | None,
    dataset: DataLike | np.ndarray,
    k: int = 5,
    *,
    encoder: str | DatasetEncoder | None = None,
    match: Match = "exact",
    arch_weight: float = 0.0,
    text_encoder: str | TextEncoder | None = None,
    min_similarity: float | None = None,
    latest_only: bool = False,
    method: Method = "auto",
    metric: str | None = None,
) -> list[Neighbor]:
    """The ``k`` checkpoints whose training dataset is most similar to ``dataset``, among those that fit ``arch``.

    ``dataset`` is a registered dataset name (its stored vector is used), anything
    :func:`zoo.datasets.as_dataset` reads (embedded on the fly, not stored), or a vector of the encoder.
    ``match``: ``"exact"`` keeps checkpoints of exactly ``arch`` (loadable as is); ``"family"`` any
    architecture of its family; ``"any"`` every checkpoint (also what ``arch=None`` means). With
    ``arch_weight`` w > 0 the score is ``(1 - w) * dataset similarity + w * architecture similarity`` (text
    vectors of the architectures' descriptions). Checkpoints without a registered dataset vector by
    ``encoder`` are not ranked. ``method``: ``"auto"`` searches inside PostgreSQL with pgvector where
    that is installed, else exactly below :data:`~zoo.index.ANN_MIN_VECTORS` dataset vectors and with the
    persisted HNSW index above; ``"exact"``/``"ann"``/``"pgvector"`` force one. Every method rescores its
    hits with the stored float32 vectors, so pgvector's answers equal the exact search's (below the HNSW
    size). Ties (scores within :data:`TIE_TOLERANCE`, e.g. several seeds trained on one dataset) rank by
    their recorded metrics: ``metric`` when named, else the first of :data:`TIE_METRICS` one of them records,
    the best first (higher; lower for a loss-like name), those without it after; then the newest checkpoint
    first (:func:`order_by_metric`). Never by the order in which they were registered.
    """
    if k < 1:
        raise ZooError(f"k must be at least 1 (got {k})")
    if not 0.0 <= arch_weight <= 1.0:
        raise ZooError(f"arch_weight must lie in [0, 1] (got {arch_weight})")
    if match not in ("exact", "family", "any"):
        raise ZooError(f"unknown match {match!r}; choose 'exact', 'family' or 'any'")
    spec = resolve_arch(arch) if arch is not None else None
    match = "any" if spec is None else match
    enc = get_dataset_encoder(encoder)
    version = enc.version
    query, _ = _query_vector(registry, dataset, enc, version)
    use_arch = arch_weight > 0 and spec is not None and match != "exact"

    if method not in ("auto", "exact", "ann", "pgvector"):
        raise ZooError(f"unknown method {method!r}; choose 'auto', 'exact', 'ann' or 'pgvector'")
    n_vectors = _cached_change(registry, enc.id)[0]  # every vector by the encoder: cheap, close enough here
    chosen: str = method
    if method == "auto":
        chosen = "pgvector" if pgvector.usable(registry.db) else ("ann" if n_vectors >= ANN_MIN_VECTORS else "exact")
    elif method == "pgvector" and not pgvector.usable(registry.db):
        raise ConfigError(f"method='pgvector' needs a PostgreSQL registry with the pgvector extension (this one: "
                          f"{registry.db.dialect}{', ZOO_PGVECTOR is off' if pgvector.switched_off() else ''}); "
                          "install pgvector and run CREATE EXTENSION vector as a superuser, or use method='auto'")
    ds_sims: dict[str, float] = {}
    used = "exact"
    candidates: list[tuple[int, str, str]] = []
    if chosen in ("ann", "pgvector") and n_vectors:
        if chosen == "pgvector":
            def search(q: np.ndarray, n: int) -> SearchHits:
                hits = _pgvector_search(registry, enc, q, n)
                assert hits is not None, "pgvector became unusable during a search"
                return hits
        else:
            search = _ann(registry, enc, version).search
        fetch = max(4 * k, 64)
        while True:
            hits = search(query, min(fetch, n_vectors))
            found = hits.keys[hits.keys >= 0]
            # rescore the hits exactly with their stored float32 vectors
            vectors, candidates = registry.repos.vectors.rescore(found, version, spec, match, latest_only)
            ds_sims = {name: float(vec @ query) for name, vec in vectors.items()}
            if len(candidates) >= (4 * k if use_arch else k) or fetch >= n_vectors:
                break
            if fetch >= 4096:  # compatible checkpoints are rare among the nearest datasets: go exact
                chosen, candidates = "exact", []
                break
            fetch *= 8
        used = {"ann": "usearch", "pgvector": "pgvector"}.get(chosen, "exact")
    if chosen == "exact":
        table = _load_table(registry, DATASET, enc.id, version)
        candidates = _all_compatible(registry, spec, match, latest_only)
        if not use_arch:  # the common case, vectorised: one score per checkpoint, top k by (score, newest)
            return _exact_top(registry, table, candidates, query, k, min_similarity, enc.id, version, metric)
        wanted = sorted({c[1] for c in candidates if c[1] in table.row_of})
        if wanted and table.index.dim != query.shape[0]:
            raise ZooError(f"stored {enc.id} vectors have {table.index.dim} values, the query {query.shape[0]}")
        rows = np.array([table.row_of[n] for n in wanted], dtype=np.int64)
        sims = table.index.vectors[rows] @ query if len(rows) else np.zeros(0, dtype=np.float32)
        ds_sims = dict(zip(wanted, (float(x) for x in sims)))
        used = "exact"
    candidates = [c for c in candidates if c[1] in ds_sims]
    if not candidates:
        return []

    arch_sims: dict[str, float] = {}
    if use_arch:
        tenc = get_text_encoder(text_encoder)
        keys = sorted({c[2] for c in candidates})
        texts = registry.repos.vectors.arch_texts(keys)
        texts[spec.key] = get_family(spec.family).describe(spec)  # type: ignore[union-attr]
        vecs = _arch_vectors(registry, texts, tenc)
        qa = vecs[spec.key]  # type: ignore[union-attr]
        arch_sims = {key: float(v @ qa) for key, v in vecs.items()}

    scored = []
    for cid, ds_name, arch_key in candidates:
        d = ds_sims[ds_name]
        a = arch_sims.get(arch_key) if use_arch else None
        score = (1 - arch_weight) * d + arch_weight * a if a is not None else d
        if min_similarity is None or score >= min_similarity:
            scored.append((score, cid, ds_name, d, a))
    scored.sort(key=lambda t: (-t[0], -t[1]))
    by_id = {t[1]: t for t in scored}
    top = [by_id[cid] for _, cid in _top_with_ties(registry, [(t[0], t[1]) for t in scored], k, metric)]
    records = _checkpoint_records(registry, [t[1] for t in top])
    return [Neighbor(records[cid], float(score), ds_name, float(d), a, enc.id, version, used)
            for score, cid, ds_name, d, a in top]


def _top_with_ties(registry: RegistryLike, ranked: Sequence[tuple[float, int]], k: int, metric: str | None
                   ) -> list[tuple[float, int]]:
    """The first ``k`` of ``(score, id)`` pairs sorted best first, ties broken by :func:`break_ties` (the
    recorded metrics of tied checkpoints are read, also of those tied with the k-th beyond it)."""
    if not ranked:
        return []
    last = ranked[min(k, len(ranked)) - 1][0]
    head = [r for r in ranked if r[0] >= last - TIE_TOLERANCE]  # the k best and every one tied with the k-th
    if all(head[i][0] - head[i + 1][0] > TIE_TOLERANCE for i in range(len(head) - 1)):
        return head[:k]  # no ties: nothing to read
    return break_ties(head, _recorded_metrics(registry, [cid for _, cid in head]), metric)[:k]


def _recorded_metrics(registry: RegistryLike, ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """Checkpoint id -> its recorded metrics, in one read per 500 ids."""
    return registry.repos.vectors.recorded_metrics(ids)


_cand_rows: dict[tuple[int, int], tuple[Compatible, _Table, tuple[np.ndarray, np.ndarray]]] = {}  # see _exact_top


def _exact_top(registry: RegistryLike, table: _Table, candidates: Compatible, query: np.ndarray, k: int,
               min_similarity: float | None, encoder_id: str, version: str, metric: str | None = None
               ) -> list[Neighbor]:
    key = (id(candidates), id(table))  # the entry holds both objects, so their ids cannot be reused meanwhile
    hit = _cand_rows.get(key)
    arrays = hit[2] if hit is not None and hit[0] is candidates and hit[1] is table else None
    if arrays is None:
        keep = [(c[0], table.row_of[c[1]]) for c in candidates if c[1] in table.row_of]
        arrays = (np.array([c[0] for c in keep], dtype=np.int64), np.array([c[1] for c in keep], dtype=np.int64))
        with _cache_lock:
            if len(_cand_rows) > 64:
                _cand_rows.clear()
            _cand_rows[key] = (candidates, table, arrays)
    ids, rows = arrays
    if not len(ids):
        return []
    if table.index.dim != query.shape[0]:
        raise ZooError(f"stored {encoder_id} vectors have {table.index.dim} values, the query {query.shape[0]}")
    scores = (table.index.vectors @ query)[rows]  # (n_candidates,)
    if min_similarity is not None:
        ok = scores >= min_similarity
        ids, rows, scores = ids[ok], rows[ok], scores[ok]
    if len(ids) > 4 * k:  # only the best few need a full ordering
        part = np.argpartition(-scores, k - 1)[:k]
        cut = scores[part].min()
        sel = np.nonzero(scores >= cut - TIE_TOLERANCE)[0]  # keeps every checkpoint tied with the k-th
        ids, rows, scores = ids[sel], rows[sel], scores[sel]
    order = np.lexsort((-ids, -scores))
    at = {int(ids[i]): int(i) for i in order}
    top = _top_with_ties(registry, [(float(scores[i]), int(ids[i])) for i in order], k, metric)
    order = [at[cid] for _, cid in top]
    records = _checkpoint_records(registry, [int(ids[i]) for i in order])
    return [Neighbor(records[int(ids[i])], float(scores[i]), table.names[int(rows[i])], float(scores[i]), None,
                     encoder_id, version, "exact") for i in order]


def _checkpoint_records(registry: RegistryLike, ids: list[int]) -> dict[int, CheckpointRecord]:
    """Records of checkpoint ``ids`` in one read."""
    return {r.id: r for r in registry.get_many(ids)}


# ----------------------------------------------------------------------------------------------------
# refreshing
# ----------------------------------------------------------------------------------------------------
def refresh_stale(registry: RegistryLike, *, encoders: Iterable[str | DatasetEncoder] | None = None,
                  text_encoder: str | TextEncoder | None = None, sources: Mapping[str, DataLike] | None = None,
                  check_sources: bool = True, archs: bool = True, index: bool = True) -> RefreshReport:
    """Recompute every stale or missing vector, and bring persisted indexes up to date. Idempotent.

    A dataset vector is stale when its encoder version differs from the installed encoder's, or its
    source fingerprint differs from the dataset's. Data come from ``sources[name]`` (anything
    :func:`~zoo.datasets.as_dataset` reads) or from the source recorded at registration (built-in
    datasets, MNIST files, image folders); with ``check_sources`` those recorded sources are read again and
    a changed fingerprint updates the dataset and its vectors. Datasets known by name only, or registered
    from memory, are reported in ``datasets_need_data``. ``archs`` refreshes the text vectors of every
    registered architecture; ``index`` rebuilds each encoder's HNSW index once it holds at least
    :data:`~zoo.index.ANN_MIN_VECTORS` vectors.
    """
    encs, skipped = _resolve_encoders(encoders)
    sources = dict(sources or {})
    rows, stored = registry.repos.vectors.dataset_states()
    versions = {enc.id: enc.version for enc in encs}
    embedded: list[str] = []
    changed: list[str] = []
    need_data: list[str] = []
    current = 0
    for name, fp, meta in rows:
        data = sources.get(name)
        recorded = meta.get("source")
        ds: ImageDataset | None = None
        if data is None and recorded and check_sources and not meta.get("placeholder"):
            try:
                ds = load_source(recorded)
            except DatasetError as exc:
                log.warning("dataset %s: cannot read its source again (%s)", name, exc)
        elif data is not None:
            ds = as_dataset(data)
        if ds is not None and ds.fingerprint != fp:
            changed.append(name)
        target_fp = ds.fingerprint if ds is not None else fp
        stale = [enc for enc in encs if stored.get((name, enc.id)) != (versions[enc.id], target_fp) or not fp]
        current += len(encs) - len(stale)
        if not stale:
            continue
        if ds is None and recorded and not check_sources:
            try:
                ds = load_source(recorded)
            except DatasetError as exc:
                log.warning("dataset %s: cannot read its source again (%s)", name, exc)
        if ds is None:
            need_data.append(name)
            continue
        register_dataset(registry, name, ds, encoders=stale, replace=True)
        embedded += [f"{name}/{enc.id}" for enc in stale]

    archs_embedded = archs_current = 0
    if archs:
        texts = registry.repos.vectors.arch_texts()
        if texts:
            tenc = get_text_encoder(text_encoder)
            version = tenc.version
            have = registry.repos.vectors.arch_states(tenc.id)
            archs_current = sum(1 for k2, t in texts.items() if have.get(k2) == (version, _text_fingerprint(t)))
            archs_embedded = len(texts) - archs_current
            _arch_vectors(registry, texts, tenc)

    infos: list[IndexInfo] = []
    if index:
        in_db = pgvector.usable(registry.db)
        for enc in encs:
            n = registry.repos.vectors.token(DATASET, enc.id, versions[enc.id])[0]
            if in_db:  # PostgreSQL searches itself: bring its copies (and HNSW index) up to date instead
                pgvector.sync(registry.db, DATASET, enc.id, versions[enc.id])
                if n >= ANN_MIN_VECTORS:
                    pgvector.ensure_hnsw(registry.db, enc.dim)
            elif n >= ANN_MIN_VECTORS:
                infos.append(build_index(registry, enc))
    report = RefreshReport(tuple(embedded), current, tuple(changed), tuple(need_data), archs_embedded, archs_current,
                           tuple(infos), tuple(skipped))
    log.info("refresh: %d dataset vectors embedded, %d current, %d need data, %d arch vectors embedded",
             len(embedded), current, len(need_data), archs_embedded)
    return report


__all__ = [
    "ARCH", "DATASET", "TIE_METRICS", "TIE_TOLERANCE", "IndexInfo", "Neighbor", "RefreshReport", "break_ties",
    "build_index", "embed_arch", "embeddings", "get_embedding", "index_dir", "lower_is_better", "nearest",
    "order_by_metric", "refresh_stale", "register_dataset", "tie_metric",
]
