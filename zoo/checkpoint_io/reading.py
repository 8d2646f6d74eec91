"""The one entry point, :func:`read_checkpoint`: a file, module or state dict to a :class:`ReadCheckpoint`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from torch import nn

from zoo.checkpoint_io.folders import is_url, read_model_folder, refuse_url
from zoo.checkpoint_io.formats import (
    PICKLE_MAGIC,
    ZIP_MAGIC,
    check_names,
    check_tensors,
    check_zip,
    looks_like_safetensors,
    safetensors_load,
    torch_load,
)
from zoo.checkpoint_io.prefixes import keep_prefixed
from zoo.checkpoint_io.weight_sets import ReadCheckpoint, unwrap
from zoo.errors import (
    CheckpointError,
    ZooError,
    show,
)

CheckpointLike = Union[str, os.PathLike, nn.Module, Mapping[str, Any]]


def read_checkpoint(
    obj: CheckpointLike, *, weights: str | None = None, strip_prefix: str | None = None
) -> ReadCheckpoint:
    """Tensors of a file, module or state dict; raises :class:`CheckpointError` on anything else.

    ``weights`` names the weight set to take from a checkpoint that holds several (``'state_dict_ema'``; see
    the module's docstring); ``strip_prefix`` removes a prefix from the tensor names and keeps only the names
    that carry it (``''``: strip no prefix beyond the wrappers, try none). Wrapper prefixes (``module.``,
    ``_orig_mod.``) are removed; what was chosen is in :meth:`ReadCheckpoint.notes`.
    """
    if weights is not None and not isinstance(weights, str):
        raise ZooError(
            f"weights must name a weight set of the checkpoint (a key such as 'state_dict_ema'), "
            f"not {show(weights)}"
        )
    if strip_prefix is not None and not isinstance(strip_prefix, str):
        raise ZooError(f"strip_prefix must be a string such as 'model.', not {show(strip_prefix)}")
    if isinstance(obj, (str, os.PathLike)):
        text = os.fspath(obj)
        if isinstance(text, str) and is_url(text) and not os.path.exists(text):
            raise refuse_url(text)
        path = Path(obj)
        read = _read_folder(path, weights) if path.is_dir() else _read_file(path, weights)
    elif isinstance(obj, nn.Module):
        read = unwrap(dict(obj.state_dict()), f"module {type(obj).__name__}", weights=weights)
    elif isinstance(obj, Mapping):
        read = unwrap(dict(obj), "state dict", weights=weights)
    else:
        raise CheckpointError(
            repr(type(obj).__name__),
            "unsupported checkpoint type",
            "pass a .safetensors/.pt/.pth/.th/.ckpt path, a model folder (model.safetensors), an nn.Module "
            "or a state dict",
        )
    check_names(read.state_dict, read.source)
    if strip_prefix is not None:
        keep_prefixed(read, strip_prefix)
    read.strip("")  # wrapper prefixes only
    check_tensors(read.state_dict, read.source)
    return read


def _source(path: Path) -> str:
    return str(path) if str(path).isprintable() else repr(str(path))[1:-1]  # control characters escaped


def _read_folder(path: Path, weights: str | None = None) -> ReadCheckpoint:
    src = _source(path)
    try:
        return read_model_folder(path, src, weights)
    except OSError as exc:
        raise CheckpointError(src, f"cannot read the folder ({exc})", "check its permissions") from None


def _read_file(path: Path, weights: str | None = None) -> ReadCheckpoint:
    src = _source(path)
    try:
        if not path.is_file():
            raise CheckpointError(src, "no such file (or not a regular file)", "check the path")
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(16)
    except (OSError, ValueError) as exc:  # unreadable, or a path the OS cannot represent (a NUL byte)
        raise CheckpointError(src, f"cannot open it ({exc})", "check the path and its permissions") from None
    if size == 0:
        raise CheckpointError(src, "the file is empty (0 bytes)", "re-download or re-save it")
    # A .safetensors file is only ever parsed as safetensors (never unpickled, even weights-only). Others go
    # by their magic bytes, not their suffix: a .pt holding safetensors is read as safetensors, and a
    # safetensors file whose tensor data happens to end like a zip directory is never handed to the unpickler.
    if path.suffix == ".safetensors":
        if head[:4] == ZIP_MAGIC or head[:2] in PICKLE_MAGIC:
            raise CheckpointError(
                src,
                "it is named .safetensors but holds a pickled torch file, and zoo never "
                "unpickles a .safetensors file",
                "rename it to .pt if it should hold weights "
                "(it is then read weights-only), or re-save it with safetensors",
            )
        return unwrap(safetensors_load(path, src), src, path.stem, weights)
    if head[:4] == ZIP_MAGIC:
        check_zip(path, src)
        return unwrap(torch_load(path, src), src, path.stem, weights)
    if head[:2] in PICKLE_MAGIC:
        return unwrap(torch_load(path, src), src, path.stem, weights)
    if looks_like_safetensors(head, size):
        return unwrap(safetensors_load(path, src), src, path.stem, weights)
    raise CheckpointError(
        src,
        "not a safetensors or torch file (unknown format)",
        "save weights with safetensors.torch.save_file or torch.save(state_dict)",
    )
