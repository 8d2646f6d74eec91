"""The import-layer contract (pyproject's [tool.importlinter], checked by ``lint-imports`` in ``make test``)
covers every zoo module: a new internal module is forbidden to plugins until it is declared public."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import zoo

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, which import-linter installs there
    import tomli as tomllib  # type: ignore[no-redef]

PUBLIC_MODULES = {"zoo.errors", "zoo.cli", "zoo.datasets", "zoo.training"}  # besides the zoo package itself
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _plugin_contract() -> dict:  # type: ignore[type-arg]
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    (found,) = [c for c in contracts if "public API" in c["name"]]
    return found


def test_every_zoo_module_is_either_public_or_forbidden_to_plugins() -> None:
    modules = {f"zoo.{m.name}" for m in pkgutil.iter_modules(zoo.__path__) if m.name != "__main__"}
    forbidden = set(_plugin_contract()["forbidden_modules"])
    assert not forbidden & PUBLIC_MODULES
    assert modules - PUBLIC_MODULES == forbidden, "declare a new zoo module public or forbid it in pyproject"


def test_the_contract_binds_every_package_above_zoo() -> None:
    assert set(_plugin_contract()["source_modules"]) == {"igpg", "zoo_families", "zoo_demo"}


def test_zoo_exports_what_the_plugins_need() -> None:
    for name in ("Registry", "chunk_index", "embed_arch", "get_embedding", "training_checkpoints"):
        assert name in zoo.__all__ and hasattr(zoo, name)
