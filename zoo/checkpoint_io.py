"""Reading what users hand to :meth:`Registry.add`: files, modules and state dicts, safely.

Pickled torch files are read only with ``torch.load(weights_only=True, map_location="cpu")``; nothing else
ever unpickles.

Foreign conventions, and what is recorded in the checkpoint's metadata (:meth:`ReadCheckpoint.notes`):

- **Weight sets.** A checkpoint dict may hold its weights under a key (``state_dict`` in PyTorch Lightning's
  ``.ckpt``, ``model``, ``model_state_dict``, ``module`` in DeepSpeed's files, ``net``, ``params``, ...,
  searched :data:`MAX_NESTING` levels deep under such keys) and beside them optimizer state, schedulers,
  hyper-parameters and scalars. A *weight set* is a dict of tensors; when there is exactly one, or exactly
  one under a conventional name (:data:`NESTED_KEYS`, or averaged weights: ``state_dict_ema``, ``model_ema``,
  ``ema``, ``swa_model``, ...), it is taken. When several are (training and EMA weights, timm's
  ``state_dict`` + ``state_dict_ema``), zoo refuses rather than choose silently, listing the sets and the
  fix: ``weights='state_dict_ema'`` (``--weights`` on the command line, ``"weights"`` in a sidecar). Recorded:
  ``source_weights`` (the set taken), ``source_weight_sets`` (all of them, when more than one),
  ``source_extra`` (the scalars beside them: ``epoch``, ``best_prec1``) and ``source_left_out`` (everything
  else the file held: ``optimizer``, the other weight set, ...). Nothing is dropped unrecorded.
- **Name prefixes.** Wrapper prefixes (``module.`` from DataParallel/DDP, ``_orig_mod.`` from torch.compile)
  are always removed when every name carries them. Any other prefix that every name shares (Lightning's
  ``model.``, ``net.``, ``backbone.``, ...) is removed when, and only when, that is what makes the weights fit
  (:func:`detect_weights`, :func:`fit_prefix`). ``strip_prefix='model.'`` removes a prefix explicitly and
  keeps only the names that carry it (the others are recorded as left out). Recorded: ``stripped_prefix``.
- **Several networks in one state dict.** A training module may keep its EMA copy as a submodule: one
  ``state_dict`` holding ``model.*`` and ``model_ema.*`` (or ``teacher.*`` and ``student.*``, ``net.*`` and
  ``ema_net.*``), each a whole network. Such a state dict is refused like several weight sets, naming each
  prefix and the fix: ``strip_prefix='model_ema.'`` (``--strip-prefix``, ``"strip_prefix"`` in a sidecar).
  Recorded: ``stripped_prefix``, and the other network in ``source_left_out`` (``'state_dict/model.* (10
  tensors)'``).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import struct
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from safetensors.torch import load as st_load
from torch import nn

from zoo.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    InvalidWeightsError,
    UnknownFamilyError,
    UnsafeCheckpointError,
    ZooError,
    show,
)
from zoo.family import ArchitectureFamily
from zoo.plugins import detect_arch
from zoo.records import ArchSpec

CheckpointLike = Union[str, os.PathLike, nn.Module, Mapping[str, Any]]
NESTED_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
)  # conventional names of a checkpoint's (training) weights, searched for weight sets
AVERAGED_RE = re.compile(r"(?:^|[_./-])(?:ema|swa|averaged)(?:$|[_./-])", re.I)  # averaged weights: EMA, SWA
WRAPPER_PREFIXES = (
    "module.",
    "_orig_mod.",
)  # DataParallel/DDP, torch.compile: always removed (as families do)
MAX_NESTING = 3  # levels of dicts under conventional keys searched for weight sets
MAX_PREFIX_TRIES = 4  # shared prefixes tried, shortest first, when the weights do not fit as they are
MAX_LEFT_OUT = 50  # entries named in the source_left_out note (then a count)
MAX_PREFIX_SETS = 8  # groups of names under one prefix tried, biggest first, as whole networks of their own
TOP = ""  # the name of the weight set made of the top-level tensors
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


@dataclass
class ReadCheckpoint:
    """Tensors read from a source, with what was learnt and chosen on the way."""

    state_dict: dict[str, torch.Tensor]
    source: str  # a path or a short description of the object
    extra: dict[str, Any] = field(default_factory=dict)  # scalars found beside the weights (e.g. best_prec1)
    default_name: str | None = None  # a name suggested by the source (the file stem)
    weights: str | None = (
        None  # the weight set taken ('state_dict', 'model/ema'); None: the source is the weights
    )
    weight_sets: tuple[str, ...] = ()  # every weight set found, when there was more than one
    stripped_prefix: str = ""  # removed from the front of every tensor name ('module.', 'model.')
    prefix_given: bool = False  # the user chose the prefix (strip_prefix=): no other is tried
    left_out: list[str] = field(default_factory=list)  # what the source held besides the weights and scalars

    def notes(self) -> dict[str, Any]:
        """What was found and chosen, for the checkpoint's metadata (JSON values; empty for a plain state
        dict)."""
        out: dict[str, Any] = {}
        if self.extra:
            out["source_extra"] = scalar_extras(self.extra)
        if self.weights is not None:
            out["source_weights"] = self.weights
        if len(self.weight_sets) > 1:
            out["source_weight_sets"] = list(self.weight_sets)
        if self.stripped_prefix:
            out["stripped_prefix"] = self.stripped_prefix
        if self.left_out:
            more = len(self.left_out) - MAX_LEFT_OUT
            out["source_left_out"] = self.left_out[:MAX_LEFT_OUT] + (
                [f"... and {more} more"] if more > 0 else []
            )
        return out

    def strip(self, prefix: str) -> None:
        """Remove ``prefix`` from every tensor name (all carry it), then any wrapper prefix under it;
        recorded."""
        self.state_dict = {k[len(prefix) :]: v for k, v in self.state_dict.items()}
        self.stripped_prefix += prefix
        changed = True
        while changed and self.state_dict:
            changed = False
            for p in WRAPPER_PREFIXES:
                if all(k.startswith(p) and len(k) > len(p) for k in self.state_dict):
                    self.state_dict = {k[len(p) :]: v for k, v in self.state_dict.items()}
                    self.stripped_prefix += p
                    changed = True


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
        path = Path(obj)
        read = _read_file(path, weights)
    elif isinstance(obj, nn.Module):
        read = _unwrap(dict(obj.state_dict()), f"module {type(obj).__name__}", weights=weights)
    elif isinstance(obj, Mapping):
        read = _unwrap(dict(obj), "state dict", weights=weights)
    else:
        raise CheckpointError(
            repr(type(obj).__name__),
            "unsupported checkpoint type",
            "pass a .safetensors/.pt/.pth/.th/.ckpt path, an nn.Module or a state dict",
        )
    check_names(read.state_dict, read.source)
    if strip_prefix is not None:
        _keep_prefixed(read, strip_prefix)
    read.strip("")  # wrapper prefixes only
    check_tensors(read.state_dict, read.source)
    return read


def _keep_prefixed(read: ReadCheckpoint, prefix: str) -> None:
    """``strip_prefix=``: keep the names that start with ``prefix`` (``'model'`` means ``'model.'`` when some
    names go on with a dot: ``model_ema.*`` is then another weight set, not kept), without it; the others are
    left out, recorded (a group of them under one prefix as one entry: ``'model_ema.* (10 tensors)'``)."""
    read.prefix_given = True
    if not prefix:
        return
    names = list(read.state_dict)
    if not prefix.endswith(".") and any(n.startswith(prefix + ".") for n in names):
        prefix += "."
    kept = [n for n in names if n.startswith(prefix) and len(n) > len(prefix)]
    if not kept:
        raise CheckpointError(
            read.source,
            f"strip_prefix={show(prefix)} matches no tensor name (they look like "
            f"{', '.join(map(show, names[:3]))})",
            "pass the prefix the names share, or leave strip_prefix= out: a prefix that every "
            "name shares is removed when that makes the weights fit",
            keywords=("strip_prefix",),
        )
    keep = set(kept)
    read.left_out += [
        _path(read.weights or TOP, n)
        for n in _grouped([n for n in names if n not in keep], max(prefix.count("."), 1))
    ]
    read.state_dict = {n: read.state_dict[n] for n in kept}
    read.strip(prefix)


def _grouped(names: list[str], depth: int) -> list[str]:
    """``names`` for the record of what was left out: those sharing their first ``depth`` dotted parts with
    another name as one entry (``'model.* (10 tensors)'``), the others as they are; in order."""

    def key(n: str) -> str | None:
        parts = n.split(".")
        return ".".join(parts[: min(depth, len(parts) - 1)]) + "." if len(parts) > 1 else None

    counts = Counter(key(n) for n in names)
    out: list[str] = []
    listed: set[str] = set()
    for n in names:
        k = key(n)
        if k is None or counts[k] < 2:
            out.append(n)
        elif k not in listed:
            out.append(f"{k}* ({counts[k]} tensors)")
            listed.add(k)
    return out


def shared_prefixes(names: Iterable[str]) -> list[str]:
    """Dotted prefixes that every name starts with and that leave something of each, shortest first:
    ``['model.', 'model.backbone.']`` for ``model.backbone.conv.weight`` and ``model.backbone.fc.bias``."""
    parts = [n.split(".") for n in names]
    out: list[str] = []
    if not parts:
        return out
    for i, seg in enumerate(parts[0][:-1]):
        if len(out) == MAX_PREFIX_TRIES or any(len(p) <= i + 1 or p[i] != seg for p in parts):
            break
        out.append(".".join(parts[0][: i + 1]) + ".")
    return out


def _without(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state_dict.items()}


def _size(err: ArchitectureMismatchError) -> int:
    """How far weights are from an architecture: names missing or unexpected, plus one for a wrong shape."""
    return (
        len(err.missing)
        + len(err.unexpected)
        + (err.layer is not None or not (err.missing or err.unexpected))
    )


def _after(prefix: str, err: ZooError) -> ZooError:
    """``err``, saying that it is about the names without ``prefix``."""
    if err.args and isinstance(err.args[0], str):
        err.args = (
            f"with the prefix {prefix!r} that every tensor name carries removed, {err.args[0]}",
            *err.args[1:],
        )
    return err


def detect_weights(read: ReadCheckpoint) -> ArchSpec:
    """The architecture of ``read``'s weights, detected (:func:`zoo.plugins.detect_arch`).

    When no family recognises the names as they are but one does once a prefix that every name shares is
    removed (Lightning's ``model.``, ``net.``, ``backbone.``), that prefix is stripped from ``read`` and
    recorded. When nothing fits, the error is the most telling one: several whole networks under different
    prefixes (training and EMA copies: refused naming each), a near miss after removing a shared prefix, or
    the hint that the names under one prefix are an architecture (``strip_prefix=``), before "no family
    recognises it".
    """
    try:
        return detect_arch(read.state_dict)
    except (UnknownFamilyError, ArchitectureMismatchError) as exc:
        first: ZooError = exc
    if read.prefix_given:
        raise first
    near: tuple[str, ArchitectureMismatchError] | None = None
    prefixes = shared_prefixes(read.state_dict)
    for prefix in prefixes:
        try:
            spec = detect_arch(_without(read.state_dict, prefix))
        except ArchitectureMismatchError as exc:
            near = near or (prefix, exc)
            continue
        except UnknownFamilyError:
            continue
        read.strip(prefix)
        return spec
    several = _several_networks(read, lambda sd: detect_arch(sd).name)
    if several is not None:
        raise several
    if isinstance(first, UnknownFamilyError):
        if near is not None:
            raise _after(*near)
        hint = _part_fits(read, lambda sd: detect_arch(sd).name)
        if hint is not None:
            raise hint
        if prefixes:
            raise UnknownFamilyError(
                f"{first.what}, with or without the prefix(es) "
                f"{', '.join(map(repr, prefixes))} that every name carries",
                first.installed,
            )
    raise first


def fit_prefix(read: ReadCheckpoint, family: ArchitectureFamily, spec: ArchSpec) -> None:
    """With the architecture given (``arch=``): when the names do not fit ``spec`` as they are but do once a
    prefix that every name shares is removed, strip it from ``read`` (recorded). When nothing fits, raise the
    refusal of several networks under different prefixes that each fit (``model.`` + ``model_ema.``), else the
    mismatch of the closest try, saying which prefix it was with; when the names under one prefix fit, say
    ``strip_prefix=``. Returns quietly when the weights fit as they are (or :meth:`canonicalize` will say why
    not)."""
    err = family.mismatch(spec, read.state_dict)
    if err is None or read.prefix_given:
        return
    best: tuple[str, ArchitectureMismatchError] | None = None
    for prefix in shared_prefixes(read.state_dict):
        other = family.mismatch(spec, _without(read.state_dict, prefix))
        if other is None:
            read.strip(prefix)
            return
        if _size(other) < (_size(best[1]) if best else _size(err)):
            best = (prefix, other)

    def fits(sd: dict[str, torch.Tensor]) -> str:
        miss = family.mismatch(spec, sd)
        if miss is not None:
            raise miss
        return spec.name

    several = _several_networks(read, fits)
    if several is not None:
        raise several
    if best is not None:
        raise _after(*best)
    hint = _part_fits(read, fits)
    if hint is not None:
        raise hint


def _prefix_sets(
    state_dict: Mapping[str, torch.Tensor], fits: Callable[[dict[str, torch.Tensor]], str]
) -> list[tuple[str, str, int]]:
    """The partition of one flat state dict into networks under different prefixes (a training module's
    ``model.`` and ``model_ema.``, ``teacher.`` and ``student.``): ``(prefix, label, count)`` of each group of
    names under one prefix that ``fits`` an architecture on its own (``fits`` returns its label), the names
    grouped by their first dotted part, else (:data:`MAX_NESTING` levels down) by the part after the biggest
    group's prefix (``model.teacher.`` and ``model.student.`` beside a loss's ``criterion.weight``), at the
    first level where two or more groups fit; [] when there is none."""
    base = ""
    for _ in range(MAX_NESTING + 1):
        groups = Counter(
            base + k[len(base) :].split(".", 1)[0] + "."
            for k in state_dict
            if k.startswith(base) and "." in k[len(base) :]
        )
        found = []
        for prefix, count in groups.most_common(MAX_PREFIX_SETS):
            try:
                label = fits({k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)})
            except (UnknownFamilyError, ArchitectureMismatchError):
                continue
            found.append((prefix, label, count))
        if len(found) > 1:
            return found
        if not groups or found:  # nothing below, or one network beside other tensors (_part_fits' hint)
            break
        base, count = groups.most_common(1)[0]
        if count < 2:
            break
    return []


def _several_networks(
    read: ReadCheckpoint, fits: Callable[[dict[str, torch.Tensor]], str]
) -> CheckpointError | None:
    """The refusal of one state dict holding several whole networks under different prefixes (training and EMA
    copies: ``model.`` + ``model_ema.``), as :func:`_ambiguous` refuses several weight sets: naming each and
    the fix (``strip_prefix=``). None when there are not several."""
    sets = _prefix_sets(read.state_dict, fits)
    if len(sets) < 2:
        return None
    averaged = [p for p, _, _ in sets if AVERAGED_RE.search(p)]
    trained = [p for p, _, _ in sets if p not in averaged]
    listing = ", ".join(
        f"{p!r} ({n} tensors{' of averaged (EMA/SWA) weights' if p in averaged else ''}: a {label})"
        for p, label, n in sets
    )
    others = [k for k in read.state_dict if not any(k.startswith(p) for p, _, _ in sets)]
    rest = (
        f" ({len(others)} other tensor(s), e.g. {', '.join(map(show, others[:3]))}, belong to none of them)"
        if others
        else ""
    )
    if averaged and trained:
        fix = (
            f"pass strip_prefix={averaged[0]!r} for the averaged weights (usually the better ones: timm's "
            f"convention) or strip_prefix={trained[0]!r} for the training weights"
        )
    else:
        fix = f"pass {' or '.join(f'strip_prefix={p!r}' for p, _, _ in sets)}"
    return CheckpointError(
        read.source,
        f"its {len(read.state_dict)} tensors hold {len(sets)} whole networks under different "
        f"prefixes, {listing}, and zoo does not choose one silently{rest}",
        f"{fix}; the choice is recorded in the checkpoint's meta (stripped_prefix; the other tensors as "
        "source_left_out)",
        keywords=("strip_prefix",),
    )


def _part_fits(
    read: ReadCheckpoint, fits: Callable[[dict[str, torch.Tensor]], str]
) -> CheckpointError | None:
    """When most names share a first part (``model.``) but some do not (a Lightning module's ``criterion.``,
    SWA's ``n_averaged``) and the names under it are an architecture (``fits`` returns its label): the error
    that says ``strip_prefix=``. None otherwise."""
    firsts = Counter(k.split(".", 1)[0] + "." for k in read.state_dict if "." in k)
    if not firsts:
        return None
    prefix, count = firsts.most_common(1)[0]
    if count == len(read.state_dict) or 2 * count < len(read.state_dict):
        return None
    part = {k[len(prefix) :]: v for k, v in read.state_dict.items() if k.startswith(prefix)}
    try:
        label = fits(part)
    except (UnknownFamilyError, ArchitectureMismatchError):
        return None
    others = [k for k in read.state_dict if not k.startswith(prefix)]
    return CheckpointError(
        read.source,
        f"the {count} tensors under {prefix!r} are a {label}, but {len(others)} other(s) (e.g. "
        f"{', '.join(map(show, others[:3]))}) are not part of it",
        f"pass strip_prefix={prefix!r} to add those {count} "
        "(the others are recorded in the checkpoint's meta as left out)",
        keywords=("strip_prefix",),
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


def _read_file(path: Path, weights: str | None = None) -> ReadCheckpoint:
    src = str(path) if str(path).isprintable() else repr(str(path))[1:-1]  # control characters escaped
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
        return _unwrap(_safetensors_load(path, src), src, path.stem, weights)
    if head[:4] == ZIP_MAGIC:
        _check_zip(path, src)
        return _unwrap(_torch_load(path, src), src, path.stem, weights)
    if head[:2] in PICKLE_MAGIC:
        return _unwrap(_torch_load(path, src), src, path.stem, weights)
    if _looks_like_safetensors(head, size):
        return _unwrap(_safetensors_load(path, src), src, path.stem, weights)
    raise CheckpointError(
        src,
        "not a safetensors or torch file (unknown format)",
        "save weights with safetensors.torch.save_file or torch.save(state_dict)",
    )


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{"


def _corrupt(src: str, reason: str) -> CheckpointError:
    return CheckpointError(src, f"corrupt safetensors file: {reason}", "re-download or re-save the file")


def _safetensors_load(path: Path, src: str | None = None) -> dict[str, torch.Tensor]:
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


def _check_zip(path: Path, src: str) -> None:
    """Refuse zip archives torch.save never writes: unreadable directories and compressed (zip-bomb)
    entries."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except Exception as exc:  # zipfile is a parser: whatever it refuses is a broken file
        raise CheckpointError(
            src,
            f"truncated or corrupt torch file (bad zip archive: {str(exc)[:200]})",
            "re-download or re-save the file",
        ) from None
    packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise CheckpointError(
            src,
            f"the archive holds compressed entries (e.g. {show(packed[0])}), which torch.save never writes",
            "re-save it with torch.save(state_dict, path)",
        )


def _torch_load(path: Path, src: str | None = None) -> Any:
    """``torch.load(weights_only=True)``: pickled code is refused before anything runs
    (UnsafeCheckpointError), any other failure is a broken file (CheckpointError)."""
    src = src or str(path)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        if _UNSAFE_RE.search(str(exc)):
            raise UnsafeCheckpointError(src, _short_reason(str(exc))) from None
        raise CheckpointError(
            src,
            f"truncated or corrupt torch file (corrupt pickle: {_detail(exc)})",
            "re-download or re-save the file",
        ) from None
    except (
        Exception
    ) as exc:  # the weights-only unpickler and torch's readers raise many kinds on broken input
        raise CheckpointError(
            src,
            f"truncated or corrupt torch file ({type(exc).__name__}: {_detail(exc)})",
            "re-download or re-save the file",
        ) from None


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


@dataclass
class _Found:
    """What one walk over a checkpoint dict found."""

    sets: dict[str, dict[Any, torch.Tensor]] = field(
        default_factory=dict
    )  # weight sets by path ('model/ema')
    extra: dict[str, Any] = field(default_factory=dict)  # scalars by path
    other: list[str] = field(default_factory=list)  # paths of everything else (optimizer state, lists, ...)


def _path(parent: str, key: str) -> str:
    return key if parent == TOP else f"{parent}/{key}"


def _plain_key(key: Any) -> str | None:
    """A dict key usable in a path and in metadata: a short printable string (None for anything else)."""
    return (
        key if isinstance(key, str) and 0 < len(key) <= 128 and key.isprintable() and "/" not in key else None
    )


def _is_tensor_dict(v: Any) -> bool:
    return isinstance(v, Mapping) and bool(v) and all(isinstance(x, torch.Tensor) for x in v.values())


def _walk(obj: Mapping[Any, Any], path: str, depth: int, found: _Found) -> None:
    """Sort one level of a checkpoint dict: dicts of tensors are weight sets; dicts under conventional keys
    (:data:`NESTED_KEYS`, averaged weights) are searched in turn; scalars are notes; the rest is left out. The
    level's own tensors are a weight set too, unless other weight sets were found and they are all scalars
    (``best_prec1`` beside ``state_dict``: notes)."""
    before = len(found.sets)
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            continue
        key = _plain_key(k)
        name = _path(path, key) if key is not None else _path(path, show(k))
        if isinstance(v, nn.Module):  # cannot come from weights_only, but a user may pass one in a dict
            v = v.state_dict()
        if key is not None and _is_tensor_dict(v):
            found.sets[name] = dict(v)
        elif (
            key is not None
            and isinstance(v, Mapping)
            and v
            and depth < MAX_NESTING
            and (key in NESTED_KEYS or AVERAGED_RE.search(key))
        ):
            _walk(v, name, depth + 1, found)
        elif key is not None and _is_scalar(v):
            found.extra[name] = v
        else:
            found.other.append(name)
    if not tensors:
        return
    if len(found.sets) == before or not all(t.numel() <= 1 for t in tensors.values()):
        found.sets[path] = tensors
        return
    for k, v in tensors.items():
        key = _plain_key(k)
        if key is not None and _is_scalar(v):
            found.extra[_path(path, key)] = v
        else:
            found.other.append(_path(path, key if key is not None else show(k)))


def _set_label(name: str, tensors: Mapping[Any, Any]) -> str:
    averaged = " of averaged (EMA/SWA) weights" if AVERAGED_RE.search(name) else ""
    return f"{show(name) if name != TOP else 'the top-level tensors'} ({len(tensors)} tensors{averaged})"


def _unwrap(
    obj: Any, src: str, default_name: str | None = None, weights: str | None = None
) -> ReadCheckpoint:
    """The weights of a loaded checkpoint object: the weight set chosen by ``weights`` or by the rule in the
    module's docstring, with the scalars beside it and a record of everything else."""
    if isinstance(obj, nn.Module):  # cannot come from weights_only, but a user may pass one in a dict
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            src,
            f"holds a {type(obj).__name__}, not a dict of tensors",
            "save model.state_dict(), not the model object or a list",
        )
    if not obj:
        raise CheckpointError(src, "holds no tensors", "save the model's state_dict()")
    found = _Found()
    _walk(obj, TOP, 0, found)
    sets = found.sets
    if not sets:
        held = ", ".join(f"{show(k, 40)} ({type(v).__name__})" for k, v in list(obj.items())[:5])
        raise CheckpointError(
            src,
            "holds no weights: no tensors at its top level and no dict of tensors under "
            f"any key (it holds {held}{', ...' if len(obj) > 5 else ''})",
            "save model.state_dict(), alone or under 'state_dict'",
        )
    listing = ", ".join(_set_label(n, t) for n, t in sets.items())
    if weights is not None:
        if weights not in sets:
            raise _no_such_set(src, weights, sets, listing)
        chosen = weights
    elif len(sets) == 1:
        chosen = next(iter(sets))
    else:
        named = [n for n in sets if n.rsplit("/", 1)[-1] in NESTED_KEYS and not AVERAGED_RE.search(n)]
        averaged = [n for n in sets if AVERAGED_RE.search(n)]
        pool = named + averaged + ([TOP] if TOP in sets and not named else [])
        pool = pool or list(sets)
        if len(pool) > 1:
            raise _ambiguous(src, {n: sets[n] for n in pool}, averaged)
        chosen = pool[0]
    left_out = list(found.other)
    for n, tensors in sets.items():
        if n != chosen:
            left_out += [n] if n != TOP else [_plain_key(k) or show(k) for k in tensors]
    plain = chosen == TOP and weights is None
    return ReadCheckpoint(
        dict(sets[chosen]),
        src,
        found.extra,
        default_name,
        weights=None if plain else chosen,
        weight_sets=tuple(sets),
        left_out=left_out,
    )


def _no_such_set(
    src: str, weights: str, sets: Mapping[str, Mapping[Any, Any]], listing: str
) -> CheckpointError:
    """The refusal of ``weights=`` naming no weight set of the checkpoint: the sets it does hold, as choices
    (a plain state dict: leave ``weights=`` out), and ``strip_prefix=`` when tensor names start with that
    name (an EMA copy kept as a submodule: ``model_ema.*``)."""
    choices = [f"weights={n!r}" for n in sets if n != TOP]
    if TOP in sets and choices:
        choices.append("weights='' for the top-level tensors")
    fix = (
        f"pass {' or '.join(choices)}"
        if choices
        else "leave out weights= (the file is a plain state dict: its tensors are the weights)"
    )
    prefix = weights if weights.endswith(".") else weights + "."
    if weights and any(isinstance(k, str) and k.startswith(prefix) for t in sets.values() for k in t):
        fix += f"; to take only the tensors whose names start with {prefix!r}, pass strip_prefix={prefix!r}"
    return CheckpointError(
        src,
        f"has no weight set {show(weights)}; it holds {listing}",
        fix,
        keywords=("weights", "strip_prefix"),
    )


def _ambiguous(src: str, pool: Mapping[str, Mapping[Any, Any]], averaged: list[str]) -> CheckpointError:
    """The refusal of a checkpoint holding several weight sets when the user did not say which to take."""
    listing = ", ".join(_set_label(n, t) for n, t in pool.items())
    trained = [n for n in pool if n not in averaged]
    if averaged and trained:
        fix = (
            f"pass weights={averaged[0]!r} for the averaged weights (usually the better ones: timm's "
            f"convention) or weights={trained[0]!r} for the training weights"
        )
    else:
        fix = f"pass {' or '.join(f'weights={n!r}' for n in pool)}"
    return CheckpointError(
        src,
        f"it holds {len(pool)} weight sets, {listing}, and zoo does not choose one silently",
        f"{fix}; the choice is recorded in the checkpoint's meta",
        keywords=("weights",),
    )


def _is_scalar(v: Any) -> bool:
    """Whether ``v`` is kept as a note beside the weights (``best_prec1``, ``epoch``): a small, finite, real,
    JSON-friendly scalar. Anything else found beside the weights is left out."""
    if isinstance(v, torch.Tensor):
        if (
            v.numel() != 1
            or v.dtype not in ALLOWED_DTYPES
            or v.layout != torch.strided
            or v.device.type == "meta"
        ):
            return False
        v = v.item()
    if isinstance(v, (bool, str)):
        return not isinstance(v, str) or (len(v) <= 1024 and v.isprintable())
    if isinstance(v, int):
        return abs(v) < 2**63
    return isinstance(v, float) and math.isfinite(v)


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
