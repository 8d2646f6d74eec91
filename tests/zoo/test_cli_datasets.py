"""`zoo datasets rm`: refused while checkpoints use the dataset (unless --detach), asks before removing, never
removes anything but the dataset named; the registry is unchanged on every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "registry.db"
    with zoo.Registry(path) as reg:
        torch.manual_seed(0)
        reg.add(zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")), name="a", dataset="digits")
        reg.register_dataset("spare", (torch.rand(12, 1, 8, 8), torch.arange(12) % 3), encoders=["pixels"])
    return path


def run(db: Path, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--registry", str(db), *args], input=stdin)


def state(db: Path) -> tuple:
    with zoo.Registry(db) as reg:
        return [d.name for d in reg.datasets()], [(r.ref, r.dataset) for r in reg.list()]


def test_refused_while_checkpoints_use_it_saying_the_flag(db: Path) -> None:
    before = state(db)
    res = run(db, "datasets", "rm", "digits", "--yes")
    assert res.exit_code == 1 and res.stdout == ""
    assert "dataset digits is the dataset of 1 checkpoint(s) (a:v1); nothing was removed" in res.stderr
    assert "`zoo datasets rm digits --detach --yes`" in res.stderr and "detach=" not in res.stderr
    assert state(db) == before


def test_detach_removes_only_the_named_dataset_and_keeps_the_checkpoints(db: Path) -> None:
    res = run(db, "datasets", "rm", "digits", "--detach", "--yes")
    assert res.exit_code == 0, res.output
    assert res.output == "removed dataset digits (0 vectors); cleared the dataset of a:v1\n"
    assert state(db) == (["spare"], [("a:v1", None)])
    history = json.loads(run(db, "history", "a:v1", "--json").output)
    assert history[-1]["summary"] == "dataset digits -> - (dataset removed)"


def test_asks_first_and_refuses_without_a_terminal(db: Path) -> None:
    before = state(db)
    res = run(db, "datasets", "rm", "spare")  # CliRunner's stdin is not a terminal
    assert res.exit_code == 1 and "run `zoo datasets rm spare --yes`" in res.stderr
    assert state(db) == before
    data = json.loads(run(db, "datasets", "rm", "spare", "--yes", "--json").output)
    assert data == {"removed": "spare", "id": data["id"], "detached": [], "vectors": 1}
    assert state(db)[0] == ["digits"]


def test_unknown_dataset_says_where_to_look(db: Path) -> None:
    res = run(db, "datasets", "rm", "digitz", "--yes")
    assert (
        res.exit_code == 1 and "no dataset named 'digitz'" in res.stderr and "zoo datasets list" in res.stderr
    )
