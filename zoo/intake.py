"""Turning what a user hands to :meth:`zoo.registry.Registry.add` into a checked :class:`NewCheckpoint`.

Every check happens here, before anything is stored: the arguments (origin, metrics, tags, names, meta), the
weights against their architecture (through the family plugin), and the metadata as JSON.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from zoo.checkpoint_io import CheckpointLike, detect_weights, fit_prefix, read_checkpoint
from zoo.errors import NotFoundError, ZooError, show
from zoo.plugins import get_family, resolve_arch
from zoo.records import ORIGINS, ArchSpec, CheckpointRecord
from zoo.store.checkpoints import NewCheckpoint
from zoo.validation import check_json, check_metrics, check_name

log = logging.getLogger(__name__)


def prepare_checkpoint(
    checkpoint: CheckpointLike,
    *,
    base_arch: Callable[[str | int], ArchSpec],
    parent_record: Callable[[str | int], CheckpointRecord] | None = None,
    name: str | None = None,
    arch: str | ArchSpec | None = None,
    dataset: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Iterable[str] = (),
    origin: str = "imported",
    parent: str | int | None = None,
    base: str | int | None = None,
    alias: str | None = None,
    meta: Mapping[str, Any] | None = None,
    weights: str | None = None,
    strip_prefix: str | None = None,
) -> NewCheckpoint:
    """The checked checkpoint that :meth:`~zoo.registry.Registry.add` stores (see it for the arguments);
    ``base_arch(ref)`` is the architecture of the registered checkpoint ``ref`` (for weights applied on a
    base); ``parent_record(ref)`` the record of the registered checkpoint ``ref``: a parent is resolved
    before anything is written (a missing one raises :class:`~zoo.errors.NotFoundError` and leaves nothing
    behind), and without a ``dataset`` the new version inherits the parent's."""
    if origin not in ORIGINS:
        raise ZooError(f"unknown origin {show(origin)}; choose from {', '.join(ORIGINS)}")
    checked_metrics = check_metrics(metrics)
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise ZooError(f"tags must be a list of names, not {show(tags)}; pass tags=[...]")
    checked_tags = tuple(sorted({check_name(t, "tag") for t in tags}))
    if alias is not None:
        check_name(alias, "alias")
    if meta is not None and not isinstance(meta, Mapping):
        raise ZooError(f"meta must be a mapping of JSON values, not {type(meta).__name__}")
    if arch is not None and not isinstance(arch, (str, ArchSpec)):
        raise ZooError(f"arch must be an architecture name, a spec or a spec's JSON, not {show(arch)}")
    for what, ref in (("parent", parent), ("base", base)):
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, (str, int))):
            raise ZooError(
                f"{what} must be a checkpoint reference (name, name:vN, name@alias or id), not {show(ref)}"
            )
    if dataset is not None:
        check_name(dataset, "dataset")
    if parent is not None and parent_record is not None:
        try:
            parent_rec = parent_record(parent)
        except NotFoundError as exc:
            exc.args = (f"parent {show(parent)}: {exc.args[0]}", *exc.args[1:])  # which reference failed
            raise
        if dataset is None and parent_rec.dataset is not None:  # a new version keeps what it was trained on
            dataset = parent_rec.dataset
            log.info("dataset %s inherited from parent %s", dataset, parent_rec.ref)
    read = read_checkpoint(checkpoint, weights=weights, strip_prefix=strip_prefix)
    try:
        spec = resolve_arch(arch) if arch is not None else detect_weights(read)  # may strip a shared prefix
        family = get_family(spec.family)
        if base is not None and family.requires_base(spec):  # describe the base as it is registered
            spec = family.with_base(spec, base_arch(base))
        elif base is not None:  # a base would block removing it while these weights never needed it
            refusal = ZooError(
                f"{spec.name} ({spec.family} family) weights are a whole network, not applied "
                "on top of a base checkpoint, so base= does not fit them (it is for adapters "
                "such as LoRA); leave out base=, and pass parent= to record the checkpoint "
                "they came from"
            )
            refusal.keywords = ("base", "parent")  # say it with --base/--parent, or sidecar keys
            raise refusal
        if arch is not None:
            fit_prefix(read, family, spec)  # strips a shared prefix when only that stands in the way
        state = family.canonicalize(spec, read.state_dict)
    except ZooError as exc:
        if isinstance(checkpoint, (str, os.PathLike)):  # say which file does not fit
            exc.about(read.source)
        raise
    if name is None:  # a file stem such as 'my model (v2)' becomes 'my-model-v2'
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", read.default_name or spec.name).strip("-._")[:128]
        name = stem or spec.name
    name = check_name(name)
    if family.requires_base(spec) and base is None:
        refusal = ZooError(
            f"{spec} applies on top of a base checkpoint; pass base= (a registered checkpoint)"
        )
        refusal.keywords = ("base",)  # --base on the command line, a sidecar key in the nightly import
        raise refusal
    meta_all = {
        **({"source": read.source} if isinstance(checkpoint, (str, os.PathLike)) else {}),
        **read.notes(),
        **dict(meta or {}),
    }
    check_json(meta_all, "meta")
    return NewCheckpoint(
        name=name,
        spec=spec,
        arch_text=family.describe(spec),
        num_params=family.layout(spec).num_params,
        tensors=unshare(state),
        blob_meta={"zoo.family": spec.family, "zoo.arch": spec.name},
        dataset=dataset,
        metrics=checked_metrics,
        tags=checked_tags,
        origin=origin,
        parent=parent,
        base=base,
        alias=alias,
        meta=meta_all,
    )


def unshare(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Clone tensors that share storage with an earlier one (safetensors stores each tensor once)."""
    seen: set[tuple[int, int]] = set()
    out: dict[str, torch.Tensor] = {}
    for k, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) if t.numel() else (id(t), 0)
        out[k] = t.clone() if key in seen else t
        seen.add(key)
    return out


__all__ = ["prepare_checkpoint", "unshare"]
