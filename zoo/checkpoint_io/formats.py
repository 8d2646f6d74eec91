"""Reading checkpoint files safely: safetensors headers checked before anything is allocated, torch files
only through the weights-only unpickler (zip layout checked first), and the checks every read tensor
passes (names, dtypes, finite sizes).
"""

from __future__ import annotations

import json
import math
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load

from zoo.errors import (
    CheckpointError,
    InvalidWeightsError,
    UnsafeCheckpointError,
    show,
)

ALLOWED_DTYPES = {  # dtypes zoo stores; anything else is refused
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
MAX_DIMS = 64  # dimensions of one tensor (torch's own limit)
MAX_TENSOR_NAME = 1024  # characters of one tensor name
ST_ITEM_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}  # safetensors dtypes of ALLOWED_DTYPES, with their item sizes
ST_OTHER_DTYPES = {
    "U16",
    "U32",
    "U64",
    "F8_E4M3",
    "F8_E5M2",
    "F8_E4M3FNUZ",
    "F8_E5M2FNUZ",
    "F8_E8M0",
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "C64",
    "C128",
}  # valid safetensors dtypes zoo does not store
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip format
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")  # torch's legacy format, raw pickles
_UNSAFE_RE = (
    re.compile(  # the weights-only unpickler refusing something that is not a tensor or plain container
        r"Unsupported (global|operand)|is blocked|Can only (build|create|append|extend|\w+ for dict)|"
        r"Only persistent_load of storage|NEWOBJ|must be imported to load"
    )
)


def check_names(state_dict: Mapping[str, Any], source: str) -> None:
    """Refuse an empty state dict and tensor names that are not strings, hold control characters or are
    absurdly long (a name is never used as a path, but it is printed, logged and matched against layouts)."""
    if not state_dict:
        raise CheckpointError(source, "holds no tensors", "save the model's state_dict()")
    for name in state_dict:
        if not isinstance(name, str):
            raise CheckpointError(
                source,
                f"has a tensor named by a {type(name).__name__} ({show(name)}), not a string",
                "save a state dict (string keys)",
            )
        if len(name) > MAX_TENSOR_NAME:
            raise CheckpointError(
                source,
                f"tensor name {show(name)} is {len(name)} characters long (at most {MAX_TENSOR_NAME})",
                "rename the tensor",
            )
        if not name.isprintable() or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise CheckpointError(
                source, f"tensor name {show(name)} contains a control character", "rename the tensor"
            )


def looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{"


def _corrupt(src: str, reason: str) -> CheckpointError:
    return CheckpointError(src, f"corrupt safetensors file: {reason}", "re-download or re-save the file")


def safetensors_load(path: Path, src: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, after checking its header ourselves (clear errors, no surprises).

    The header must be a JSON object of tensor entries (``dtype``, ``shape``, ``data_offsets``) and an
    optional ``__metadata__`` of strings; every dtype one zoo stores; offsets in range, in order, without
    gaps or overlaps; every tensor's byte count equal to its shape times its item size (Python integers:
    no overflow); and the data ending exactly at the end of the file.
    """
    src = src or str(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 8:
        raise CheckpointError(
            src,
            f"truncated: {len(raw)} bytes is shorter than a safetensors header",
            "re-download or re-save the file",
        )
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(raw):
        raise CheckpointError(
            src,
            f"corrupt or truncated safetensors header (declares {n} header bytes, file has {len(raw)})",
            "re-download or re-save the file",
        )
    try:
        header = json.loads(raw[8 : 8 + n])
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise _corrupt(src, "the header is not JSON") from None
    end = _check_safetensors_header(header, src)
    if 8 + n + end != len(raw):
        raise CheckpointError(
            src,
            f"truncated or padded: the header describes {8 + n + end} bytes, the file has {len(raw)}",
            "re-download or re-save the file",
        )
    try:
        return st_load(raw)
    except Exception as exc:  # safetensors is a parser: whatever it refuses is a broken file
        raise _corrupt(src, f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_safetensors_header(header: Any, src: str) -> int:
    """Validate a parsed safetensors header; returns the number of data bytes it describes."""
    if not isinstance(header, dict):
        raise _corrupt(src, "the header is not a JSON object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise _corrupt(src, "__metadata__ must map strings to strings")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        what = f"tensor {show(name)}"
        if not isinstance(info, dict):
            raise _corrupt(src, f"{what} is described by a {type(info).__name__}, not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            raise _corrupt(src, f"{what} has no dtype")
        if dtype not in ST_ITEM_BYTES:
            if dtype in ST_OTHER_DTYPES:
                raise InvalidWeightsError(
                    name,
                    f"has dtype {dtype}, which zoo does not store (from {src}); "
                    "convert it to a float or integer type zoo accepts",
                )
            raise _corrupt(src, f"{what} has unknown dtype {show(dtype)}")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise _corrupt(src, f"{what} has shape {show(shape)}, not a list of non-negative integers")
        if len(shape) > MAX_DIMS:
            raise _corrupt(src, f"{what} has {len(shape)} dimensions (at most {MAX_DIMS})")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]
        ):
            raise _corrupt(
                src, f"{what} has data_offsets {show(offsets)}, not [begin, end] with 0 <= begin <= end"
            )
        need = math.prod(shape) * ST_ITEM_BYTES[dtype]  # Python integers: a huge shape cannot overflow
        if need != offsets[1] - offsets[0]:
            raise _corrupt(
                src,
                f"{what} of shape {show(shape, 60)} and dtype {dtype} needs {need} bytes, its "
                f"offsets span {offsets[1] - offsets[0]}",
            )
        spans.append((offsets[0], offsets[1], what))
    spans.sort()
    pos = 0
    for begin, stop, what in spans:
        if begin != pos:
            raise _corrupt(
                src,
                f"{what} starts at byte {begin} of the data, expected {pos} "
                f"({'overlapping' if begin < pos else 'a gap before it'})",
            )
        pos = stop
    return pos


def check_zip(path: Path, src: str) -> None:
    """Refuse zip archives torch.save never writes: unreadable directories and compressed (zip-bomb)
    entries."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except Exception as exc:  # zipfile is a parser: whatever it refuses is a broken file
        with open(path, "rb") as fh:
            starts_well = fh.read(4) == b"PK\x03\x04"
        if starts_well and "not a zip file" in str(exc):  # the archive's directory, at its end, is missing
            raise _broken(src, path, EOFError("the zip directory at the end is missing")) from None
        raise CheckpointError(
            src,
            f"corrupt torch file (bad zip archive: {str(exc)[:200]})",
            "re-download or re-save it",
        ) from None
    packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise CheckpointError(
            src,
            f"the archive holds compressed entries (e.g. {show(packed[0])}), which torch.save never writes",
            "re-save it with torch.save(state_dict, path)",
        )


def torch_load(path: Path, src: str | None = None) -> Any:
    """``torch.load(weights_only=True)``: pickled code is refused before anything runs
    (UnsafeCheckpointError), any other failure is a broken file (CheckpointError): a truncated one says so.
    torch's warnings about the pickle (protocol, ``weights_only`` defaults) are not the user's business and
    are kept off the terminal."""
    src = src or str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # e.g. "Detected pickle protocol 4", FutureWarning on weights_only
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        if _UNSAFE_RE.search(str(exc)) and not _cut_short(str(exc)):
            raise UnsafeCheckpointError(src, _short_reason(str(exc))) from None
        raise _broken(src, path, exc) from None
    except (
        Exception
    ) as exc:  # the weights-only unpickler and torch's readers raise many kinds on broken input
        raise _broken(src, path, exc) from None


_TRUNCATED_RE = re.compile(r"unexpected EOF|EOF|exhausted|truncat|ran out of input", re.IGNORECASE)


def _cut_short(message: str) -> bool:
    """Whether a weights-only refusal names a global cut off mid-name (``GLOBAL torch.``): a truncated file,
    not pickled code."""
    mt = re.search(r"GLOBAL (\S*)", message)
    return mt is not None and (not mt[1] or mt[1].endswith("."))


def _broken(src: str, path: Path, exc: BaseException) -> CheckpointError:
    """The refusal of a torch file that cannot be read: truncated (it ends before its data do) or corrupt."""
    try:
        size = f"{path.stat().st_size:,} bytes"
    except OSError:
        size = "its size unknown"
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, EOFError) or _TRUNCATED_RE.search(text) or _cut_short(text):
        return CheckpointError(
            src,
            f"the torch file is truncated: it ends ({size}) before its data do",
            "re-download or re-copy it (compare its size with the original)",
        )
    return CheckpointError(
        src,
        f"corrupt torch file ({type(exc).__name__}: {_detail(exc)})",
        "re-download or re-save it",
    )


def _detail(exc: BaseException) -> str:
    """The line of an exception's message that says what went wrong (torch wraps it in advice)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln:
            return ln.split("error:", 1)[1].strip()[:200]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def _short_reason(message: str) -> str:
    for line in message.splitlines():
        line = line.strip()
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.split(":", 1)[-1].strip()[:200]
    mt = _UNSAFE_RE.search(message)
    return message[mt.start() :].splitlines()[0][:200] if mt else "refused by the weights-only loader"


def check_tensors(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse dtypes zoo does not store, sparse/meta tensors, and NaN/Inf values."""
    for name, t in state_dict.items():
        if t.dtype not in ALLOWED_DTYPES:
            raise InvalidWeightsError(name, f"has dtype {t.dtype}, which zoo does not store (from {source})")
        if t.layout != torch.strided:
            raise InvalidWeightsError(
                name, f"is a {t.layout} tensor (from {source}); convert it with .to_dense()"
            )
        if t.device.type == "meta":
            raise InvalidWeightsError(name, f"is on the 'meta' device and holds no values (from {source})")
        # A NaN or Inf anywhere makes the sum non-finite: one cheap reduction, the exact count only on failure
        # (a finite tensor whose sum overflows passes the exact check).
        if t.dtype.is_floating_point and t.numel() and not math.isfinite(float(t.sum())):
            n_bad = int((~torch.isfinite(t)).sum())
            if n_bad:
                raise InvalidWeightsError(name, f"holds {n_bad} NaN/Inf value(s) (from {source})")
