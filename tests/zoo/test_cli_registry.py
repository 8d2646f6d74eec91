"""Registry semantics through the `zoo` command line, on SQLite and PostgreSQL: destructive commands ask or
refuse and say what they touch, read-only commands never create a registry, every stored metric is
searchable, and removed versions stay removed.

Replayed from public bug reports: `echo n | zoo rm digits-s4:v1` removed it; `zoo rm digits-s5:v1 --yes`
removed a parent holding the `prod` alias without a word; `zoo --registry path/with-a-typo/registry.db list`
created the folder and an empty database; `zoo search --metric 'acc@1>=0.5'` could not read the filter.
"""

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

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def tiny_cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))


def zoo_cli(url: str, blobs: Path, *args: str, code: int = 0, stdin: str | None = None) -> str:
    res = CliRunner().invoke(cli, ["--registry", url, "--blob-root", str(blobs), *args], input=stdin)
    assert res.exit_code == code, res.output
    return res.output


def test_rm_without_yes_refuses_when_it_cannot_ask(registry: zoo.Registry, registry_url: str) -> None:
    rec = registry.add(tiny_cnn(0), name="digits-s4")
    registry.alias(rec.ref, "prod")
    for answer in ("n\n", "y\n", None):  # CliRunner's stdin is not a terminal, as in `echo n | zoo rm ...`
        out = zoo_cli(registry_url, registry.blobs.root, "rm", rec.ref, code=1, stdin=answer)
        assert (
            out.startswith("Error: not removing digits-s4:v1 (aliases digits-s4@prod")
            and out.count("\n") == 1
        )
        assert f"zoo rm {rec.ref} --yes" in out
    assert registry.get(rec.ref).id == rec.id


def test_rm_of_a_base_says_why_before_it_asks(registry: zoo.Registry, registry_url: str) -> None:
    """A removal that would be refused (LoRA adapters apply on top of it) says so, and never advises --yes."""
    from tests.zoo_families.helpers import random_state

    base_spec = zoo.resolve_arch("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=10)
    base = registry.add(
        random_state(zoo.get_family("vit"), base_spec, seed=1), name="vit-tiny", arch=base_spec
    )
    spec = zoo.resolve_arch("lora", base=base_spec, rank=4, alpha=8)
    adapter = registry.add(
        random_state(zoo.get_family("lora"), spec), name="vit-tiny-lora", arch=spec, base=base.ref
    )
    for args in ([base.ref], [base.ref, "--yes"]):
        out = zoo_cli(registry_url, registry.blobs.root, "rm", *args, code=1)
        assert f"is the base of {adapter.ref}" in out and "--yes" not in out
    assert registry.get(base.ref).id == base.id


@pytest.mark.backends("sqlite")  # one real process is enough: the CliRunner test covers PostgreSQL
def test_rm_piped_answer_in_a_real_process_removes_nothing(registry: zoo.Registry, registry_url: str) -> None:
    rec = registry.add(tiny_cnn(0), name="digits-s4")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zoo",
            "--registry",
            registry_url,
            "--blob-root",
            str(registry.blobs.root),
            "rm",
            rec.ref,
        ],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "--yes" in proc.stderr and "removed" not in proc.stdout
    assert registry.get(rec.ref).id == rec.id


def test_rm_says_what_it_orphans(registry: zoo.Registry, registry_url: str) -> None:
    parent = registry.add(tiny_cnn(0), name="digits-s5")
    registry.alias(parent.ref, "prod")
    child = registry.add(tiny_cnn(1), name="digits-s5-ft", parent=parent.ref, origin="fine-tuned")
    gen = registry.add_generator(b"g" * 64, families=["cnn"], config={}, metrics={}, trained_on=[parent.id])
    out = zoo_cli(registry_url, registry.blobs.root, "rm", parent.ref, "--yes")
    assert f"removed {parent.ref}" in out and child.ref in out and "digits-s5@prod" in out and gen.ref in out
    data = json.loads(zoo_cli(registry_url, registry.blobs.root, "rm", child.ref, "--yes", "--json"))
    assert data == {
        "removed": child.ref,
        "id": child.id,
        "children": [],
        "aliases": [],
        "generators": [],
        "base_of": [],
    }


def test_read_only_commands_never_create_a_registry(registry_url: str, tmp_path: Path) -> None:
    if registry_url.startswith("sqlite"):
        missing = tmp_path / "with-a-typo" / "registry.db"
        url, where = f"sqlite:///{missing}", str(missing)
    else:  # a database that does not exist on the server
        url = registry_url.rsplit("/", 1)[0] + "/no_such_zoo_db"
        where = "no_such_zoo_db"
    for args in (
        ["list"],
        ["show", "net"],
        ["search", "--metric", "acc>=0.5"],
        ["verify"],
        ["generators"],
        ["jobs"],
        ["datasets", "list"],
        ["nearest", "cnn-tiny", "digits"],
        ["rm", "net:v1", "--yes"],
        ["alias", "net:v1", "best"],
        ["load-check", "net"],
        ["get", "cnn-tiny", "--dataset", "digits"],
        ["train", "--arch", "cnn-tiny"],
    ):
        out = zoo_cli(url, tmp_path / "blobs", *args, code=1)
        assert "no registry at" in out and where in out, (args, out)
        assert "Traceback" not in out
    assert not (tmp_path / "with-a-typo").exists() and not (tmp_path / "blobs").exists()


def test_cli_metric_names_round_trip(registry: zoo.Registry, registry_url: str, tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    torch.save(tiny_cnn(0).state_dict(), path)
    zoo_cli(
        registry_url,
        registry.blobs.root,
        "add",
        str(path),
        "--metric",
        "acc@1=0.9",
        "--metric",
        "top-1 (%) = 91.5",
        "--metric",
        "val acc=0.8",
    )
    assert registry.get("net").metrics == {"acc@1": 0.9, "top-1 (%)": 91.5, "val acc": 0.8}
    for expr in ("acc@1>=0.5", "top-1 (%) > 90", "val acc==0.8"):
        found = json.loads(zoo_cli(registry_url, registry.blobs.root, "search", "--metric", expr, "--json"))
        assert [r["ref"] for r in found] == ["net:v1"], expr
    out = zoo_cli(
        registry_url, registry.blobs.root, "add", str(path), "--name", "other", "--metric", "a<b=1", code=1
    )
    assert "cannot be searched" in out
    out = zoo_cli(registry_url, registry.blobs.root, "search", "--metric", "acc@1 about 1", code=1)
    assert "cannot read metric filter" in out


def test_cli_removed_version_is_never_reissued(
    registry: zoo.Registry, registry_url: str, tmp_path: Path
) -> None:
    for seed in (0, 1, 2):
        path = tmp_path / f"clf-{seed}.pt"
        torch.save(tiny_cnn(seed).state_dict(), path)
        out = zoo_cli(registry_url, registry.blobs.root, "add", str(path), "--name", "clf")
        if seed == 1:
            zoo_cli(registry_url, registry.blobs.root, "rm", "clf:v2", "--yes")
    assert "added clf:v3" in out
    assert "clf:v2 was removed" in zoo_cli(registry_url, registry.blobs.root, "show", "clf:v2", code=1)


def test_a_blob_root_that_is_a_file_is_refused_before_anything_changes(
    registry: zoo.Registry, registry_url: str, tmp_path: Path
) -> None:
    """Replayed: `zoo --blob-root some-file rm x:v1 --yes` printed a traceback after deleting the row."""
    rec = registry.add(tiny_cnn(0), name="kept")
    afile = tmp_path / "not-a-folder"
    afile.write_text("hi")
    for where in (afile, afile / "below"):
        for args in (("rm", rec.ref, "--yes"), ("list",), ("add", str(afile))):
            out = zoo_cli(registry_url, where, *args, code=1)
            assert out.startswith("Error: the blob store folder") and out.count("\n") == 1
            assert "is a file, not a folder; point --blob-root (or $ZOO_BLOB_ROOT) at a folder" in out
    assert registry.get(rec.ref).id == rec.id and registry.verify().ok
    with pytest.raises(zoo.ConfigError, match="point blob_root= "):
        zoo.Registry(registry_url, blob_root=afile)


@pytest.mark.backends("sqlite")
def test_a_refused_first_add_leaves_no_registry_behind(tmp_path: Path) -> None:
    """Replayed: `zoo --registry typo.db add missing.safetensors` refused the file, left an empty typo.db."""
    new = tmp_path / "typo.db"
    refusals = [
        ("add", str(tmp_path / "missing.safetensors")),
        ("add", str(tmp_path)),
        ("datasets", "register", "x", str(tmp_path / "nowhere")),
    ]
    for args in refusals:
        res = CliRunner().invoke(cli, ["--registry", str(new), *args])
        assert res.exit_code == 1 and res.output.startswith("Error: ")
        assert sorted(p.name for p in tmp_path.iterdir()) == [], res.output
    path = tmp_path / "good.safetensors"
    from safetensors.torch import save_file

    save_file(tiny_cnn(0).state_dict(), path)
    assert CliRunner().invoke(cli, ["--registry", str(new), "add", str(path)]).exit_code == 0
    res = CliRunner().invoke(cli, ["--registry", str(new), "add", str(tmp_path / "missing.safetensors")])
    assert res.exit_code == 1 and new.exists()  # a registry that holds something is never removed
    assert [r.name for r in zoo.Registry(new, create=False).list()] == ["good"]
