"""Shared fixtures: a fresh registry on a real SQLite file, and the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import zoo

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$ZOO_SHARED_DATA`` or ``../shared/data`` beside the repository, if present."""
    env = os.environ.get("ZOO_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data", REPO / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


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


@pytest.fixture
def registry(tmp_path: Path) -> zoo.Registry:
    """A registry on a fresh SQLite file (``registry.db``) with its blob store beside it."""
    reg = zoo.Registry(tmp_path / "registry.db")
    yield reg
    reg.close()
