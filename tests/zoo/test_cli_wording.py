"""Each refusal in the words of the interface used (issue 17): the command line names `zoo ...` commands and
flags, Python names calls; the registry verbs around them (unalias, alias, tag/untag, metrics, verify, a
re-add that repairs a blob, datasets register --size, datasets rm, show)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import zoo
from zoo.cli import cli

PYTHON_CALL = re.compile(r"\b(registry|reg|zoo|igpg)\.[a-z_]+\(|\b[a-z_]+=\S|\b[A-Za-z_]+\.[a-z_]+\(\)")


def run(db: Path, *args: str, code: int = 0, blob_root: Path | None = None) -> str:
    root = ["--blob-root", str(blob_root)] if blob_root is not None else []
    res = CliRunner().invoke(cli, ["--registry", str(db), *root, *args])
    assert res.exit_code == code, (args, res.output)
    return res.output


def cnn_file(tmp_path: Path, seed: int, name: str) -> Path:
    torch.manual_seed(seed)
    path = tmp_path / f"{name}.pt"
    torch.save(zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")).state_dict(), path)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A registry with checkpoint ``net`` (one version) on dataset ``digits``."""
    path = tmp_path / "registry.db"
    run(path, "datasets", "register", "digits", "digits")
    run(path, "add", str(cnn_file(tmp_path, 0, "net")), "--dataset", "digits")
    return path


def test_cli_refusals_say_commands_and_flags(db: Path, tmp_path: Path) -> None:
    cases = {
        ("--registry", str(tmp_path / "none.db"), "list"): "--registry URL",
        ("unalias", "net"): "`zoo unalias net@ALIAS`",
        ("unalias", "net:v1"): "`zoo unalias net ALIAS`",
        ("unalias", "net@nosuch"): "`zoo show net`",
        ("add", str(tmp_path / "net.pt"), "--name", "x", "--arch", "{bad"): "`zoo show REF --json`",
        ("datasets", "rm", "nosuch", "--yes"): "`zoo datasets list`",
    }
    for args, fix in cases.items():
        full = list(args) if args[0] == "--registry" else ["--registry", str(db), *args]
        res = CliRunner().invoke(cli, full)
        assert res.exit_code == 1 and res.output.startswith("Error: "), (args, res.output)
        assert fix in res.output and not PYTHON_CALL.search(res.output), (args, res.output)
    assert "`zoo sample-zoo`" in run(tmp_path / "none.db", "list", code=1)


def test_python_refusals_say_calls(registry: zoo.Registry, tmp_path: Path) -> None:
    registry.add(cnn_file(tmp_path, 0, "net"), name="net")
    for call, fix in [
        (lambda: registry.remove_dataset("nosuch"), "registry.datasets()"),
        (lambda: registry.unalias("net@nosuch"), "registry.aliases('net')"),
        (lambda: registry.unalias("net"), "unalias('net', 'ALIAS')"),
        (lambda: zoo.resolve_arch("{bad"), "ArchSpec.to_json()"),
    ]:
        with pytest.raises(zoo.ZooError) as err:
            call()
        assert fix in str(err.value) and "`zoo" not in str(err.value), str(err.value)


def test_datasets_register_resizes_a_folder_of_mixed_sizes(tmp_path: Path) -> None:
    for c, colour in (("a", 0), ("b", 200)):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i, size in enumerate([(8, 8), (10, 12)]):
            Image.new("RGB", size, (colour, i * 50, 10)).save(tmp_path / "imgs" / c / f"{i}.png")
    db = tmp_path / "registry.db"
    out = run(db, "datasets", "register", "mixed", str(tmp_path / "imgs"), code=1)
    assert "--size HxW" in out and "size=(" not in out
    assert "registered mixed: 4 samples" in run(
        db, "datasets", "register", "mixed", str(tmp_path / "imgs"), "--size", "8x8"
    )
    assert "not a size" in run(
        db, "datasets", "register", "m2", str(tmp_path / "imgs"), "--size", "0", code=2
    )


def test_verify_names_the_users_of_a_damaged_blob_and_a_re_add_repairs_it(db: Path, tmp_path: Path) -> None:
    blob = next((tmp_path / "registry.blobs").rglob("*.safetensors"))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"xx")
    out = run(db, "verify", code=1)
    assert re.search(r"corrupt  [0-9a-f]{64}  used by net:v1", out) and "`zoo rm net:v1`" in out
    got = run(db, "get", "cnn-tiny", "--dataset", "digits", "--retrieve-only", code=1)
    assert "`zoo verify`" in got and "registry.verify()" not in got
    out = run(db, "add", str(tmp_path / "net.pt"), "--dataset", "digits")  # exit 0: it repaired the blob
    assert "repaired the blob" in out and "net:v1" in out
    run(db, "verify")
    assert "blob_repaired" in run(db, "history", "net")
    assert "already exists" in run(db, "add", str(tmp_path / "net.pt"), code=1)  # now a plain duplicate
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    assert "check --blob-root" in run(db, "verify", code=1, blob_root=empty)


def test_alias_refuses_an_ambiguous_name_and_a_version_like_alias(db: Path, tmp_path: Path) -> None:
    run(db, "add", str(cnn_file(tmp_path, 1, "net2")), "--name", "net")
    assert "net has 2 versions (v1, v2)" in run(db, "alias", "net", "best", code=1)
    assert "reads as a version" in run(db, "alias", "net:v1", "v2", code=1)
    run(db, "alias", "net:v2", "best")
    assert json.loads(run(db, "show", "net@best", "--json"))["version"] == 2


def test_tags_as_a_list_and_metrics_removed_alone(registry: zoo.Registry, tmp_path: Path) -> None:
    registry.add(cnn_file(tmp_path, 0, "net"), name="net", metrics={"acc": 0.5})
    assert set(registry.tag("net", ["a", "b"], "c").tags) == {"a", "b", "c"}
    assert registry.untag("net", ["a", "b"]).tags == ("c",)
    assert dict(registry.set_metrics("net", remove=["acc"]).metrics) == {}


def test_datasets_rm_keeps_the_flags_and_show_prints_a_dash(db: Path) -> None:
    out = run(db, "datasets", "rm", "digits", "--yes", code=1)
    assert "`zoo datasets rm digits --detach --yes`" in out
    run(db, "datasets", "rm", "digits", "--detach", "--yes")
    assert "dataset: -" in run(db, "show", "net")
