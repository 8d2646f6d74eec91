"""Model folders in the Hugging Face layout, and URLs (refused: zoo downloads nothing).

A folder is read when it holds its weights under the names ``transformers``/``timm``/``huggingface_hub`` save
them (:data:`WEIGHT_FILES`, safetensors first): one ``model.safetensors``, or shards
(``model-00001-of-00002.safetensors``) listed by ``model.safetensors.index.json``'s ``weight_map``. Its
``config.json``, when there is one, is kept in the checkpoint's metadata (``source_config``), with the files
read (``source_files``). Shards are checked: every file the index names is a plain file name in the folder,
every tensor is in the shard the index says and in no other.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from zoo.checkpoint_io.formats import safetensors_load, torch_load
from zoo.checkpoint_io.weight_sets import ReadCheckpoint, unwrap
from zoo.errors import CheckpointError, show

# (single file, index of shards), in the order they are looked for
WEIGHT_FILES = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)
CONFIG_FILE = "config.json"
MAX_JSON_BYTES = 16 * 2**20  # an index or config larger than this is not one
_URL_RE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]+://|(?:https?|s3|gs|hf|ftp|file):/(?!/))")


def is_url(text: str) -> bool:
    """Whether ``text`` is a URL (``https://...``, ``s3://...``) or one a path mangled (``https:/...``)."""
    return bool(_URL_RE.match(text))


def refuse_url(url: str) -> CheckpointError:
    return CheckpointError(
        show(url, 120),
        "it is a URL, and zoo reads local files and folders only (it downloads nothing)",
        "download it first (e.g. `curl -LO URL`, or `huggingface-cli download REPO --local-dir DIR` for a "
        "Hugging Face model), then add the downloaded file or folder",
    )


def read_model_folder(path: Path, src: str, weights: str | None) -> ReadCheckpoint:
    """The weights of a Hugging Face-style model folder (see the module's docstring)."""
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    for single, index in WEIGHT_FILES:
        if index in names and single not in names:
            read = _read_shards(path, index, src, weights)
            break
        if single in names:
            read = _read_one(path / single, src, weights)
            read.default_name = path.resolve().name
            break
    else:
        present = sorted(n for n in names if n.endswith((".safetensors", ".pt", ".pth", ".bin", ".ckpt")))
        hint = (
            f"add one of the weight files in it instead ({', '.join(map(show, present[:3]))})"
            if present
            else "check the path: name a weights file, or a folder holding model.safetensors"
        )
        looked = ", ".join(n for pair in WEIGHT_FILES for n in pair)
        raise CheckpointError(src, f"it is a folder without model weights (looked for {looked})", hint)
    if CONFIG_FILE in names:
        config = _read_json(path / CONFIG_FILE, f"{src}/{CONFIG_FILE}")
        if not isinstance(config, dict):
            raise CheckpointError(
                f"{src}/{CONFIG_FILE}", "it is not a JSON object", "fix or remove the config file"
            )
        read.config = config
    return read


def _read_one(file: Path, src: str, weights: str | None) -> ReadCheckpoint:
    fsrc = f"{src}/{file.name}"
    if not file.is_file():
        raise CheckpointError(fsrc, "not a regular file", "check the folder")
    obj = safetensors_load(file, fsrc) if file.suffix == ".safetensors" else torch_load(file, fsrc)
    read = unwrap(obj, fsrc, None, weights)
    read.source = src
    read.files = [file.name]
    return read


def _read_json(file: Path, src: str) -> Any:
    try:
        if not file.is_file():  # a FIFO or /dev/zero under that name would block or never end
            raise CheckpointError(src, "not a regular file", "check the folder")
        if file.stat().st_size > MAX_JSON_BYTES:
            raise CheckpointError(src, f"larger than {MAX_JSON_BYTES} bytes", "check the file")
        return json.loads(file.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(src, f"not readable JSON ({str(exc)[:120]})", "re-download the model") from None


def _read_shards(path: Path, index: str, src: str, weights: str | None) -> ReadCheckpoint:
    isrc = f"{src}/{index}"
    data = _read_json(path / index, isrc)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            isrc, "it has no 'weight_map' of tensor names to files", "re-download the model"
        )
    shards: dict[str, set[str]] = {}
    for tensor, file in weight_map.items():
        if (
            not isinstance(tensor, str)
            or not isinstance(file, str)
            or Path(file).name != file
            or file in ("", ".", "..")
        ):
            raise CheckpointError(
                isrc,
                f"it maps {show(tensor)} to {show(file)}, not to a file name in the folder",
                "re-download the model",
            )
        shards.setdefault(file, set()).add(tensor)
    state: dict[str, torch.Tensor] = {}
    for file, wanted in sorted(shards.items()):
        fsrc = f"{src}/{file}"
        if not (path / file).is_file():
            raise CheckpointError(fsrc, f"missing: {index} lists it", "re-download the model (every shard)")
        obj = (
            safetensors_load(path / file, fsrc)
            if file.endswith(".safetensors")
            else torch_load(path / file, fsrc)
        )
        if not isinstance(obj, dict) or set(obj) != wanted:
            held = set(obj) if isinstance(obj, dict) else set()
            odd = sorted(map(str, (wanted - held) | (held - wanted)))
            raise CheckpointError(
                fsrc,
                f"its tensors are not those {index} assigns to it (e.g. {', '.join(map(show, odd[:3]))})",
                "re-download the model (every shard and the index)",
            )
        state.update(obj)
    read = unwrap(state, src, path.resolve().name, weights)
    read.files = sorted(shards)
    return read


__all__ = ["CONFIG_FILE", "WEIGHT_FILES", "is_url", "read_model_folder", "refuse_url"]
