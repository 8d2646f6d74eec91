"""Keeping vectors and indexes current: :func:`refresh_stale`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from zoo.datasets import ImageDataset, as_dataset, load_source
from zoo.encoders import (
    DatasetEncoder,
    TextEncoder,
    get_text_encoder,
)
from zoo.errors import DatasetError
from zoo.index import ANN_MIN_VECTORS
from zoo.retrieval.base import (
    DataLike,
    RegistryLike,
    resolve_encoders,
    text_fingerprint,
)
from zoo.retrieval.indexes import build_index
from zoo.retrieval.records import IndexInfo, RefreshReport
from zoo.retrieval.vectors import arch_vectors, register_dataset
from zoo.store import pgvector
from zoo.store.vectors import DATASET

log = logging.getLogger(__name__)


def refresh_stale(
    registry: RegistryLike,
    *,
    encoders: Iterable[str | DatasetEncoder] | None = None,
    text_encoder: str | TextEncoder | None = None,
    sources: Mapping[str, DataLike] | None = None,
    check_sources: bool = True,
    archs: bool = True,
    index: bool = True,
) -> RefreshReport:
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
    encs, skipped = resolve_encoders(encoders)
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
            archs_current = sum(
                1 for key, text in texts.items() if have.get(key) == (version, text_fingerprint(text))
            )
            archs_embedded = len(texts) - archs_current
            arch_vectors(registry, texts, tenc)

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
    report = RefreshReport(
        tuple(embedded),
        current,
        tuple(changed),
        tuple(need_data),
        archs_embedded,
        archs_current,
        tuple(infos),
        tuple(skipped),
    )
    log.info(
        "refresh: %d dataset vectors embedded, %d current, %d need data, %d arch vectors embedded",
        len(embedded),
        current,
        len(need_data),
        archs_embedded,
    )
    return report
