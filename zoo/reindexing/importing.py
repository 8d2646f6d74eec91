"""Stage 1, **import**: register the checkpoint files that arrived in the watch directories.

Every checkpoint file (``.safetensors``, ``.pt``, ``.pth``, ``.th``, ``.bin``, PyTorch Lightning's
``.ckpt``; hidden files and folders are left out) under the watch directories is registered with
:meth:`Registry.add`, with the metadata of its optional JSON sidecar (below). Files are remembered in
``watched_files`` by path, size and modification time, so unchanged files are not read again, and by the
sha256 of their bytes, so a copy of an imported file is not imported twice. A file zoo cannot read is
reported (and remembered until it or its sidecar changes), never stored, and never stops the run. An add
that was killed before its file was remembered is found again as the same name with the same weights
(``exist_ok``), not added twice.

Sidecar format: ``model.json`` beside ``model.safetensors`` (same stem), a JSON object whose keys are
arguments of :meth:`Registry.add`, all optional::

    {"name": "resnet20-cifar10", "arch": "resnet20", "dataset": "cifar10", "metrics": {"top1": 91.78},
     "tags": ["pretrained"], "origin": "imported", "parent": "resnet20-base", "base": null,
     "alias": "best", "meta": {"url": "https://..."}, "weights": "state_dict_ema", "strip_prefix": "model."}

Without a sidecar the name is the file stem and the architecture is detected from the weights. ``weights``
picks the weight set of a file that holds several (training and EMA weights: refused without it) and
``strip_prefix`` removes a tensor-name prefix (see :mod:`zoo.checkpoint_io`); a refusal says the fix as
sidecar keys. A refused file is read again by the next run once its sidecar is written, changed or removed
(the sha256 of the sidecar read with it is remembered), so following the refusal's fix is enough. The sidecar
of an imported file is read with it once: editing it later changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from zoo.encoders.base import file_digest
from zoo.errors import CheckpointError, ZooError
from zoo.registry import Registry
from zoo.reindexing.stage import Counts, RunContext, Stage, newest_id

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".th", ".bin", ".ckpt")  # files the import stage reads
SIDECAR_KEYS = (
    "name",
    "arch",
    "dataset",
    "metrics",
    "tags",
    "origin",
    "parent",
    "base",
    "alias",
    "meta",
    "weights",
    "strip_prefix",
)
FLUSH_EVERY = 200  # files between writes of the import stage's bookkeeping (and of the run's progress)


class ImportStage(Stage):
    """Register new checkpoint files from the watch directories (skipped when there are none)."""

    name = "import"

    def wanted(self, ctx: RunContext) -> bool:
        return bool(ctx.watch)

    def run(self, ctx: RunContext) -> Counts:
        registry, counts = ctx.registry, ctx.stage_counts(self.name)
        known, by_sha = registry.repos.watched.known()
        before = newest_id(registry)
        pending: list[dict[str, Any]] = []
        try:
            _import_files(ctx, counts, known, by_sha, before, pending)
        finally:  # stopped on purpose (SIGTERM, an error): remember what was done (SIGKILL: harmless)
            _flush_quietly(registry, pending)
        if ctx.bad_files:
            path, why = ctx.bad_files[0]
            ctx.messages.append(f"{len(ctx.bad_files)} unreadable file(s) not imported, e.g. {path}: {why}")
        if ctx.imported:
            ctx.messages.append(f"imported {len(ctx.imported)} checkpoint(s)")
        ctx.save()
        return counts


def scan(dirs: Sequence[Path]) -> Iterator[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every checkpoint file under ``dirs``, in a stable order."""
    for root in dirs:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                if fn.startswith(".") or not fn.endswith(CHECKPOINT_SUFFIXES):
                    continue
                path = os.path.join(dirpath, fn)
                try:
                    st = os.stat(path)
                except OSError:  # removed meanwhile, or a dangling/looping symlink
                    continue
                if not stat.S_ISREG(
                    st.st_mode
                ):  # a FIFO or device (e.g. a link to /dev/zero) would block or never end
                    log.warning("reindex: skipping %s: not a regular file", path)
                    continue
                yield path, st.st_size, st.st_mtime_ns


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Keyword arguments for :meth:`Registry.add` from the JSON sidecar beside ``path`` ({} when none)."""
    side = Path(path).with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            str(path), f"its sidecar {side.name} is not readable JSON ({exc})", "fix the sidecar or remove it"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            str(path), f"its sidecar {side.name} is not a JSON object", 'write {"name": ...}'
        )
    if not isinstance(data.get("meta") or {}, dict):
        raise CheckpointError(
            str(path),
            f"its sidecar {side.name} has a 'meta' that is not a JSON object",
            'write "meta": {...}',
        )
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        raise CheckpointError(
            str(path),
            f"its sidecar {side.name} has unknown keys {unknown}",
            f"use only {', '.join(SIDECAR_KEYS)}",
        )
    return {k: v for k, v in data.items() if v is not None}


def sidecar_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of the bytes of the JSON sidecar beside ``path`` ("" when there is none, as :func:`read_sidecar`
    sees it; "unreadable" when it cannot be read). Not cached: an edit that keeps the size and the
    modification time is seen too."""
    side = Path(path).with_suffix(".json")
    try:
        if not side.is_file():  # a folder, FIFO or device named .json is no sidecar (never opened)
            return ""
        h = hashlib.sha256()
        with open(side, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return "unreadable"


def _as_sidecar_key(path: str) -> Callable[[str, Any], str | None]:
    """How the nightly import says a fix named as a keyword argument (:meth:`ZooError.spelled`): the key of
    the file's sidecar (``weights='ema'`` -> ``{"weights": "ema"} in the sidecar model.json``)."""
    side = Path(path).with_suffix(".json").name

    def spell(keyword: str, value: Any) -> str | None:
        if keyword not in SIDECAR_KEYS:
            return None
        if value is None:
            return f'"{keyword}" in the sidecar {side}'
        return f"{json.dumps({keyword: value})} in the sidecar {side}"

    return spell


def _flush(registry: Registry, rows: list[dict[str, Any]]) -> None:
    """Remember examined files (replacing what was known about their paths)."""
    if not rows:
        return
    registry.repos.watched.remember(rows)
    rows.clear()


def _flush_quietly(registry: Registry, rows: list[dict[str, Any]]) -> None:
    """:func:`_flush`, logging a failure: the next run then reads those files again."""
    try:
        _flush(registry, rows)
    except Exception as exc:
        log.warning("reindex: could not record examined files (%s); the next run reads them again", exc)


def _import_files(
    ctx: RunContext,
    counts: Counts,
    known: dict[str, tuple[int, int, str, str]],
    by_sha: dict[str, int | None],
    before: int,
    pending: list[dict[str, Any]],
) -> None:
    registry = ctx.registry
    scanned = 0
    for path, size, mtime in scan(ctx.watch):
        scanned += 1
        seen = known.get(path)
        side_sha = None
        if seen is not None and seen[:2] == (size, mtime):
            if seen[2] != "bad":
                continue
            side_sha = sidecar_digest(path)
            if side_sha == seen[3]:
                counts.add("files_bad_known")  # reported when found; listed again only in the counts
                continue
            counts.add("files_sidecar_changed")  # refused; its sidecar was written, edited or removed since
        ctx.lease.check()
        try:
            sha = file_digest(path)
        except OSError:  # removed or unreadable between the scan and now: next run
            continue
        if side_sha is None:
            side_sha = sidecar_digest(path)  # taken before the sidecar is read: a later edit is seen later
        counts.add("files_hashed")
        row = {
            "path": path,
            "size": size,
            "mtime_ns": mtime,
            "sha256": sha,
            "status": "imported",
            "checkpoint_id": None,
            "message": "",
            "seen_at": datetime.now(timezone.utc),
            "sidecar_sha256": side_sha,
        }
        if sha in by_sha:
            row.update(status="duplicate", checkpoint_id=by_sha[sha])
            counts.add("files_duplicate")
        else:
            try:
                options = read_sidecar(path)
                meta = {**dict(options.pop("meta", None) or {}), "source_sha256": sha}
                rec = registry.add(path, exist_ok=True, meta=meta, **options)
            except SQLAlchemyError:
                raise  # the database, not the file: the run fails and this file is not remembered
            except Exception as exc:  # whatever a file can do wrong, it never stops the run
                reason = (
                    str(exc.spelled(_as_sidecar_key(path)))
                    if isinstance(exc, ZooError)
                    else f"{type(exc).__name__}: {exc}"
                )
                reason += (
                    f"; the next run reads {Path(path).name} again once it or its sidecar "
                    f"{Path(path).with_suffix('.json').name} changes"
                )
                row.update(status="bad", message=reason[:2000])
                ctx.bad_files.append((path, reason))
                counts.add("files_bad")
                log.warning("reindex: not importing %s: %s", path, reason)
            else:
                row["checkpoint_id"] = rec.id
                by_sha[sha] = rec.id
                if rec.id > before:
                    ctx.imported.append(rec.ref)
                    counts.add("imported")
                else:  # registered by an earlier run that was killed before remembering the file
                    counts.add("files_already_registered")
        pending.append(row)
        if len(pending) >= FLUSH_EVERY:
            _flush(registry, pending)
            counts["files_scanned"] = scanned
            ctx.save()
    counts["files_scanned"] = scanned
