"""Adding a Hugging Face-style model folder (``config.json`` + ``model.safetensors``, or shards with an index)
and refusing URLs clearly (zoo downloads nothing): through ``Registry.add`` and ``zoo add``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import zoo
from zoo.cli import cli


def cnn_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")).state_dict())


CONFIG = {"architectures": ["TinyCNN"], "num_labels": 10, "model_type": "cnn"}


def hf_folder(root: Path, state: dict[str, torch.Tensor], shards: int = 1) -> Path:
    """A model folder as save_pretrained writes it: config.json, and model.safetensors or shards + index."""
    root.mkdir()
    (root / "config.json").write_text(json.dumps(CONFIG))
    if shards == 1:
        save_file(state, root / "model.safetensors")
        return root
    names = sorted(state)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in names[i::shards]}
        save_file(part, root / file)
        weight_map.update(dict.fromkeys(part, file))
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return root


def refusal(db: Path, *args: str) -> str:
    res = CliRunner().invoke(cli, ["--registry", str(db), *args])
    assert res.exit_code == 1 and res.stdout == "", res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize("shards", [1, 3])
def test_model_folder_is_added_with_its_config(tmp_path: Path, shards: int) -> None:
    state = cnn_state()
    folder = hf_folder(tmp_path / "my-digits-model", state, shards)
    with zoo.Registry(tmp_path / "registry.db") as reg:
        rec = reg.add(folder)
        assert rec.name == "my-digits-model" and rec.arch.name == "cnn-tiny"
        assert rec.meta["source_config"] == CONFIG
        assert len(rec.meta["source_files"]) == shards
        got = reg.load_state_dict(rec)
        assert all(torch.equal(got[k], v) for k, v in state.items())


def test_model_folder_through_the_cli(tmp_path: Path) -> None:
    folder = hf_folder(tmp_path / "model", cnn_state())
    db = tmp_path / "registry.db"
    res = CliRunner().invoke(cli, ["--registry", str(db), "add", str(folder), "--name", "m", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["meta"]["source_config"]["num_labels"] == 10


def test_broken_shards_are_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    state = cnn_state()
    folder = hf_folder(tmp_path / "model", state, 2)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    bad = dict(index["weight_map"])
    bad[next(iter(bad))] = "../elsewhere.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": bad}))
    db = tmp_path / "registry.db"
    assert "not to a file name in the folder" in refusal(db, "add", str(folder))
    moved = dict(index["weight_map"])
    key = next(iter(moved))
    moved[key] = next(f for f in set(moved.values()) if f != moved[key])  # the index disagrees with a shard
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": moved}))
    assert "its tensors are not those model.safetensors.index.json assigns to it" in refusal(
        db, "add", str(folder)
    )
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model-00002-of-00002.safetensors").unlink()
    assert "missing: model.safetensors.index.json lists it" in refusal(db, "add", str(folder))
    assert not db.exists()  # the refused first add left no registry behind


def test_folder_with_other_weight_files_names_them(tmp_path: Path) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    torch.save(cnn_state(), folder / "epoch10.pt")
    line = refusal(tmp_path / "registry.db", "add", str(folder))
    assert "a folder without model weights" in line and "epoch10.pt" in line


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/chenyaofo/pytorch-cifar-models/releases/download/resnet/cifar10_resnet20.pt",
        "hf://timm/resnet18.a1_in1k",
        "s3://bucket/model.safetensors",
    ],
)
def test_urls_are_refused_as_unsupported_saying_to_download_first(tmp_path: Path, url: str) -> None:
    line = refusal(tmp_path / "registry.db", "add", url)
    assert url in line and "it is a URL" in line and "download it first" in line
    assert "no such file" not in line
    with pytest.raises(zoo.CheckpointError, match="it is a URL"):
        zoo.Registry(tmp_path / "r.db").add(Path(url))  # a path mangles it to https:/...: still a URL


def test_special_files_in_a_folder_are_refused_not_read(tmp_path: Path) -> None:
    folder = hf_folder(tmp_path / "model", cnn_state())
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to("/dev/zero")  # reading it would never end
    assert "config.json: not a regular file" in refusal(tmp_path / "registry.db", "add", str(folder))
    (folder / "config.json").unlink()
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to("/dev/zero")
    assert "model.safetensors: not a regular file" in refusal(tmp_path / "registry.db", "add", str(folder))
