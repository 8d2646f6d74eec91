"""Reading what users hand to :meth:`Registry.add`: files, modules and state dicts, safely.

Pickled torch files are read only with ``torch.load(weights_only=True, map_location="cpu")``; nothing else
ever unpickles. Checkpoint dicts with a nested ``state_dict``/``model`` are unwrapped and wrapper prefixes
(``module.``, ``_orig_mod.``) stripped.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import nn

from zoo.errors import CheckpointError, InvalidWeightsError, UnsafeCheckpointError
from zoo.family import strip_wrapper_prefixes

CheckpointLike = Union[str, os.PathLike, nn.Module, Mapping[str, Any]]
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights", "params")  # tried in this order
ALLOWED_DTYPES = {  # dtypes zoo stores; anything else is refused
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


@dataclass
class ReadCheckpoint:
    """Tensors read from a source, with what was learnt on the way."""

    state_dict: dict[str, torch.Tensor]
    source: str  # a path or a short description of the object
    extra: dict[str, Any] = field(default_factory=dict)  # scalars found beside the weights (e.g. best_prec1)
    default_name: str | None = None  # a name suggested by the source (the file stem)


def read_checkpoint(obj: CheckpointLike) -> ReadCheckpoint:
    """Tensors of a file, module or state dict; raises :class:`CheckpointError` on anything else."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        read = _read_file(path)
    elif isinstance(obj, nn.Module):
        read = ReadCheckpoint(dict(obj.state_dict()), f"module {type(obj).__name__}")
    elif isinstance(obj, Mapping):
        read = _unwrap(dict(obj), "state dict")
    else:
        raise CheckpointError(repr(type(obj).__name__), "unsupported checkpoint type",
                              "pass a .safetensors/.pt/.pth/.th path, an nn.Module or a state dict")
    read.state_dict = strip_wrapper_prefixes(read.state_dict)
    check_tensors(read.state_dict, read.source)
    return read


def _read_file(path: Path) -> ReadCheckpoint:
    src = str(path)
    if not path.is_file():
        raise CheckpointError(src, "no such file", "check the path")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(src, "the file is empty (0 bytes)", "re-download or re-save it")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if zipfile.is_zipfile(path) or head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return _unwrap(_torch_load(path), src, default_name=path.stem)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head, size):
        return ReadCheckpoint(_safetensors_load(path, size), src, default_name=path.stem)
    raise CheckpointError(src, "not a safetensors or torch file (unknown format)",
                          "save weights with safetensors.torch.save_file or torch.save(state_dict)")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 8:
        return False
    (n,) = struct.unpack("<Q", head)
    return 2 <= n <= min(size - 8, MAX_HEADER_BYTES)


def _safetensors_load(path: Path, size: int) -> dict[str, torch.Tensor]:
    src = str(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 8:
        raise CheckpointError(src, f"truncated: {len(raw)} bytes is shorter than a safetensors header")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(raw):
        raise CheckpointError(src, f"corrupt or truncated safetensors header (declares {n} header bytes, file has "
                                   f"{len(raw)})", "re-download or re-save the file")
    try:
        header = json.loads(raw[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(src, "corrupt safetensors header (not JSON)", "re-download or re-save the file") from None
    if not isinstance(header, dict):
        raise CheckpointError(src, "corrupt safetensors header (not a JSON object)")
    end = max((int(v["data_offsets"][1]) for k, v in header.items()
               if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v), default=0)
    if 8 + n + end != len(raw):
        raise CheckpointError(src, f"truncated or padded: the header describes {8 + n + end} bytes, the file has "
                                   f"{len(raw)}", "re-download or re-save the file")
    try:
        return st_load(raw)
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as exc:
        raise CheckpointError(src, f"corrupt safetensors file ({exc})", "re-download or re-save the file") from None


def _torch_load(path: Path) -> Any:
    src = str(path)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        detail = str(exc).split("\n")[0]
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise UnsafeCheckpointError(src, _short_reason(str(exc))) from None
        raise CheckpointError(src, f"corrupt pickle ({detail})", "re-download or re-save the file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, struct.error, OSError) as exc:
        msg = str(exc).split("\n")[0]
        return_reason = "truncated or corrupt torch file"
        raise CheckpointError(src, f"{return_reason} ({msg})", "re-download or re-save the file") from None
    except Exception as exc:  # anything the restricted unpickler refuses in an unusual way
        raise UnsafeCheckpointError(src, _short_reason(str(exc))) from None


def _short_reason(message: str) -> str:
    for line in message.splitlines():
        line = line.strip()
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.split(":", 1)[-1].strip()[:200]
    return message.splitlines()[0][:200] if message else "refused by the weights-only loader"


def _unwrap(obj: Any, src: str, default_name: str | None = None) -> ReadCheckpoint:
    if isinstance(obj, nn.Module):  # cannot come from weights_only, but a user may pass one in a dict
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointError(src, f"holds a {type(obj).__name__}, not a dict of tensors",
                              "save model.state_dict(), not the model object or a list")
    extra: dict[str, Any] = {}
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        nested = next((k for k in NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            bad = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
            raise CheckpointError(src, f"entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor, and there is "
                                       f"no nested state dict under {', '.join(NESTED_KEYS)}",
                                  "pass the state dict itself")
        extra = {k: v for k, v in obj.items() if k != nested and _is_scalar(v)}
        obj = obj[nested]
        if isinstance(obj, nn.Module):
            obj = obj.state_dict()
    sd = dict(obj)
    if not sd:
        raise CheckpointError(src, "holds no tensors")
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(src, f"entry {k!r} is a {type(v).__name__}, not a tensor", "pass a state dict")
    return ReadCheckpoint(sd, src, extra, default_name)


def _is_scalar(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return v.numel() == 1
    return isinstance(v, (int, float, str, bool)) and not (isinstance(v, float) and not math.isfinite(v))


def scalar_extras(extra: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-friendly copies of the scalars found beside the weights."""
    out: dict[str, Any] = {}
    for k, v in extra.items():
        out[str(k)] = v.item() if isinstance(v, torch.Tensor) else v
    return out


def check_tensors(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse dtypes zoo does not store, sparse/meta tensors, and NaN/Inf values."""
    for name, t in state_dict.items():
        if t.dtype not in ALLOWED_DTYPES:
            raise InvalidWeightsError(name, f"has dtype {t.dtype}, which zoo does not store (from {source})")
        if t.layout != torch.strided:
            raise InvalidWeightsError(name, f"is a {t.layout} tensor; convert it with .to_dense()")
        if t.device.type == "meta":
            raise InvalidWeightsError(name, "is on the 'meta' device and holds no values")
        # A NaN or Inf anywhere makes the sum non-finite: one cheap reduction, the exact count only on failure
        # (a finite tensor whose sum overflows passes the exact check).
        if t.dtype.is_floating_point and t.numel() and not math.isfinite(float(t.sum())):
            n_bad = int((~torch.isfinite(t)).sum())
            if n_bad:
                raise InvalidWeightsError(name, f"holds {n_bad} NaN/Inf value(s) (from {source})")
