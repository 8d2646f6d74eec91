"""The `zoo` command line, run as a user would: add, list, show, search, alias, load-check, rm, verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli


def run(args: list[str], db: Path, ok: bool = True):  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(cli, ["--registry", str(db), *args], catch_exceptions=False) if ok else None
    if ok:
        assert res.exit_code == 0, res.output
    return res


def cnn_file(tmp_path: Path, seed: int, name: str) -> Path:
    torch.manual_seed(seed)
    model = zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return path


def test_cli_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    out = json.loads(
        run(
            [
                "add",
                str(cnn_file(tmp_path, 0, "net")),
                "--dataset",
                "digits",
                "--metric",
                "accuracy=0.91",
                "--tag",
                "zoo",
                "--json",
            ],
            db,
        ).output
    )
    assert out["ref"] == "net:v1" and out["arch"] == "cnn-tiny" and out["num_params"] == 2464
    run(["add", str(cnn_file(tmp_path, 1, "net")), "--metric", "accuracy=0.5"], db)
    listed = json.loads(run(["list", "--json"], db).output)
    assert [r["ref"] for r in listed] == ["net:v2", "net:v1"]
    assert "net:v2" in run(["list"], db).output
    found = json.loads(run(["search", "--metric", "accuracy>=0.9", "--json"], db).output)
    assert [r["ref"] for r in found] == ["net:v1"]
    run(["alias", "net:v1", "best"], db)
    shown = json.loads(run(["show", "net@best", "--json"], db).output)
    assert shown["aliases"] == ["best"] and shown["dataset"] == "digits"
    checked = json.loads(run(["load-check", "net@best", "--json"], db).output)
    assert checked[0]["ok"] and checked[0]["output_shape"] == [1, 10]
    assert json.loads(run(["verify", "--json"], db).output)["clean"]
    run(["rm", "net:v2", "--yes"], db)
    assert [r["ref"] for r in json.loads(run(["list", "--json"], db).output)] == ["net:v1"]
    plugins = json.loads(run(["plugins", "--json"], db).output)
    assert "cnn" in plugins["families"] and any(p["name"] == "resnet" for p in plugins["plugins"])


def test_cli_errors_are_one_line_with_exit_code_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    env_db = tmp_path / "registry.db"
    proc = subprocess.run(
        [sys.executable, "-m", "zoo", "--registry", str(env_db), "add", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: cannot read checkpoint") and "Traceback" not in proc.stderr
    show = [sys.executable, "-m", "zoo", "--registry", str(env_db), "show", "nothing"]
    # the refused first add left no registry behind: a read names the missing registry
    assert not env_db.exists()
    proc = subprocess.run(show, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith(f"Error: no registry at {env_db}")
    zoo.Registry(env_db).close()
    proc = subprocess.run(show, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no checkpoint named 'nothing'" in proc.stderr


def test_verify_exit_code_reports_damage(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    out = json.loads(run(["add", str(cnn_file(tmp_path, 0, "net")), "--json"], db).output)
    blob = tmp_path / "registry.blobs" / out["sha256"][:2] / f"{out['sha256']}.safetensors"
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    res = CliRunner().invoke(cli, ["--registry", str(db), "verify"])
    assert res.exit_code == 1 and "corrupt" in res.output


@pytest.mark.parametrize(
    "cmd",
    [
        "add",
        "list",
        "show",
        "search",
        "load-check",
        "alias",
        "rm",
        "verify",
        "plugins",
        "train",
        "generators",
        "nearest",
        "datasets",
        "get",
        "reindex",
        "jobs",
    ],
)
def test_every_command_has_help(cmd: str) -> None:
    res = CliRunner().invoke(cli, [cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_cli_datasets_and_nearest(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    reg = json.loads(run(["datasets", "register", "digits", "digits", "--json"], db).output)
    assert reg["num_samples"] == 1797 and reg["num_classes"] == 10
    assert [d["name"] for d in json.loads(run(["datasets", "list", "--json"], db).output)] == ["digits"]
    run(["add", str(cnn_file(tmp_path, 0, "net")), "--dataset", "digits"], db)
    hits = json.loads(run(["nearest", "cnn-tiny", "digits", "--json"], db).output)
    assert hits[0]["ref"] == "net:v1" and hits[0]["similarity"] > 0.99
    assert json.loads(run(["nearest", "resnet20", "digits", "--json"], db).output) == []


def test_add_with_a_partial_spec_json_names_the_missing_config_keys(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    path = cnn_file(tmp_path, 3, "new")
    for spec, said in (
        (
            '{"family":"cnn","name":"cnn-tiny","config":{"hidden":99}}',
            "lacks the config key(s) activation, channels, in_chans, input_size, kernels, num_classes of cnn "
            "architecture 'cnn-tiny'",
        ),
        (
            '{"family":"cnn","name":"my-cnn","config":{"hidden":99}}',
            "architecture 'my-cnn' of family cnn: its config lacks the key 'in_chans'",
        ),
    ):
        res = CliRunner().invoke(cli, ["--registry", str(db), "add", str(path), "--arch", spec])
        assert res.exit_code == 1 and res.output.startswith("Error: "), res.output
        assert said in res.output and "Traceback" not in res.output and "KeyError" not in res.output
    with pytest.raises(zoo.ZooError, match="lacks the config key"):
        zoo.resolve_arch('{"family":"cnn","name":"cnn-tiny","config":{"hidden":99}}')
