"""Tensor-name prefixes: wrapper prefixes always removed, a shared prefix removed only when that makes the
weights fit, and state dicts that hold several whole networks under prefixes (refused, naming each).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import torch

from zoo.checkpoint_io.weight_sets import (
    AVERAGED_RE,
    MAX_NESTING,
    TOP,
    ReadCheckpoint,
    key_path,
)
from zoo.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    UnknownFamilyError,
    ZooError,
    show,
)
from zoo.family import ArchitectureFamily
from zoo.plugins import detect_arch
from zoo.records import ArchSpec

MAX_PREFIX_TRIES = 4  # shared prefixes tried, shortest first, when the weights do not fit as they are
MAX_PREFIX_SETS = 8  # groups of names under one prefix tried, biggest first, as whole networks of their own


def keep_prefixed(read: ReadCheckpoint, prefix: str) -> None:
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
        key_path(read.weights or TOP, n)
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
