"""Nearest-neighbour retrieval: :func:`nearest` ranks checkpoints of a compatible architecture by how similar
their training dataset is to a query dataset (exactly, with the persisted HNSW index, or with pgvector)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoo.datasets import ImageDataset, as_dataset
from zoo.encoders import (
    DatasetEncoder,
    TextEncoder,
    get_dataset_encoder,
    get_text_encoder,
)
from zoo.errors import ConfigError, DatasetError, Hint, ZooError
from zoo.index import ANN_MIN_VECTORS, SearchHits
from zoo.plugins import get_family, resolve_arch
from zoo.records import ArchSpec, CheckpointRecord
from zoo.retrieval.base import (
    DataLike,
    Match,
    Method,
    RegistryLike,
    cached_change,
    check_vector,
    current,
)
from zoo.retrieval.cache import Table
from zoo.retrieval.indexes import ann, load_table, pgvector_search
from zoo.retrieval.ranking import TIE_TOLERANCE, break_ties, order_by_metric
from zoo.retrieval.records import Neighbor
from zoo.retrieval.vectors import arch_vectors
from zoo.store import pgvector
from zoo.store.vectors import DATASET, Compatible


def _query_vector(
    registry: RegistryLike, dataset: DataLike | np.ndarray, enc: DatasetEncoder, version: str
) -> tuple[np.ndarray | None, str | None]:
    """(query vector, name of the registered dataset it came from, if any). The vector is None when
    ``dataset`` names a registered dataset that has no vector by ``enc`` (known by name only, or its data
    not embedded with that encoder): only checkpoints registered with exactly that name match it then."""
    if isinstance(dataset, np.ndarray) and dataset.ndim == 1:
        if dataset.shape[0] != enc.dim:
            raise ZooError(
                f"query vector has {dataset.shape[0]} values but encoder {enc.id!r} makes {enc.dim}"
            )
        return check_vector(dataset, enc, "the query"), None
    if isinstance(dataset, str):
        row, emb = registry.repos.vectors.dataset_vector(dataset, enc.id)
        if row is not None:
            if emb is None:
                return None, dataset
            if not current((emb.encoder_version, emb.source_fingerprint), version, row.fingerprint):
                hint = Hint("zoo.retrieval.refresh_stale(registry)", "`zoo reindex --no-retrain`")
                raise ZooError(
                    f"the {enc.id} vector of dataset {dataset!r} is stale (made by version "
                    f"{emb.encoder_version}, installed {version}); recompute it: {hint}"
                ).hinting(hint)
            return emb.vector, dataset
        try:
            ds: ImageDataset = as_dataset(dataset)
        except DatasetError as exc:
            hint = Hint("registry.datasets()", "`zoo datasets list`")
            raise DatasetError(
                f"{dataset!r} is not a registered dataset (list them: {hint}); as data: {exc}"
            ).hinting(hint) from None
    else:
        ds = as_dataset(dataset)
    return check_vector(enc.embed(ds), enc, "the query dataset"), None


def by_name(
    registry: RegistryLike,
    spec: ArchSpec | None,
    dataset: str,
    k: int,
    *,
    match: Match = "exact",
    latest_only: bool = False,
    metric: str | None = None,
    encoder: DatasetEncoder | None = None,
) -> list[Neighbor]:
    """The checkpoints that fit ``spec`` under ``match`` and are registered with exactly dataset ``dataset``,
    best first (recorded metrics, then newest), as neighbours of similarity 1.0 (``method="name"``): what
    a registered name that has no vector yet matches."""
    repo = registry.repos.checkpoints
    if spec is None or match == "any":
        recs = repo.search(dataset=dataset, latest_only=latest_only)
    elif match == "family":
        recs = repo.search(family=spec.family, dataset=dataset, latest_only=latest_only)
    else:
        recs = repo.search(arch=spec, dataset=dataset, latest_only=latest_only)
    by_id = {r.id: r for r in recs}
    order = order_by_metric(((r.id, r.metrics) for r in recs), metric)[:k]
    enc_id, version = (encoder.id, encoder.version) if encoder is not None else ("", "")
    return [Neighbor(by_id[i], 1.0, dataset, 1.0, None, enc_id, version, "name") for i in order]


def why_none(
    registry: RegistryLike,
    spec: ArchSpec | None,
    dataset: DataLike | np.ndarray,
    *,
    encoder: str | DatasetEncoder | None = None,
    match: Match = "exact",
    min_similarity: float | None = None,
    label: str | None = None,
    suggest_add: bool = True,
) -> tuple[str, tuple[Hint, ...]]:
    """Why :func:`nearest` found no checkpoint, as it is (the reason, and the fixes it names as
    :class:`~zoo.errors.Hint`): none of the architecture is registered; none with a dataset; their datasets
    have no vector by the encoder (zoo does not hold their data); or none is similar enough. Without
    ``suggest_add`` the first two leave out "add one" (a caller that says it anyway)."""
    enc = get_dataset_encoder(encoder)
    what = label or (spec.name if spec is not None else "any architecture")
    if spec is not None and match == "family":
        what = f"the {spec.family} family"
    repo = registry.repos.checkpoints
    name = spec.name if spec is not None else "ARCH"
    query = dataset if isinstance(dataset, str) else "NAME"
    add = Hint(
        f"registry.add(FILE, arch={name!r}, dataset={query!r})",
        f"`zoo add FILE --arch {name} --dataset {query}`",
    )
    if spec is None or match == "any":
        some = repo.search(limit=1)
    elif match == "family":
        some = repo.search(family=spec.family, limit=1)
    else:
        some = repo.search(arch=spec, limit=1)
    if not some:
        if not suggest_add:
            return f"no checkpoint of {what} is registered", ()
        return f"no checkpoint of {what} is registered; add one: {add}", (add,)
    compatible = _all_compatible(registry, spec if match != "any" else None, match, False)
    if not compatible and not suggest_add:
        return f"checkpoints of {what} are registered, but none with a dataset", ()
    if not compatible:
        return (
            f"checkpoints of {what} are registered, but none with a dataset (nearest ranks checkpoints by "
            f"their dataset); add one with its dataset: {add}",
            (add,),
        )
    table = load_table(registry, DATASET, enc.id, enc.version)
    named = sorted({c[1] for c in compatible})
    missing = [d for d in named if d not in table.row_of]
    if len(missing) == len(named):
        first = missing[0]
        reg = Hint(f"registry.register_dataset({first!r}, data)", f"`zoo datasets register {first} SOURCE`")
        shown = ", ".join(repr(d) for d in missing[:5]) + (", ..." if len(missing) > 5 else "")
        return (
            f"{len(compatible)} checkpoint(s) of {what} are registered with a dataset ({shown}), but "
            f"none of those datasets has a {enc.id} vector to compare with (zoo does not hold their "
            f"data); register the data, which computes the vector: {reg}",
            (reg,),
        )
    if min_similarity is not None:
        return f"no checkpoint of {what} has a dataset at least {min_similarity:g} similar", ()
    return f"no checkpoint of {what} has a dataset with a {enc.id} vector near this one", ()


def _all_compatible(
    registry: RegistryLike, spec: ArchSpec | None, match: Match, latest_only: bool
) -> Compatible:
    """Every checkpoint that fits ``spec`` under ``match`` with a dataset, as ``(id, dataset name, arch
    key)``; cached until checkpoints or datasets are added or removed."""
    cache = registry.retrieval_cache
    key = (spec.key if spec is not None else None, match, latest_only)
    hit = cache.compatible.get(key)
    token, rows = registry.repos.vectors.compatible_if_changed(
        spec, match, latest_only, hit[0] if hit is not None else None
    )
    if rows is None:
        assert hit is not None, "the repository answers None only for a known token"
        return hit[1]
    with cache.lock:
        cache.compatible[key] = (token, rows)
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
    """The ``k`` checkpoints whose training dataset is most similar to ``dataset``, among those that fit
    ``arch``.

    ``dataset`` is a registered dataset name (its stored vector is used), anything
    :func:`zoo.datasets.as_dataset` reads (embedded on the fly, not stored), or a vector of the encoder. A
    registered name that has no vector by ``encoder`` yet (known by name only, as ``add(dataset=...)``
    leaves it, or not embedded with that encoder) matches the checkpoints registered with exactly that
    name, at similarity 1.0 (``Neighbor.method == "name"``; :func:`by_name`). An empty answer is
    explained by :func:`why_none`. Raises :class:`~zoo.errors.DatasetError` for a string that is neither a
    registered name nor readable data, :class:`~zoo.errors.ZooError` for a stale stored vector.
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
    query, named = _query_vector(registry, dataset, enc, version)
    if query is None:  # a registered name without a vector yet: the checkpoints registered with that name
        assert named is not None, "only a registered name comes without a vector"
        return by_name(
            registry, spec, named, k, match=match, latest_only=latest_only, metric=metric, encoder=enc
        )
    use_arch = arch_weight > 0 and spec is not None and match != "exact"

    if method not in ("auto", "exact", "ann", "pgvector"):
        raise ZooError(f"unknown method {method!r}; choose 'auto', 'exact', 'ann' or 'pgvector'")
    n_vectors = cached_change(registry, enc.id)[0]  # every vector by the encoder: cheap, close enough here
    chosen: str = method
    if method == "auto":
        in_memory = "ann" if n_vectors >= ANN_MIN_VECTORS else "exact"
        chosen = "pgvector" if pgvector.usable(registry.db) else in_memory
    elif method == "pgvector" and not pgvector.usable(registry.db):
        off = ", ZOO_PGVECTOR is off" if pgvector.switched_off() else ""
        raise ConfigError(
            "method='pgvector' needs a PostgreSQL registry with the pgvector extension (this "
            f"one: {registry.db.dialect}{off}); install pgvector and run CREATE EXTENSION "
            "vector as a superuser, or use method='auto'"
        )
    ds_sims: dict[str, float] = {}
    used = "exact"
    candidates: list[tuple[int, str, str]] = []
    if chosen in ("ann", "pgvector") and n_vectors:
        if chosen == "pgvector":

            def search(q: np.ndarray, n: int) -> SearchHits:
                hits = pgvector_search(registry, enc, q, n)
                assert hits is not None, "pgvector became unusable during a search"
                return hits
        else:
            search = ann(registry, enc, version).search
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
        table = load_table(registry, DATASET, enc.id, version)
        candidates = _all_compatible(registry, spec, match, latest_only)
        if not use_arch:  # the common case, vectorised: one score per checkpoint, top k by (score, newest)
            return _exact_top(registry, table, candidates, query, k, min_similarity, enc.id, version, metric)
        wanted = sorted({c[1] for c in candidates if c[1] in table.row_of})
        if wanted and table.index.dim != query.shape[0]:
            raise ZooError(
                f"stored {enc.id} vectors have {table.index.dim} values, the query {query.shape[0]}"
            )
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
        vecs = arch_vectors(registry, texts, tenc)
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
    return [
        Neighbor(records[cid], float(score), ds_name, float(d), a, enc.id, version, used)
        for score, cid, ds_name, d, a in top
    ]


def _top_with_ties(
    registry: RegistryLike, ranked: Sequence[tuple[float, int]], k: int, metric: str | None
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


def _exact_top(
    registry: RegistryLike,
    table: Table,
    candidates: Compatible,
    query: np.ndarray,
    k: int,
    min_similarity: float | None,
    encoder_id: str,
    version: str,
    metric: str | None = None,
) -> list[Neighbor]:
    key = (id(candidates), id(table))  # the entry holds both objects, so their ids cannot be reused meanwhile
    cache = registry.retrieval_cache
    hit = cache.candidate_rows.get(key)
    arrays = hit[2] if hit is not None and hit[0] is candidates and hit[1] is table else None
    if arrays is None:
        keep = [(c[0], table.row_of[c[1]]) for c in candidates if c[1] in table.row_of]
        arrays = (
            np.array([c[0] for c in keep], dtype=np.int64),
            np.array([c[1] for c in keep], dtype=np.int64),
        )
        with cache.lock:
            if len(cache.candidate_rows) > 64:
                cache.candidate_rows.clear()
            cache.candidate_rows[key] = (candidates, table, arrays)
    ids, rows = arrays
    if not len(ids):
        return []
    if table.index.dim != query.shape[0]:
        raise ZooError(
            f"stored {encoder_id} vectors have {table.index.dim} values, the query {query.shape[0]}"
        )
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
    return [
        Neighbor(
            records[int(ids[i])],
            float(scores[i]),
            table.names[int(rows[i])],
            float(scores[i]),
            None,
            encoder_id,
            version,
            "exact",
        )
        for i in order
    ]


def _checkpoint_records(registry: RegistryLike, ids: list[int]) -> dict[int, CheckpointRecord]:
    """Records of checkpoint ``ids`` in one read."""
    return {r.id: r for r in registry.get_many(ids)}
