"""`zoo get` writes its --out file as `zoo export` does: never over an existing file without --force, never
into a missing folder; a count below 1 is refused as a flag."""

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
    torch.manual_seed(0)
    model = zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))
    path = tmp_path / "registry.db"
    with zoo.Registry(path) as reg:
        reg.add(model, name="net", dataset="digits")
    return path


def get(db: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["--registry", str(db), "get", *args])
    return res.exit_code, res.output


@pytest.mark.parametrize("ref", [["net:v1"], ["cnn-tiny", "--dataset", "digits"]])
def test_get_refuses_an_existing_out_file_unless_force(db: Path, tmp_path: Path, ref: list[str]) -> None:
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"mine")
    code, text = get(db, *ref, "--out", str(out))
    assert code == 1 and "Traceback" not in text
    assert (
        text.strip()
        == f"Error: {out} already exists; choose another file with --out, or add --force to replace it"
    )
    assert out.read_bytes() == b"mine"  # untouched


def test_get_force_replaces_and_a_missing_folder_is_refused(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"mine")
    code, text = get(db, "net:v1", "--out", str(out), "--force", "--json")
    assert code == 0, text
    assert json.loads(text)["ref"] == "net:v1" and out.read_bytes() != b"mine"
    missing = tmp_path / "nosuch" / "w.safetensors"
    code, text = get(db, "net:v1", "--out", str(missing))
    assert code == 1
    assert f"the folder {missing.parent} does not exist; create it first" in text
    assert not missing.parent.exists()  # not created behind the user's back


def test_get_default_file_is_not_overwritten_either(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert get(db, "net:v1")[0] == 0 and (tmp_path / "net-v1.safetensors").is_file()
    code, text = get(db, "net:v1")
    assert code == 1 and "net-v1.safetensors already exists" in text


@pytest.mark.parametrize("value", ["0", "-1"])
def test_get_samples_below_one_is_refused_as_a_flag(db: Path, value: str) -> None:
    code, text = get(db, "cnn-tiny", "--dataset", "digits", "--samples", value)
    assert code == 2 and f"Invalid value for '--samples': {value} is not in the range x>=1" in text


def test_library_names_the_count_that_is_below_one() -> None:
    with pytest.raises(zoo.ConfigError, match="score_pool=0: it counts networks"):
        zoo.RetrievalPolicy(score_pool=0)
