"""Shared fixtures: a fresh registry on each backend (SQLite file, PostgreSQL database), and the real data.

Backends: a test that uses ``registry`` or ``registry_url`` runs once per backend its ``backends`` marker
names (``@pytest.mark.backends("sqlite", "postgresql")``, or ``pytestmark`` for a module); unmarked tests
run on the backends in ``$ZOO_TEST_BACKENDS`` (default ``sqlite``), so ``ZOO_TEST_BACKENDS=sqlite,postgresql``
runs every registry test on both. PostgreSQL comes from ``tests/pgserver.py`` (a throwaway server started
once per session, or ``$ZOO_TEST_POSTGRES_URL``); each test gets a new database, dropped afterwards. Where
no PostgreSQL can be had, its tests skip with the reason, except in CI (``CI=true``) or with
``ZOO_REQUIRE_POSTGRES=1``, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import zoo
from tests.pgserver import PostgresServer, PostgresUnavailable, postgres_required
from zoo.shared_data import shared_data_dir

BACKENDS = ("sqlite", "postgresql")


def _default_backends() -> tuple[str, ...]:
    names = tuple(b.strip() for b in os.environ.get("ZOO_TEST_BACKENDS", "sqlite").split(",") if b.strip())
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise pytest.UsageError(f"ZOO_TEST_BACKENDS names unknown backends {unknown}; choose from {BACKENDS}")
    return names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*names): run the test on each named registry backend "
        "('sqlite', 'postgresql'; default: $ZOO_TEST_BACKENDS or sqlite)",
    )
    config.addinivalue_line("markers", "postgresql: the test needs a PostgreSQL server (tests/pgserver.py)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = tuple(marker.args) if marker else _default_backends()
    metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is not present")
    return d


@pytest.fixture
def pretrained(shared_data: Path) -> Path:
    d = shared_data / "pretrained"
    if not (d / "resnet20-12fca82f.th").is_file():
        pytest.skip("pretrained CIFAR ResNets are not present")
    return d


# --- PostgreSQL ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (started on first use, stopped at the end); skips where there is none,
    or fails in CI (pytest remembers the outcome: one attempt per session)."""
    server: PostgresServer | None = None
    try:
        import psycopg  # noqa: F401

        server = PostgresServer.start()
    except ImportError:
        error = "the psycopg driver is not installed: pip install -e .[test]"
    except PostgresUnavailable as exc:
        error = str(exc)
    if server is None:
        if postgres_required():
            pytest.fail(
                f"PostgreSQL is required here (CI or ZOO_REQUIRE_POSTGRES=1) but unavailable: {error}"
            )
        pytest.skip(f"PostgreSQL unavailable: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated to the newest schema (pgvector installed where the server has it), to copy per
    test."""
    url = postgres_server.create_database(prefix="zoo_template")
    zoo.Registry(url, blob_root=tmp_path_factory.mktemp("template-blobs")).close()  # migrations run on open
    from sqlalchemy.engine import make_url

    return str(make_url(url).database)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """The URL of a new, migrated PostgreSQL database of its own, dropped after the test."""
    url = postgres_server.create_database(template=postgres_template)
    yield url
    postgres_server.drop_database(url)


# --- registries on every backend ----------------------------------------------------------------------


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The registry backend under test: "sqlite" or "postgresql" (parametrized; see the module docstring)."""
    return str(request.param)


@pytest.fixture
def registry_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh registry database URL on ``backend``: a new SQLite file, or a new PostgreSQL database."""
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def registry(registry_url: str, tmp_path: Path) -> Iterator[zoo.Registry]:
    """A registry on ``registry_url`` with its blob store in ``tmp_path / "registry.blobs"``."""
    reg = zoo.Registry(registry_url, blob_root=tmp_path / "registry.blobs")
    yield reg
    reg.close()
