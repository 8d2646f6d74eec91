"""What a newcomer meets on the command line (issue 17): every hint in an error is a `zoo ...` command that
exists (never a Python call), an exact dataset-name match is served before vectors exist, empty answers
say why, and the small things (--exist-ok, verify --repair, --family, --limit, help, descriptions, truncated
files, torch's warnings, LICENSE)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli

ROOT = Path(__file__).resolve().parents[2]
PYTHON_CALL = re.compile(r"\b(registry|reg|zoo|igpg)\.[a-z_]+\(|\b[a-z_]+=\S")  # registry.add(..., arch='x'


def run(db: Path, *args: str, code: int = 0) -> str:
    res = CliRunner().invoke(cli, ["--registry", str(db), *args], catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


def cnn_file(tmp_path: Path, seed: int, name: str, arch: str = "cnn-tiny") -> Path:
    torch.manual_seed(seed)
    model = zoo.get_family("cnn").build(zoo.resolve_arch(arch))
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return path


def commands_named(text: str) -> list[str]:
    """The `zoo ...` commands a message names."""
    return re.findall(r"`zoo ([^`]+)`", text)


def assert_pasteable(message: str) -> None:
    """No Python call, and every `zoo ...` it names is a command the CLI has (a group's subcommand too)."""
    assert not PYTHON_CALL.search(message), message
    ctx = click.Context(cli)
    for command in commands_named(message):
        words = command.split()
        found = cli.get_command(ctx, words[0])
        assert found is not None, f"{message}: no command `zoo {words[0]}`"
        if isinstance(found, click.Group) and len(words) > 1 and not words[1].startswith("-"):
            assert found.get_command(ctx, words[1]) is not None, f"{message}: no `zoo {command}`"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A registry with cnn-tiny checkpoints on a registered dataset (vectors) and one on a dataset known by
    name only (`zoo add --dataset cifar10`, as the README's quick start does)."""
    path = tmp_path / "registry.db"
    run(path, "datasets", "register", "digits", "digits", "--description", "scikit-learn's 8x8 digits, raw")
    run(path, "add", str(cnn_file(tmp_path, 0, "net")), "--dataset", "digits", "--metric", "accuracy=0.5")
    run(path, "add", str(cnn_file(tmp_path, 1, "named")), "--dataset", "cifar10")
    return path


def test_errors_reached_from_the_cli_name_commands_that_exist(db: Path, tmp_path: Path) -> None:
    small = cnn_file(tmp_path, 2, "small", "cnn-small")
    failing = [
        ["show", "nosuch"],
        ["show", "net@best"],
        ["show", "net:v7"],
        ["get", "cnn-tin", "--dataset", "digits"],
        ["get", "cnn-tiny", "--dataset", "nosuch"],
        ["nearest", "cnn-tiny", "nosuch"],
        ["get", "cnn-small", "--dataset", "digits", "--no-adapt"],
        ["get", "cnn-tiny", "--dataset", "digits", "--generate", "--generator", "igpg:v9"],
        ["get", "cnn-tiny", "--dataset", "digits", "--labelled", "cifar10"],
        ["add", str(tmp_path / "net.pt")],
        ["add", str(small), "--parent", "nosuch"],
        ["add", str(small), "--arch", "nosuch"],
        ["search", "--family", "nofam"],
        ["generators", "--family", "nofam"],
    ]
    for args in failing:
        res = CliRunner().invoke(cli, ["--registry", str(db), *args])
        assert res.exit_code == 1 and res.output.startswith("Error: "), (args, res.output)
        assert_pasteable(res.output)
    out = CliRunner().invoke(
        cli, ["--registry", str(db), "get", "cnn-small", "--dataset", "digits", "--no-adapt"]
    )
    assert "`zoo train --arch cnn-small --promote`" in out.output  # the fix, as a command to paste
    dup = CliRunner().invoke(cli, ["--registry", str(db), "add", str(tmp_path / "net.pt")]).output
    assert "pass --exist-ok" in dup and "exist_ok" not in dup


def test_python_hints_stay_python(registry: zoo.Registry) -> None:
    """The same refusals from Python name calls, and say the command only on the command line."""
    with pytest.raises(zoo.NotFoundError) as err:
        registry.get("nosuch")
    assert "registry.list()" in str(err.value) and "`zoo" not in str(err.value)
    assert "`zoo list`" in str(err.value.for_cli())
    with pytest.raises(zoo.UnknownFamilyError) as unknown:
        zoo.resolve_arch("cnn-tin")
    assert "Did you mean cnn-tiny?" in str(unknown.value) and "zoo.list_architectures()" in str(unknown.value)
    assert "Pass arch=" not in str(unknown.value)  # a name was given: passing arch= is no fix


def test_an_exact_dataset_name_is_served_before_it_has_vectors(db: Path) -> None:
    hits = json.loads(run(db, "nearest", "cnn-tiny", "cifar10", "--json"))
    assert [(h["ref"], h["similarity"], h["dataset"]) for h in hits] == [("named:v1", 1.0, "cifar10")]
    got = json.loads(
        run(db, "get", "cnn-tiny", "--dataset", "cifar10", "--out", str(db.parent / "w.st"), "--json")
    )
    assert got["source"] == "retrieved" and got["ref"] == "named:v1" and got["similarity"] == 1.0


def test_get_says_what_is_true_when_no_dataset_has_a_vector(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    run(path, "datasets", "register", "digits", "digits")
    run(path, "add", str(cnn_file(tmp_path, 1, "named")), "--dataset", "cifar10")
    res = CliRunner().invoke(cli, ["--registry", str(path), "get", "cnn-tiny", "--dataset", "digits"])
    assert res.exit_code == 1
    assert "is registered with a dataset" not in res.output.replace("are registered with a dataset (", "")
    assert (
        "registered with a dataset ('cifar10'), but none of those datasets has a pixels vector" in res.output
    )
    assert "`zoo datasets register cifar10 SOURCE`" in res.output
    assert_pasteable(res.output)


def test_nearest_says_why_it_found_nothing(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    run(path, "datasets", "register", "digits", "digits")
    res = CliRunner().invoke(cli, ["--registry", str(path), "nearest", "cnn-tiny", "digits"])
    assert res.exit_code == 0 and "nothing found: no checkpoint of cnn-tiny is registered" in res.output
    assert "`zoo add FILE --arch cnn-tiny --dataset digits`" in res.output
    res = CliRunner().invoke(cli, ["--registry", str(path), "nearest", "cnn-tiny", "nosuch"])
    assert res.exit_code == 1 and "`zoo datasets list`" in res.output


def test_similarities_print_rounded(db: Path) -> None:
    out = run(db, "nearest", "cnn-tiny", "digits")
    assert re.search(r"net:v1\s+1\.0000\s+digits", out) and "1.0000001" not in out
    assert all(
        -1.0 <= h["similarity"] <= 1.0 for h in json.loads(run(db, "nearest", "cnn-tiny", "digits", "--json"))
    )


def test_exist_ok_says_the_weights_were_there(db: Path, tmp_path: Path) -> None:
    out = run(db, "add", str(tmp_path / "net.pt"), "--exist-ok")
    assert out.startswith("net:v1 already holds these weights (not added again):")
    assert json.loads(run(db, "add", str(tmp_path / "net.pt"), "--exist-ok", "--json"))["added"] is False
    assert run(db, "add", str(cnn_file(tmp_path, 5, "net")), "--exist-ok").startswith("added net:v2:")


def test_a_refused_parent_leaves_no_blob_folder(db: Path, tmp_path: Path) -> None:
    blobs = db.with_suffix(".blobs")
    before = sorted(p.relative_to(blobs) for p in blobs.rglob("*"))
    run(db, "add", str(cnn_file(tmp_path, 9, "child")), "--parent", "nosuch", code=1)
    assert sorted(p.relative_to(blobs) for p in blobs.rglob("*")) == before


def test_verify_repair_says_what_it_removed_only_when_it_did(db: Path) -> None:
    out = run(db, "verify", "--repair")
    assert "0 orphan files, 0 orphan rows" in out and "repaired" not in out and "removed" not in out
    orphan = db.with_suffix(".blobs") / "ab" / ("ab" + "0" * 62 + ".safetensors")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"x")
    out = run(db, "verify", "--repair", "--grace", "0")
    assert "1 orphan files" in out and "(removed them)" in out and not orphan.exists()


def test_search_refuses_an_unknown_family_and_a_bad_limit(db: Path) -> None:
    res = CliRunner().invoke(cli, ["--registry", str(db), "search", "--family", "nofam"])
    assert (
        res.exit_code == 1 and "unknown family 'nofam'; known families: cnn, lora, resnet, vit" in res.output
    )
    for cmd in (["list"], ["search"], ["jobs"]):
        res = CliRunner().invoke(cli, ["--registry", str(db), *cmd, "--limit", "-1"])
        assert res.exit_code == 2 and "-1 is not in the range x>=1" in res.output, res.output
    assert len(json.loads(run(db, "search", "--family", "cnn", "--limit", "1", "--json"))) == 1


def test_python_search_refuses_an_unknown_family_and_a_bad_limit(registry: zoo.Registry) -> None:
    with pytest.raises(zoo.ZooError, match="unknown family 'nofam'; known families: cnn"):
        registry.search(family="nofam")
    for limit in (-1, 0):
        with pytest.raises(zoo.ZooError, match="limit must be a positive integer"):
            registry.list(limit=limit)
    assert registry.search(family="cnn") == []  # installed, just empty


def test_every_search_option_has_help() -> None:
    for name in ("search", "list"):
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"zoo {name} {param.opts[0]} has no help"


def test_datasets_list_prints_whole_descriptions(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    text = "scikit-learn 8x8 digits upsampled to 28x28; transformed: rot15, the held-out near task"
    run(path, "datasets", "register", "digits", "digits", "--description", text)
    assert text in run(path, "datasets", "list")


def test_a_truncated_torch_file_says_so_and_torch_warnings_stay_quiet(tmp_path: Path) -> None:
    whole = cnn_file(tmp_path, 0, "whole")
    data = whole.read_bytes()
    db = tmp_path / "registry.db"
    for n in (10, len(data) // 2, len(data) - 100):
        cut = tmp_path / f"cut{n}.pt"
        cut.write_bytes(data[:n])
        proc = subprocess.run(
            [sys.executable, "-W", "default", "-m", "zoo", "--registry", str(db), "add", str(cut)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1 and "Warning" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and f"it ends ({n:,} bytes) before its data do" in proc.stderr
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.load(whole), legacy, _use_new_zipfile_serialization=False, pickle_protocol=4)
    cut = tmp_path / "legacy-cut.pt"
    cut.write_bytes(legacy.read_bytes()[:300])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(zoo.CheckpointError, match="truncated"):
            zoo.Registry(db).add(cut)
    assert not [str(w.message) for w in caught if "pickle" in str(w.message)]  # torch's stay inside


def test_the_licence_file_matches_pyproject() -> None:
    licence = re.search(r'^license = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]  # type: ignore[index]
    text = (ROOT / "LICENSE").read_text()
    assert licence == "Apache-2.0" and "Apache License" in text and "Version 2.0, January 2004" in text
