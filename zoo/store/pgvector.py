"""pgvector on PostgreSQL: nearest-neighbour search over the registry's vectors inside the database.

The ``embeddings`` table keeps every vector as float32 bytes on every backend; that stays the truth. On
PostgreSQL with the ``vector`` extension, ``embedding_vectors`` holds a ``vector`` copy of each row
(``embedding_id`` references ``embeddings.id`` with ``ON DELETE CASCADE``; zoo replaces a vector by a new
row, never updates one, so a copy is never stale, only missing). Copies are made lazily: :func:`sync`
before a search adds those that are missing, whoever wrote the vectors. A search (:func:`search`) is an
exact scan (``ORDER BY v <#> q``); once an encoder has :data:`zoo.index.ANN_MIN_VECTORS` vectors,
:func:`ensure_hnsw` adds an HNSW index (approximate, like the usearch index elsewhere).

Migration 0003 installs the extension where the server has it and the database user may
(``CREATE EXTENSION vector``: a superuser, or ask the database owner), and creates the table; a database
whose extension is installed later gets the table on first use. ``ZOO_PGVECTOR=0`` turns pgvector off.
The table is derived data, like an index file: it is not an ORM model.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from zoo.index import HNSW_EXPANSION_SEARCH
from zoo.store.db import advisory_lock

log = logging.getLogger(__name__)

TABLE = "embedding_vectors"
ENV_SWITCH = "ZOO_PGVECTOR"  # "0", "off", "false", "no": never use pgvector
HNSW_MAX_DIM = 2000  # pgvector's limit for an HNSW index over `vector`
SYNC_BATCH = 1000
ANALYZE_AFTER = 500  # copies added at once that refresh the table's planner statistics

_state: dict[str, bool] = {}  # url -> pgvector usable (extension and table present)
_synced: dict[tuple[str, str, str, str], Any] = {}  # (url, encoder, version, subject) -> change token synced
_lock = threading.Lock()

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    embedding_id integer PRIMARY KEY REFERENCES embeddings (id) ON DELETE CASCADE,
    subject varchar(16) NOT NULL,
    encoder_id varchar(128) NOT NULL,
    encoder_version varchar(64) NOT NULL,
    dim integer NOT NULL,
    v vector NOT NULL
)"""
_CREATE_INDEX = (
    f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_encoder ON {TABLE} (encoder_id, encoder_version, subject)"
)


def switched_off() -> bool:
    """Whether ``$ZOO_PGVECTOR`` turns pgvector off."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "false", "no")


def extension_state(conn: Connection) -> str:
    """``"installed"`` in this database, ``"available"`` on the server (not installed here), or
    ``"missing"``."""
    if conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")).scalar():
        return "installed"
    if conn.execute(text("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")).scalar():
        return "available"
    return "missing"


def install(conn: Connection) -> bool:
    """Install the extension (when the server has it and the user may) and the vector table; True if usable.

    Runs inside the caller's transaction (a migration); a refused ``CREATE EXTENSION`` is rolled back to a
    savepoint and logged, and the registry works on without pgvector.
    """
    if conn.dialect.name != "postgresql" or switched_off():
        return False
    advisory_lock(conn, "zoo:pgvector")  # concurrent installers queue
    state = extension_state(conn)
    if state == "missing":
        log.info(
            "pgvector is not installed on this PostgreSQL server: nearest-neighbour search runs in Python "
            "(install the server's pgvector package, e.g. postgresql-16-pgvector, to search in the database)"
        )
        return False
    if state == "available":
        try:
            with conn.begin_nested():
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        except DBAPIError as exc:
            log.info(
                "pgvector: cannot create the extension here (%s); a superuser can run "
                "CREATE EXTENSION vector",
                str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
            )
            return False
    conn.execute(text(_CREATE_TABLE))
    conn.execute(text(_CREATE_INDEX))
    return True


def usable(db: Any) -> bool:
    """Whether ``db`` (a :class:`~zoo.store.db.Database`) searches with pgvector: PostgreSQL, not switched
    off, the extension installed. The vector table is created here if the extension arrived after
    migrating."""
    if db.dialect != "postgresql" or switched_off():
        return False
    hit = _state.get(db.url)
    if hit is not None:
        return hit
    with db.read_engine.connect() as conn:
        state = extension_state(conn)
        has_table = conn.execute(text(f"SELECT to_regclass('{TABLE}') IS NOT NULL")).scalar()
    ok = state == "installed"
    if ok and not has_table:
        with db.write_engine.begin() as conn:
            ok = install(conn)
    with _lock:
        _state[db.url] = ok
    log.debug("pgvector on %s: %s", db.url, "used" if ok else f"not used (extension {state})")
    return ok


def forget(url: str) -> None:
    """Drop what this process remembers about ``url`` (after dropping or recreating that database)."""
    with _lock:
        _state.pop(url, None)
        for key in [k for k in _synced if k[0] == url]:
            del _synced[key]


def _literal(vec: np.ndarray) -> str:
    """pgvector's text form; 9 significant digits give back the same float32 exactly."""
    return "[" + ",".join(format(float(x), ".9g") for x in np.asarray(vec, dtype=np.float32)) + "]"


def sync(db: Any, subject: str, encoder_id: str, version: str, token: Any = None) -> int:
    """Copy the vectors of (``subject``, encoder, version) that have no copy yet; returns how many.

    ``token`` is the caller's change token of those vectors: when it equals the one of the last sync in
    this process, nothing is read.
    """
    key = (db.url, subject, encoder_id, version)
    if token is not None and _synced.get(key) == token:
        return 0
    try:
        added = _copy_missing(db, subject, encoder_id, version)
    except IntegrityError:  # a vector was replaced between reading and copying it: read again
        added = _copy_missing(db, subject, encoder_id, version)
    if added >= ANALYZE_AFTER:  # fresh statistics, or the planner keeps scanning as if the table were empty
        with db.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"ANALYZE {TABLE}"))
    if added:
        log.info("pgvector: copied %d %s vectors of %s@%s", added, subject, encoder_id, version)
    if token is not None:
        with _lock:
            _synced[key] = token
    return added


def _copy_missing(db: Any, subject: str, encoder_id: str, version: str) -> int:
    added = 0
    with db.write_engine.begin() as conn:
        rows = conn.execute(
            text(
                f"SELECT e.id, e.vector FROM embeddings e WHERE e.subject = :s AND e.encoder_id = :e AND "
                f"e.encoder_version = :v AND NOT EXISTS (SELECT 1 FROM {TABLE} z WHERE z.embedding_id = e.id)"
            ),
            {"s": subject, "e": encoder_id, "v": version},
        ).all()
        for start in range(0, len(rows), SYNC_BATCH):
            batch = rows[start : start + SYNC_BATCH]
            params = []
            for eid, data in batch:
                vec = np.frombuffer(bytes(data), dtype="<f4")
                params.append(
                    {
                        "id": int(eid),
                        "s": subject,
                        "e": encoder_id,
                        "ver": version,
                        "d": int(vec.shape[0]),
                        "v": _literal(vec),
                    }
                )
            conn.execute(
                text(
                    f"INSERT INTO {TABLE} (embedding_id, subject, encoder_id, encoder_version, dim, v) "
                    "VALUES (:id, :s, :e, :ver, :d, CAST(:v AS vector)) ON CONFLICT (embedding_id) DO NOTHING"
                ),
                params,
            )
            added += len(batch)
    return added


def search(
    db: Any, subject: str, encoder_id: str, version: str, query: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(embedding ids, similarities) of the ``k`` vectors with the largest inner product with ``query``,
    best first, computed by PostgreSQL (exact unless an HNSW index covers the vectors' length)."""
    dim = int(query.shape[0])
    with db.read_engine.connect() as conn:
        if _has_hnsw(conn, dim):  # the index's expression, so that the planner uses it
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {min(1000, max(int(k), HNSW_EXPANSION_SEARCH))}"))
            distance = f"(z.v::vector({dim})) <#> CAST(:q AS vector({dim}))"
        else:  # an exact scan, without a cast per row
            distance = "z.v <#> CAST(:q AS vector)"
        rows: Sequence[Any] = conn.execute(
            text(
                f"SELECT z.embedding_id, {distance} AS d FROM {TABLE} z WHERE z.dim = {dim} "
                "AND z.subject = :s AND "
                f"z.encoder_id = :e AND z.encoder_version = :ver ORDER BY {distance} LIMIT :k"
            ),
            {"q": _literal(query), "s": subject, "e": encoder_id, "ver": version, "k": int(k)},
        ).all()
        conn.rollback()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    sims = np.array([-float(r[1]) for r in rows], dtype=np.float32)  # <#> is the negative inner product
    return ids, sims


def _hnsw_name(dim: int) -> str:
    return f"ix_{TABLE}_hnsw_{dim}"


def _has_hnsw(conn: Connection, dim: int) -> bool:
    return bool(conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": _hnsw_name(dim)}).scalar())


def ensure_hnsw(db: Any, dim: int) -> bool:
    """Build the HNSW index over vectors of length ``dim`` if missing; True when one exists afterwards."""
    if dim > HNSW_MAX_DIM or dim < 1:
        return False
    with db.write_engine.begin() as conn:
        advisory_lock(conn, "zoo:pgvector")
        if _has_hnsw(conn, dim):
            return True
        conn.execute(
            text(
                f"CREATE INDEX {_hnsw_name(dim)} ON {TABLE} USING hnsw ((v::vector({dim})) vector_ip_ops) "
                f"WHERE dim = {dim}"
            )
        )
        conn.execute(text(f"ANALYZE {TABLE}"))
    log.info("pgvector: built an HNSW index over %d-value vectors", dim)
    return True


__all__ = [
    "ENV_SWITCH",
    "TABLE",
    "ensure_hnsw",
    "extension_state",
    "forget",
    "install",
    "search",
    "switched_off",
    "sync",
    "usable",
]
