"""Storing vectors: datasets (:func:`register_dataset`) and architectures (:func:`embed_arch`), and reading
them back."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from zoo.datasets import as_dataset
from zoo.encoders import (
    TextEncoder,
    get_text_encoder,
)
from zoo.errors import ConfigError, DuplicateError, Hint, NotFoundError
from zoo.plugins import get_family, resolve_arch
from zoo.records import ArchSpec, CheckpointRecord, DatasetRecord, EmbeddingRecord
from zoo.retrieval.base import (
    DataLike,
    EncoderChoice,
    RegistryLike,
    check_vector,
    current,
    invalidate,
    resolve_encoders,
    text_fingerprint,
)
from zoo.store.vectors import ARCH, DatasetData
from zoo.validation import check_name

log = logging.getLogger(__name__)


def register_dataset(
    registry: RegistryLike,
    name: str,
    data: DataLike,
    *,
    description: str | None = None,
    encoders: EncoderChoice = None,
    replace: bool = False,
) -> DatasetRecord:
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
    encs, skipped = resolve_encoders(encoders)
    for reason in skipped:
        log.info("dataset %s: not embedded with %s", name, reason)
    if not encs:
        pixels = Hint("pass encoders=['pixels']", "pass --encoder pixels")
        raise ConfigError(f"no dataset encoder can run here; install one or {pixels}").hinting(pixels)
    fp = ds.fingerprint
    row, existing = registry.repos.vectors.dataset_vectors(name)
    placeholder = row is None or bool(row.meta.get("placeholder")) or not row.fingerprint
    if row is not None and not placeholder and row.fingerprint != fp and not replace:
        replacing = Hint("pass replace=True", "pass --replace")
        raise DuplicateError(
            "dataset",
            name,
            f"it is registered with different data (fingerprint "
            f"{row.fingerprint[:12]}, these data {fp[:12]}); {replacing} to replace "
            "its data and vectors (checkpoints registered with it then mean the new data), or register the "
            "new data under another name",
        ).hinting(replacing)
    vectors: dict[str, tuple[str, np.ndarray]] = {}
    for enc in encs:
        version = enc.version
        if existing.get(enc.id) == (version, fp):
            continue
        vectors[enc.id] = (version, check_vector(enc.embed(ds), enc, f"dataset {name!r}"))
        log.info("embedded dataset %s with %s@%s", name, enc.id, version)

    source = dict(ds.source) if ds.source is not None else None
    if source is None and row is not None and row.fingerprint == fp:  # the same data, handed in from memory:
        source = row.meta.get("source")  # keep how zoo can read them again
    meta = {
        "source": source,
        "image_shape": list(ds.image_shape),
        "class_names": list(ds.class_names),
        "class_counts": [int(c) for c in ds.class_counts],
    }

    rec = registry.repos.vectors.save_dataset(
        name,
        DatasetData(fp, ds.num_classes, ds.num_samples, meta),
        description=description,
        replace=replace,
        vectors=vectors,
    )
    invalidate(registry)
    log.info(
        "registered dataset %s (%d images, %d classes, %d new vectors)",
        name,
        ds.num_samples,
        ds.num_classes,
        len(vectors),
    )
    return rec


def get_embedding(registry: RegistryLike, subject: str, key: str, encoder_id: str) -> EmbeddingRecord:
    """The stored vector of ``(subject, key)`` by ``encoder_id`` (check its version for staleness).

    Raises:
        NotFoundError: none is stored; for a dataset the message names the fix (register its data, which
            computes the vector), as a Python call and as its ``zoo`` command (:class:`~zoo.errors.Hint`).
    """
    rec = registry.repos.vectors.get(subject, key, encoder_id)
    if rec is None:
        if subject == "dataset":
            fix = Hint(f"registry.register_dataset({key!r}, data)", f"`zoo datasets register {key} SOURCE`")
            raise NotFoundError(
                f"dataset embedding by {encoder_id}",
                key,
                f"zoo computes it when the data is registered: {fix}",
            ).hinting(fix)
        fix = Hint("zoo.retrieval.refresh_stale(registry)", "`zoo reindex --no-retrain`")
        raise NotFoundError(f"{subject} embedding by {encoder_id}", key, f"compute it: {fix}").hinting(fix)
    return rec


def embeddings(
    registry: RegistryLike, *, subject: str | None = None, encoder_id: str | None = None
) -> list[EmbeddingRecord]:
    """Stored vectors, optionally of one subject (``"dataset"``/``"arch"``) and encoder."""
    return registry.repos.vectors.list(subject=subject, encoder_id=encoder_id)


# ----------------------------------------------------------------------------------------------------
# architectures
# ----------------------------------------------------------------------------------------------------
def arch_vectors(
    registry: RegistryLike, texts: Mapping[str, str], encoder: TextEncoder
) -> dict[str, np.ndarray]:
    """Vectors for ``{arch_key: text}``: stored ones when current, the rest computed and stored."""
    version = encoder.version
    keys = list(texts)
    fingerprints = {k: text_fingerprint(t) for k, t in texts.items()}
    out = {
        k: vec
        for k, (state, vec) in registry.repos.vectors.arch_vectors(keys, encoder.id).items()
        if current(state, version, fingerprints[k])
    }
    todo = [k for k in keys if k not in out]
    if todo:
        vecs = encoder.embed([texts[k] for k in todo])
        new = {k: check_vector(v, encoder, f"architecture {k}") for k, v in zip(todo, vecs)}
        registry.repos.vectors.save_arch_vectors(new, encoder.id, version, fingerprints)
        invalidate(registry)
        out.update(new)
        log.info("embedded %d architecture text(s) with %s", len(new), encoder.id)
    return out


def embed_arch(
    registry: RegistryLike,
    arch: str | ArchSpec | CheckpointRecord,
    *,
    encoder: str | TextEncoder | None = None,
) -> EmbeddingRecord:
    """Store (if not current) and return the text vector of an architecture's canonical description.

    The text is ``family.describe(spec)``, the same as ``CheckpointRecord.arch_text``.
    """
    spec = arch.arch if isinstance(arch, CheckpointRecord) else resolve_arch(arch)
    enc = get_text_encoder(encoder)
    arch_vectors(registry, {spec.key: get_family(spec.family).describe(spec)}, enc)
    return get_embedding(registry, ARCH, spec.key, enc.id)
