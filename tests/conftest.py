"""Shared fixtures: a fresh registry on a real SQLite file, and the real data in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

import zoo
from zoo.shared_data import shared_data_dir

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
