"""Database engines, sessions and migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys on. Read sessions
begin deferred; write sessions take the database write lock at BEGIN (``BEGIN IMMEDIATE``) so that
concurrent writers queue instead of failing with "database is locked". On PostgreSQL, write sessions
serialise per blob with transaction-scoped advisory locks.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from zoo.errors import ConfigError, RegistryMissingError
from zoo.store.models import VersionCounter

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///registry.db"
BUSY_TIMEOUT_MS = 60_000
MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other databases and in-memory SQLite."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """A registry database: a read engine and a write engine over one URL, with migrations applied."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        try:
            backend = make_url(url).get_backend_name()
        except Exception as exc:
            raise ConfigError(f"invalid registry URL {url!r}: {exc}") from None
        if backend == "sqlite":
            path = sqlite_path(url)
            if path is not None:
                _check_sqlite_file(path, create)
                path.parent.mkdir(parents=True, exist_ok=True)
            self.read_engine = _sqlite_engine(url, immediate=False)
            self.write_engine = _sqlite_engine(url, immediate=True)
        else:
            try:
                self.read_engine = self.write_engine = create_engine(with_driver(url), pool_pre_ping=True)
            except Exception as exc:  # missing driver, bad URL
                raise ConfigError(
                    f"cannot use registry URL {make_url(url)!r}: {exc}; for PostgreSQL install "
                    "zoo[postgres] (the psycopg driver)"
                ) from None
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)
        u = make_url(url)
        shown = (
            str(sqlite_path(url) or url) if backend == "sqlite" else u.render_as_string(hide_password=True)
        )
        try:
            self._check_is_registry(shown, create)
            self.migrate()
        except DatabaseError as exc:  # no server, no such database, refused login, not a database file
            reason = (str(getattr(exc, "orig", exc)).strip().splitlines() or ["unknown error"])[0][:300]
            if not create:
                raise RegistryMissingError(shown, f"cannot open it ({reason})") from None
            raise ConfigError(
                f"cannot open the registry at {shown}: {reason}; check the URL (--registry / "
                "ZOO_REGISTRY_URL), that the server runs and the database exists"
            ) from None

    def _check_is_registry(self, shown: str, create: bool) -> None:
        """Refuse a database that holds something other than a zoo registry (never write our tables into it),
        and, unless ``create``, one that holds nothing yet (a new file, an in-memory or empty database)."""
        with self.read_engine.connect() as conn:
            revision = current_revision(self.read_engine)
            if revision is not None:
                _check_zoo_revision(shown, revision)
                return
            tables = inspect(conn).get_table_names()
        if tables:
            raise ConfigError(
                f"{shown} is not a zoo registry: it holds other tables ({', '.join(tables[:5])}"
                f"{', ...' if len(tables) > 5 else ''}); point the registry at a zoo registry "
                "or at a new file or database"
            )
        if not create:
            raise RegistryMissingError(
                shown,
                "an in-memory database starts empty"
                if self.dialect == "sqlite"
                else "the database holds no zoo registry",
            )

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest migration (safe under concurrency). A server database is checked
        once per process and URL; a SQLite file on every open (one cheap query), since the file under a
        path can be deleted and made anew while the process runs."""
        with _migrate_lock:
            if self.url in _migrated:
                return
            retry(lambda: _upgrade(self.write_engine))
            if self.dialect != "sqlite":
                _migrated.add(self.url)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (rolled back and closed at the end)."""
        session = self._read()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write session: commits on success, rolls back on error, always closes."""
        session = self._write()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def lock_key(self, session: Session, key: str) -> None:
        """Serialise writers on ``key`` until the transaction ends (SQLite: already serialised)."""
        if self.dialect == "postgresql":
            advisory_lock(session, key)

    def upsert(
        self, table: Any, values: dict[str, Any], index_elements: list[Any], set_: dict[str, Any]
    ) -> Any:
        """An ``INSERT ... ON CONFLICT DO UPDATE`` statement in this database's dialect (SQLite,
        PostgreSQL)."""
        if self.dialect == "sqlite":
            ins = sqlite_insert(table).values(**values)
        else:  # the PostgreSQL dialect is imported by PostgreSQL registries only (`zoo list` starts faster)
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            ins = pg_insert(table).values(**values)
        return ins.on_conflict_do_update(index_elements=index_elements, set_=set_)

    def next_version(self, session: Session, kind: str, name: str) -> int:
        """The next version of ``name`` among ``kind`` ("checkpoint", "generator"): one past every version
        ever handed out, removed ones included (a counter row, bumped in one statement)."""
        table = VersionCounter.__table__
        ins = self.upsert(
            table,
            {"kind": kind, "name": name, "last_version": 1},
            [table.c.kind, table.c.name],
            {"last_version": table.c.last_version + 1},
        )
        return int(session.execute(ins.returning(table.c.last_version)).scalar_one())

    def dispose(self) -> None:
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()


def _check_sqlite_file(path: Path, create: bool) -> None:
    """Look at a SQLite file read-only before zoo's engine touches it (its WAL setting alone rewrites a file):
    refuse one that is not a zoo registry, and unless ``create`` one that does not exist or holds nothing."""
    import sqlite3

    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        if not create:
            raise RegistryMissingError(
                str(path), "no registry database file there" if not path.exists() else "the file is empty"
            )
        return
    if not path.is_file():
        raise ConfigError(
            f"{path} is not a file; point the registry at a SQLite file (e.g. {path / 'registry.db'})"
        )
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            revision = (
                (con.execute("SELECT version_num FROM alembic_version").fetchone() or [None])[0]
                if "alembic_version" in tables
                else None
            )
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"{path} is not a SQLite database ({exc}); point the registry at a zoo registry or at a new file"
        ) from None
    if "alembic_version" in tables:
        _check_zoo_revision(str(path), revision)
        return
    if tables:
        raise ConfigError(
            f"{path} is not a zoo registry: it holds other tables ({', '.join(sorted(tables)[:5])}"
            f"{', ...' if len(tables) > 5 else ''}); point the registry at a zoo registry or at a new file"
        )
    if not create:
        raise RegistryMissingError(str(path), "the database file holds no zoo registry")


def _check_zoo_revision(shown: str, revision: str | None) -> None:
    """Refuse a database another program migrates with Alembic: its revision is none of zoo's migrations."""
    known = _migrations()[0]
    if revision not in known:
        raise ConfigError(
            f"{shown} is not a zoo registry: its schema revision {revision!r} is none of "
            f"zoo's ({', '.join(sorted(known))}; a newer zoo may have written it); point the "
            "registry at a zoo registry or at a new file or database, or upgrade zoo"
        )


def advisory_lock(conn: Connection | Session, key: str) -> None:
    """PostgreSQL: wait for the transaction-scoped advisory lock on ``key``, held until the transaction
    ends."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


def retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """Run ``fn``, retrying transient lock/serialisation errors with jittered backoff."""
    for i in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            msg = str(exc).lower()
            transient = "locked" in msg or "busy" in msg or "deadlock" in msg or "could not serialize" in msg
            if not transient or i == attempts - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2**i) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _alembic_config():  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.cache
def _migrations() -> tuple[frozenset[str], str]:
    """(every revision of zoo's migrations, the head revision), read once per process from the scripts'
    ``revision`` and ``down_revision`` assignments, without importing alembic: alembic is imported only to
    upgrade a registry, so that opening a current one (``zoo list``) does not pay for it (about 0.2 s of
    the command's start; ``bench/bench_cli.py``)."""
    import ast

    parents: dict[str, tuple[str, ...]] = {}  # revision -> the revisions it follows
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        found: dict[str, Any] = {}
        for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
            target = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            value = getattr(node, "value", None)
            if (
                isinstance(target, ast.Name)
                and target.id in ("revision", "down_revision")
                and value is not None
            ):
                found[target.id] = ast.literal_eval(value)
        if "revision" in found:
            down = found.get("down_revision") or ()
            parents[str(found["revision"])] = tuple(down) if isinstance(down, (tuple, list)) else (down,)
    heads = set(parents) - {p for ps in parents.values() for p in ps}
    assert len(heads) == 1, f"the migrations must have one head, not {sorted(heads)}"
    return frozenset(parents), heads.pop()


def head_revision() -> str:
    """The newest schema revision this zoo writes."""
    return _migrations()[1]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(engine: Engine) -> None:
    if current_revision(engine) == head_revision():
        return
    from alembic import command

    cfg = _alembic_config()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        # SQLite rebuilds a table to alter it: dropping the old copy must not cascade (before BEGIN)
        if sqlite:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():  # write engine: on SQLite this BEGIN IMMEDIATE serialises migrators
                # serialise migrators; the loser then finds it current
                if engine.dialect.name == "postgresql":
                    advisory_lock(conn, "zoo:migrate")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left {len(broken)} broken foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")
    log.info("registry schema migrated to %s", head_revision())


def with_driver(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load: a bare ``postgresql://`` (or ``postgres://``) URL means
    psycopg 3 (what ``zoo[postgres]`` installs) unless psycopg2 is installed; other URLs are kept as given."""
    u = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if u.drivername == "postgresql":
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def default_url() -> str:
    return os.environ.get("ZOO_REGISTRY_URL", DEFAULT_URL)
