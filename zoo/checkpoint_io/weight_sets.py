"""Finding the weights in a checkpoint dict: weight sets under conventional keys (``state_dict``, ``model``,
``module``, ...), averaged (EMA/SWA) sets, and the scalars and other entries recorded beside them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zoo.checkpoint_io.formats import ALLOWED_DTYPES
from zoo.errors import (
    CheckpointError,
    show,
)

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
MAX_LEFT_OUT = 50  # entries named in the source_left_out note (then a count)
TOP = ""  # the name of the weight set made of the top-level tensors


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
    config: dict[str, Any] | None = None  # a model folder's config.json
    files: list[str] = field(default_factory=list)  # the weight files read from a model folder

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
        if self.files:
            out["source_files"] = list(self.files)
        if self.config is not None:
            out["source_config"] = self.config
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


@dataclass
class _Found:
    """What one walk over a checkpoint dict found."""

    sets: dict[str, dict[Any, torch.Tensor]] = field(
        default_factory=dict
    )  # weight sets by path ('model/ema')
    extra: dict[str, Any] = field(default_factory=dict)  # scalars by path
    other: list[str] = field(default_factory=list)  # paths of everything else (optimizer state, lists, ...)


def key_path(parent: str, key: str) -> str:
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
        name = key_path(path, key) if key is not None else key_path(path, show(k))
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
            found.extra[key_path(path, key)] = v
        else:
            found.other.append(key_path(path, key if key is not None else show(k)))


def _set_label(name: str, tensors: Mapping[Any, Any]) -> str:
    averaged = " of averaged (EMA/SWA) weights" if AVERAGED_RE.search(name) else ""
    return f"{show(name) if name != TOP else 'the top-level tensors'} ({len(tensors)} tensors{averaged})"


def unwrap(obj: Any, src: str, default_name: str | None = None, weights: str | None = None) -> ReadCheckpoint:
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
