"""The nightly re-indexing job: ``zoo reindex`` and :func:`reindex`, for cron or any scheduler.

One run, under the registry's ``reindex`` lease (:class:`zoo.jobs.Lease`), goes through four stages. Each
is idempotent, so a run killed at any point leaves nothing half-done that the next run does not finish,
and a run with nothing new does no work (its record says ``skipped``):

1. **import**: every checkpoint file (``.safetensors``, ``.pt``, ``.pth``, ``.th``, ``.bin``, PyTorch
   Lightning's ``.ckpt``; hidden files and folders are left out) under the watch directories is registered
   with :meth:`Registry.add`, with the metadata of its optional JSON sidecar (below). Files are remembered
   in ``watched_files`` by path, size and modification time, so unchanged files are not read again, and by
   the sha256 of their bytes, so a copy of an imported file is not imported twice. A file zoo cannot read is
   reported (and remembered until it or its sidecar changes), never stored, and never stops the run. An add
   that was killed before its file was remembered is found again as the same name with the same weights
   (``exist_ok``), not added twice.
2. **verify**: :meth:`Registry.verify` hashes every blob; missing and corrupt ones are reported with the
   checkpoints that use them (loading them raises :class:`~zoo.errors.IntegrityError`: they are never
   served). Orphans older than the grace period (what a killed add leaves) are removed.
3. **embeddings**: :func:`zoo.embeddings.refresh_stale` recomputes every vector whose encoder version or
   source changed and brings each persisted nearest-neighbour index up to date (built beside the live one
   under a new name, then swapped in through the ``settings`` table); index files no setting points at
   (a build that was killed) are removed after the grace period.
4. **generators**: for each promoted generator (per name and scope: the family or architecture it was
   trained on), when at least ``retrain_min`` checkpoints it could train on arrived since its watermark, a
   candidate is trained by the version's generator kind (:meth:`zoo.generators.GeneratorKind.retrain`: same
   scope, encoders and settings; IGPG's is resumable, its training state lives in the work folder until it
   is stored). The candidate and the current version
   are scored by the same evaluator on the same checkpoints and seed; the candidate is promoted (and the
   current one retired) only when its score is at least the current one's, and retired otherwise. Both
   scores are in the report and the run's record. A candidate left unjudged by a killed run is judged by
   the next one; a rejected candidate's watermark counts, so the same data is not retrained every night.

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

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from zoo.encoders.base import file_digest
from zoo.errors import CheckpointError, ConfigError, LeaseHeldError, ZooError
from zoo.generators import Evaluator, kind_of, kind_of_generator
from zoo.jobs import DEFAULT_TTL_S, Lease, finish_run, mark_killed, record_run, start_run, update_run
from zoo.records import ArchSpec, CheckpointRecord, GeneratorRecord
from zoo.registry import ORPHAN_GRACE_S, Registry
from zoo.store import models as m
from zoo.store.db import retry

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

JOB = "reindex"  # the job's kind in job_runs and the name of its lease
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".th", ".bin", ".ckpt")  # files the import stage reads
SIDECAR_KEYS = ("name", "arch", "dataset", "metrics", "tags", "origin", "parent", "base", "alias", "meta",
                "weights", "strip_prefix")
FLUSH_EVERY = 200  # files between writes of the import stage's bookkeeping (and of the run's progress)
ENV_WATCH = "ZOO_WATCH_DIRS"  # watch directories, separated by os.pathsep

@dataclass
class ReindexConfig:
    """What a re-indexing run does. Every field has a default that suits a nightly run."""

    watch: Sequence[str | os.PathLike[str]] = ()  # folders scanned recursively for new checkpoint files
    verify: bool = True  # hash every stored blob; report missing and corrupt ones
    repair_orphans: bool = True  # remove orphan blob files and rows older than the grace period (never damaged ones)
    embeddings: bool = True  # recompute stale vectors; bring nearest-neighbour indexes up to date
    encoders: Sequence[str] | None = None  # dataset encoders to refresh (None: every installed one that can run)
    text_encoder: str | None = None  # architecture text encoder (None: the default, minilm)
    sources: Mapping[str, Any] | None = None  # dataset name -> data, for stale datasets registered from memory
    retrain: bool = True  # retrain promoted generators when enough new checkpoints arrived
    retrain_min: int = 20  # new trainable checkpoints since a generator's watermark that trigger retraining
    train_config: Any = None  # the kind's training settings (igpg.TrainConfig); None: the current version's
    device: str | None = None  # training and scoring device, e.g. "cuda" (None: the train config's; CPU to score)
    evaluator: Evaluator | None = None  # None: the generator kind's own score (IGPG's needs no task data)
    eval_seed: int = 0  # the seed both generators sample with when scored
    lease_ttl_s: float = DEFAULT_TTL_S  # a run that stops renewing its lease (killed) blocks others this long at most
    wait_s: float = 0.0  # how long to wait for a running job before giving up with LeaseHeldError
    work_dir: str | os.PathLike[str] | None = None  # resumable training state (None: <blob root>.jobs/)


@dataclass(frozen=True)
class GeneratorDecision:
    """What the generator stage decided for one promoted generator."""

    current: str  # the promoted version's ref
    scope: str  # what it is trained on: "arch cnn-tiny(...)" or "family resnet"
    outcome: str  # "current" (nothing new), "waiting" (< retrain_min new), "promoted", "rejected" or "skipped"
    new_checkpoints: int  # trainable checkpoints since its watermark
    candidate: str | None = None  # the candidate's ref, when one was trained or found
    current_score: float | None = None
    candidate_score: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        text = f"{self.current} [{self.scope}]: {self.outcome}"
        if self.candidate is not None and self.candidate_score is not None and self.current_score is not None:
            text += (f" - candidate {self.candidate} scored {self.candidate_score:.4f}, current "
                     f"{self.current_score:.4f}")
        return f"{text} ({self.reason})" if self.reason else text


@dataclass(frozen=True)
class ReindexReport:
    """What a run did: its record's id and status, counts per stage, and the details behind them."""

    run_id: int
    status: str  # "succeeded", or "skipped" when there was nothing to do
    counts: Mapping[str, int]
    imported: tuple[str, ...]  # refs of checkpoints imported from watch directories
    bad_files: tuple[tuple[str, str], ...]  # (path, why) of files found unreadable in this run
    missing: tuple[str, ...]  # "sha256 (refs)" of blobs missing from the store
    corrupt: tuple[str, ...]  # "sha256 (refs)" of blobs whose content no longer matches
    generators: tuple[GeneratorDecision, ...]
    messages: tuple[str, ...]  # one line per notable thing (also the run record's message)
    seconds: float
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds per stage: lease, import, verify, ...

    @property
    def damaged(self) -> bool:
        """Whether verification found missing or corrupt blobs."""
        return bool(self.missing or self.corrupt)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "counts": dict(self.counts),
                "imported": list(self.imported), "bad_files": [{"path": p, "error": e} for p, e in self.bad_files],
                "missing": list(self.missing), "corrupt": list(self.corrupt), "damaged": self.damaged,
                "generators": [g.to_dict() for g in self.generators], "messages": list(self.messages),
                "seconds": round(self.seconds, 3), "timings": {k: round(v, 3) for k, v in self.timings.items()}}


WORK_COUNTS = ("imported", "orphans_removed", "datasets_embedded", "archs_embedded", "indexes_rebuilt",
               "index_files_removed", "generators_trained", "generators_promoted", "generators_rejected",
               "generators_retired", "files_bad")  # counts that mean a run changed something


@dataclass
class _Run:
    """A run's progress: counts, details and messages, stored in its record as it goes."""

    registry: Registry
    run_id: int
    lease: Lease
    counts: dict[str, int] = field(default_factory=dict)
    imported: list[str] = field(default_factory=list)
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    damaged_ids: set[int] = field(default_factory=set)
    generators: list[GeneratorDecision] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str, fn: Callable[[], None]) -> None:
        """Run one stage, timing it."""
        t = time.perf_counter()
        fn()
        self.timings[name] = time.perf_counter() - t

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def save(self) -> None:
        self.lease.check()
        update_run(self.registry, self.run_id, counts=self.counts, message="\n".join(self.messages))

    @property
    def did_work(self) -> bool:
        return any(self.counts.get(k) for k in WORK_COUNTS)


# ----------------------------------------------------------------------------------------------------
# the job
# ----------------------------------------------------------------------------------------------------
def watch_dirs_from_env() -> list[str]:
    """Watch directories named by ``$ZOO_WATCH_DIRS`` (separated by ``os.pathsep``)."""
    return [p for p in os.environ.get(ENV_WATCH, "").split(os.pathsep) if p.strip()]


def _check_config(cfg: ReindexConfig) -> list[Path]:
    if cfg.retrain_min < 1:
        raise ConfigError(f"retrain_min must be at least 1 (got {cfg.retrain_min}); it counts new checkpoints")
    dirs = []
    for d in cfg.watch:
        p = Path(d).expanduser().resolve()
        if not p.is_dir():
            raise ConfigError(f"watch directory {p} does not exist or is not a folder; create it or fix --watch "
                              f"(or ${ENV_WATCH})")
        dirs.append(p)
    return dirs


def reindex(registry: Registry, config: ReindexConfig | None = None, **options: Any) -> ReindexReport:
    """Run the re-indexing job once (import, verify, refresh embeddings and indexes, retrain generators).

    ``options`` override fields of ``config`` (``reindex(reg, watch=["incoming"], wait_s=60)``). Only one
    run works at a time: when another holds the lease for longer than ``wait_s`` this raises
    :class:`~zoo.errors.LeaseHeldError` naming it (the attempt is recorded as ``skipped``). Every run is
    recorded in ``job_runs`` (see :func:`zoo.jobs.job_runs`, ``zoo jobs``); a run that raises is recorded
    as ``failed`` with the error, and one that is killed is marked ``killed`` by the next run, which redoes
    whatever it left undone. See the module documentation for the stages.
    """
    cfg = dataclasses.replace(config or ReindexConfig(), **options)
    dirs = _check_config(cfg)
    t0 = time.perf_counter()
    lease = Lease(registry, JOB, ttl_s=cfg.lease_ttl_s, wait_s=cfg.wait_s)
    try:
        lease.acquire()
    except LeaseHeldError as exc:
        record_run(registry, JOB, "skipped", lease.holder, message=f"not run: {exc}")
        raise
    waited = time.perf_counter() - t0
    with lease:
        run = _Run(registry, start_run(registry, JOB, lease.holder).id, lease)
        run.timings["lease"] = waited
        try:
            killed = mark_killed(registry, JOB, current=run.run_id)
            if killed:
                run.add("runs_found_killed", len(killed))
                run.messages.append(f"runs {', '.join(map(str, killed))} had been killed; finishing their work")
            if dirs:
                run.stage("import", lambda: _import_stage(registry, dirs, run))
            if cfg.verify:
                run.stage("verify", lambda: _verify_stage(registry, cfg, run))
            if cfg.embeddings:
                run.stage("embeddings", lambda: _embedding_stage(registry, cfg, run))
            if cfg.retrain:
                run.stage("generators", lambda: _generator_stage(registry, cfg, run))
            run.lease.check()
        except BaseException as exc:
            run.messages.append(f"failed: {type(exc).__name__}: {exc}" if isinstance(exc, Exception) else
                                f"interrupted ({type(exc).__name__} {exc}): the process was stopped")
            finish_run(registry, run.run_id, "failed", counts=run.counts, message="\n".join(run.messages))
            log.error("reindex run %d failed: %s", run.run_id, exc)
            raise
        status = "succeeded" if run.did_work else "skipped"
        finish_run(registry, run.run_id, status, counts=run.counts, message="\n".join(run.messages))
    report = ReindexReport(run.run_id, status, dict(run.counts), tuple(run.imported), tuple(run.bad_files),
                           tuple(run.missing), tuple(run.corrupt), tuple(run.generators), tuple(run.messages),
                           time.perf_counter() - t0, dict(run.timings))
    log.info("reindex run %d %s in %.2f s: %s", run.run_id, status, report.seconds,
             {k: v for k, v in run.counts.items() if v})
    return report


# ----------------------------------------------------------------------------------------------------
# stage 1: import
# ----------------------------------------------------------------------------------------------------
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
                if not stat.S_ISREG(st.st_mode):  # a FIFO or device (e.g. a link to /dev/zero) would block or never end
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
        raise CheckpointError(str(path), f"its sidecar {side.name} is not readable JSON ({exc})",
                              "fix the sidecar or remove it") from None
    if not isinstance(data, dict):
        raise CheckpointError(str(path), f"its sidecar {side.name} is not a JSON object", "write {\"name\": ...}")
    if not isinstance(data.get("meta") or {}, dict):
        raise CheckpointError(str(path), f"its sidecar {side.name} has a 'meta' that is not a JSON object",
                              "write \"meta\": {...}")
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        raise CheckpointError(str(path), f"its sidecar {side.name} has unknown keys {unknown}",
                              f"use only {', '.join(SIDECAR_KEYS)}")
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
    """How the nightly import says a fix named as a keyword argument (:meth:`ZooError.spelled`): the key of the
    file's sidecar (``weights='ema'`` -> ``{"weights": "ema"} in the sidecar model.json``)."""
    side = Path(path).with_suffix(".json").name

    def spell(keyword: str, value: Any) -> str | None:
        if keyword not in SIDECAR_KEYS:
            return None
        if value is None:
            return f'"{keyword}" in the sidecar {side}'
        return f"{json.dumps({keyword: value})} in the sidecar {side}"

    return spell


def _newest_id(registry: Registry) -> int:
    newest = registry.list(limit=1)
    return newest[0].id if newest else 0


def _flush(registry: Registry, rows: list[dict[str, Any]]) -> None:
    """Remember examined files (replacing what was known about their paths)."""
    if not rows:
        return
    paths = [r["path"] for r in rows]

    def txn() -> None:
        with registry.db.write() as s:
            for i in range(0, len(paths), 500):
                s.execute(delete(m.WatchedFile).where(m.WatchedFile.path.in_(paths[i:i + 500])))
            s.execute(insert(m.WatchedFile), rows)

    retry(txn)
    rows.clear()


def _import_stage(registry: Registry, dirs: Sequence[Path], run: _Run) -> None:
    with registry.db.read() as s:
        known = {r.path: (r.size, r.mtime_ns, r.status, r.sidecar_sha256) for r in s.execute(select(
            m.WatchedFile.path, m.WatchedFile.size, m.WatchedFile.mtime_ns, m.WatchedFile.status,
            m.WatchedFile.sidecar_sha256)).all()}
        by_sha = dict(s.execute(select(m.WatchedFile.sha256, m.WatchedFile.checkpoint_id).where(
            m.WatchedFile.status != "bad")).all())
    before = _newest_id(registry)
    pending: list[dict[str, Any]] = []
    try:
        _import_files(registry, dirs, run, known, by_sha, before, pending)
    finally:  # stopped on purpose (SIGTERM, an error): remember what was done (a SIGKILL forgets, harmlessly)
        try:
            _flush(registry, pending)
        except Exception as exc:
            log.warning("reindex: could not record examined files (%s); the next run reads them again", exc)
    if run.bad_files:
        run.messages.append(f"{len(run.bad_files)} unreadable file(s) not imported, e.g. {run.bad_files[0][0]}: "
                            f"{run.bad_files[0][1]}")
    if run.imported:
        run.messages.append(f"imported {len(run.imported)} checkpoint(s)")
    run.save()


def _import_files(registry: Registry, dirs: Sequence[Path], run: _Run,
                  known: dict[str, tuple[int, int, str, str]], by_sha: dict[str, int | None], before: int,
                  pending: list[dict[str, Any]]) -> None:
    scanned = 0
    for path, size, mtime in scan(dirs):
        scanned += 1
        seen = known.get(path)
        side_sha = None
        if seen is not None and seen[:2] == (size, mtime):
            if seen[2] != "bad":
                continue
            side_sha = sidecar_digest(path)
            if side_sha == seen[3]:
                run.add("files_bad_known")  # reported when found; listed again only in the counts
                continue
            run.add("files_sidecar_changed")  # refused; its sidecar was written, edited or removed since
        run.lease.check()
        try:
            sha = file_digest(path)
        except OSError:  # removed or unreadable between the scan and now: next run
            continue
        if side_sha is None:
            side_sha = sidecar_digest(path)  # taken before the sidecar is read: a later edit is seen later
        run.add("files_hashed")
        row = {"path": path, "size": size, "mtime_ns": mtime, "sha256": sha, "status": "imported",
               "checkpoint_id": None, "message": "", "seen_at": m.utcnow(), "sidecar_sha256": side_sha}
        if sha in by_sha:
            row.update(status="duplicate", checkpoint_id=by_sha[sha])
            run.add("files_duplicate")
        else:
            try:
                options = read_sidecar(path)
                meta = {**dict(options.pop("meta", None) or {}), "source_sha256": sha}
                rec = registry.add(path, exist_ok=True, meta=meta, **options)
            except SQLAlchemyError:
                raise  # the database, not the file: the run fails and this file is not remembered
            except Exception as exc:  # whatever a file can do wrong, it never stops the run
                reason = str(exc.spelled(_as_sidecar_key(path))) if isinstance(exc, ZooError) else \
                    f"{type(exc).__name__}: {exc}"
                reason += (f"; the next run reads {Path(path).name} again once it or its sidecar "
                           f"{Path(path).with_suffix('.json').name} changes")
                row.update(status="bad", message=reason[:2000])
                run.bad_files.append((path, reason))
                run.add("files_bad")
                log.warning("reindex: not importing %s: %s", path, reason)
            else:
                row["checkpoint_id"] = rec.id
                by_sha[sha] = rec.id
                if rec.id > before:
                    run.imported.append(rec.ref)
                    run.add("imported")
                else:  # registered by an earlier run that was killed before remembering the file
                    run.add("files_already_registered")
        pending.append(row)
        if len(pending) >= FLUSH_EVERY:
            _flush(registry, pending)
            run.counts["files_scanned"] = scanned
            run.save()
    run.counts["files_scanned"] = scanned


# ----------------------------------------------------------------------------------------------------
# stage 2: verify
# ----------------------------------------------------------------------------------------------------
def _users(registry: Registry, shas: Sequence[str]) -> dict[str, list[tuple[int | None, str]]]:
    """sha256 -> (checkpoint id or None for a generator, ref) of everything stored in those blobs."""
    out: dict[str, list[tuple[int | None, str]]] = {sha: [] for sha in shas}
    if not shas:
        return out
    with registry.db.read() as s:
        for cid, name, version, sha in s.execute(select(m.Checkpoint.id, m.Checkpoint.name, m.Checkpoint.version,
                                                        m.Checkpoint.sha256).where(m.Checkpoint.sha256.in_(shas))):
            out[sha].append((cid, f"{name}:v{version}"))
        for name, version, sha in s.execute(select(m.Generator.name, m.Generator.version, m.Generator.sha256)
                                            .where(m.Generator.sha256.in_(shas))):
            out[sha].append((None, f"generator {name}:v{version}"))
    return out


def _verify_stage(registry: Registry, cfg: ReindexConfig, run: _Run) -> None:
    rep = registry.verify(repair=cfg.repair_orphans)
    run.counts.update(blobs_checked=rep.checked, blobs_ok=rep.ok, blobs_missing=len(rep.missing),
                      blobs_corrupt=len(rep.corrupt))
    if cfg.repair_orphans:
        run.add("orphans_removed", len(rep.orphan_files) + len(rep.orphan_rows))
    users = _users(registry, [*rep.missing, *rep.corrupt])
    for kind, shas, out in (("missing", rep.missing, run.missing), ("corrupt", rep.corrupt, run.corrupt)):
        for sha in shas:
            refs = [ref for _, ref in users[sha]]
            run.damaged_ids.update(cid for cid, _ in users[sha] if cid is not None)
            out.append(f"{sha} ({', '.join(refs) or 'unreferenced'})")
        if shas:
            run.messages.append(f"{len(shas)} {kind} blob(s), not served: {'; '.join(out[:5])}. Re-add those "
                                "checkpoints from their source")
            log.error("reindex: %d %s blob(s): %s", len(shas), kind, "; ".join(out))
    run.save()


# ----------------------------------------------------------------------------------------------------
# stage 3: embeddings and indexes
# ----------------------------------------------------------------------------------------------------
def _remove_stray_indexes(registry: Registry, grace_s: float = ORPHAN_GRACE_S) -> int:
    """Delete index files that no setting points at (a killed build), once older than ``grace_s``."""
    from zoo.embeddings import index_dir

    directory = index_dir(registry)
    if not directory.is_dir():
        return 0
    with registry.db.read() as s:
        live = {json.loads(v).get("file") for v in s.scalars(select(m.Setting.value).where(
            m.Setting.key.like("index:%"))).all()}
    cutoff = time.time() - grace_s
    removed = 0
    for p in directory.glob("*.usearch"):
        if p.name not in live and p.stat().st_mtime < cutoff:
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def _embedding_stage(registry: Registry, cfg: ReindexConfig, run: _Run) -> None:
    from zoo.embeddings import refresh_stale

    rr = refresh_stale(registry, encoders=cfg.encoders, text_encoder=cfg.text_encoder, sources=cfg.sources,
                       check_sources=False, archs=True, index=True)
    run.counts.update(datasets_embedded=len(rr.datasets_embedded), dataset_vectors_current=rr.datasets_current,
                      datasets_need_data=len(rr.datasets_need_data), archs_embedded=rr.archs_embedded,
                      indexes_rebuilt=sum(1 for i in rr.indexes if i.rebuilt))
    run.add("index_files_removed", _remove_stray_indexes(registry))
    if rr.datasets_embedded:
        run.messages.append(f"re-embedded {len(rr.datasets_embedded)} dataset vector(s): "
                            f"{', '.join(rr.datasets_embedded[:10])}")
    if rr.datasets_need_data:
        run.messages.append(f"{len(rr.datasets_need_data)} dataset(s) have stale or no vectors and zoo cannot read "
                            f"their data again: {', '.join(rr.datasets_need_data[:10])}; register them with their data")
    run.save()


# ----------------------------------------------------------------------------------------------------
# stage 4: generators
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Scope:
    family: str | None
    arch: ArchSpec | None

    @property
    def label(self) -> str:
        if self.arch is not None:
            return f"arch {self.arch}"
        return f"family {self.family}" if self.family else "every family"


def _scope(registry: Registry, gen: GeneratorRecord) -> _Scope | None:
    """What ``gen`` was trained on: its stored scope, or (older versions) what its checkpoints say."""
    stored = gen.config.get("scope")
    if isinstance(stored, Mapping):
        arch = stored.get("arch")
        return _Scope(stored.get("family"), ArchSpec.from_json(arch) if arch else None)
    recs = registry.get_many(gen.trained_on)
    keys = {r.arch.key: r.arch for r in recs}
    if len(keys) == 1:
        return _Scope(None, next(iter(keys.values())))
    families = {r.family for r in recs} or set(gen.families)
    return _Scope(next(iter(families)), None) if len(families) == 1 else None


def work_dir(registry: Registry, cfg: ReindexConfig | None = None) -> Path:
    """Where the job keeps resumable training state: ``work_dir``, or ``<blob root>.jobs`` beside the blobs."""
    if cfg is not None and cfg.work_dir is not None:
        return Path(cfg.work_dir)
    return registry.blobs.root.with_suffix(".jobs")


def _score(evaluator: Evaluator, registry: Registry, gen: Any, recs: Sequence[CheckpointRecord],
           seed: int) -> float:
    score = float(evaluator(registry, gen, recs, seed))
    return score if math.isfinite(score) else -math.inf  # broken samples score worst


def _generator_stage(registry: Registry, cfg: ReindexConfig, run: _Run) -> None:
    gens = registry.generators()
    if not any(g.status == "promoted" for g in gens):
        return
    by_id = {g.id: g for g in gens}
    for g in gens:  # a promotion a killed run left half-done: retire the version the promoted one replaced
        old = by_id.get(g.config.get("replaces", -1)) if g.status == "promoted" else None
        if old is not None and old.status == "promoted" and old.id < g.id:
            registry.set_generator_status(old.id, "retired")
            run.add("generators_retired")
            run.messages.append(f"retired {old.ref}, replaced by {g.ref} (finishing a killed run's promotion)")
            gens = registry.generators()
    current_by_scope: dict[tuple[str, _Scope], GeneratorRecord] = {}
    for g in gens:  # newest first: the first promoted version per (name, scope) is the one served
        if g.status == "promoted":
            scope = _scope(registry, g)
            if scope is None:
                run.generators.append(GeneratorDecision(g.ref, "?", "skipped", 0, reason="trained on several families; "
                                                        "retrain it by hand with `zoo train`"))
                continue
            current_by_scope.setdefault((g.name, scope), g)
    newest = _newest_id(registry)
    for (_, scope), current in current_by_scope.items():
        run.lease.check()
        decision = _consider(registry, cfg, run, current, scope, gens, newest)
        run.generators.append(decision)
        if decision.outcome in ("promoted", "rejected", "skipped"):
            run.messages.append(f"generator {decision}")
        run.save()


def _consider(registry: Registry, cfg: ReindexConfig, run: _Run, current: GeneratorRecord, scope: _Scope,
              gens: Sequence[GeneratorRecord], newest: int) -> GeneratorDecision:
    """Retrain (or resume judging) one promoted generator's successor, and promote it if it is not worse."""
    kind = kind_of(current)
    training_checkpoints = kind.training_checkpoints
    later = [g for g in gens if g.name == current.name and g.id > current.id and g.config.get("trained_by") == JOB
             and _scope(registry, g) == scope]
    pending = next((g for g in later if g.status == "candidate"), None)
    watermark = max([current.watermark] + [g.watermark for g in later if g.status == "retired"])
    if pending is None and newest <= watermark:
        return GeneratorDecision(current.ref, scope.label, "current", 0)
    new = len(training_checkpoints(registry, family=scope.family, arch=scope.arch, after=watermark))
    if pending is None and new < cfg.retrain_min:
        return GeneratorDecision(current.ref, scope.label, "waiting", new,
                                 reason=f"{new} new checkpoint(s) since watermark {watermark}, retraining at "
                                        f"{cfg.retrain_min}")
    eligible = training_checkpoints(registry, family=scope.family, arch=scope.arch)
    gen = None
    if pending is None:
        damaged = sorted(r.ref for r in eligible if r.id in run.damaged_ids)
        if damaged:
            return GeneratorDecision(current.ref, scope.label, "skipped", new,
                                     reason=f"{len(damaged)} checkpoint(s) it would train on have damaged blobs "
                                            f"({', '.join(damaged[:5])}); re-add or remove them")
        key = hashlib.sha256(json.dumps({"ids": [r.id for r in eligible], "current": current.id,
                                         "config": _settings(cfg.train_config)},
                                        sort_keys=True, default=str).encode()).hexdigest()[:16]
        root = work_dir(registry, cfg)
        work = root / f"train-{current.name}-{key}"
        for stale in root.glob(f"train-{current.name}-*") if root.is_dir() else ():
            if stale != work:  # state of a training whose data has changed since: it cannot be resumed
                shutil.rmtree(stale, ignore_errors=True)
        log.info("reindex: training a successor of %s on %d checkpoints (%d new)", current.ref, len(eligible), new)
        gen, cand = kind.retrain(registry, current, family=scope.family if scope.arch is None else None,
                                 arch=scope.arch, config=cfg.train_config, work_dir=str(work), device=cfg.device,
                                 meta={"trained_by": JOB, "replaces": current.id})
        shutil.rmtree(work, ignore_errors=True)
        run.add("generators_trained")
    else:
        cand = pending
        log.info("reindex: judging %s, left unjudged by an earlier run", cand.ref)
    run.lease.check()
    device = "cpu" if cfg.device in (None, "auto") else cfg.device
    gen = gen if gen is not None else kind_of(cand).load_record(registry, cand, device=device)
    cur_gen = kind.load_record(registry, current, device=device)
    recs = [r for r in eligible if r.id not in run.damaged_ids and kind.knows(gen, r.arch)
            and kind.knows(cur_gen, r.arch)]
    if not recs:
        return GeneratorDecision(current.ref, scope.label, "skipped", new, cand.ref,
                                 reason="no undamaged checkpoint both versions know to score them on")
    evaluator = cfg.evaluator if cfg.evaluator is not None else kind.score
    cur_score = _score(evaluator, registry, cur_gen, recs, cfg.eval_seed)
    cand_score = _score(evaluator, registry, gen, recs, cfg.eval_seed)
    run.lease.check()
    if cand_score >= cur_score and math.isfinite(cand_score):  # a score that is NaN or infinite never wins
        registry.set_generator_status(cand.id, "promoted")
        registry.set_generator_status(current.id, "retired")
        run.add("generators_promoted")
        outcome, reason = "promoted", f"{cand.ref} replaces {current.ref}"
    else:
        registry.set_generator_status(cand.id, "retired")
        run.add("generators_rejected")
        outcome, reason = "rejected", f"{current.ref} stays promoted"
    log.info("reindex: %s scored %.4f, %s %.4f: %s", cand.ref, cand_score, current.ref, cur_score, outcome)
    return GeneratorDecision(current.ref, scope.label, outcome, new, cand.ref, cur_score, cand_score, reason)


# ----------------------------------------------------------------------------------------------------
# evaluators
# ----------------------------------------------------------------------------------------------------
def accuracy_evaluator(evaluate: Callable[[nn.Module, str], float], *, samples: int = 2,
                       max_datasets: int = 8) -> Evaluator:
    """An evaluator scoring a generator by the accuracy of its samples: mean over datasets and samples.

    ``evaluate(module, dataset_name) -> accuracy`` knows the tasks (e.g. ``zoo_demo.tinyzoo.evaluate``, which
    knows the tiny-zoo tasks by their dataset names; the main job's plugin registers that one as the
    ``tinyzoo`` evaluator). Datasets ``evaluate`` does not know (``KeyError``) are left out; up to
    ``max_datasets`` datasets with the newest checkpoints are used, ``samples`` networks each, sampled through
    the generator's kind (:meth:`~zoo.generators.GeneratorKind.sample_for`).
    """

    def score(registry: Registry, gen: Any, checkpoints: Sequence[CheckpointRecord], seed: int) -> float:
        kind = kind_of_generator(gen)
        fn = evaluate
        accs: list[float] = []
        seen: set[tuple[str, str]] = set()
        for rec in sorted(checkpoints, key=lambda r: -r.id):
            key = (rec.arch.key, rec.dataset or "")
            if not rec.dataset or key in seen or not kind.knows(gen, rec.arch) or len(seen) >= max_datasets:
                continue
            seen.add(key)
            try:
                nets = kind.sample_for(registry, gen, rec.arch, rec.dataset, n=samples, seed=seed)
                accs.extend(float(fn(net, rec.dataset)) for net in nets)
            except KeyError:  # a dataset the evaluate function does not know
                continue
        if not accs:
            raise ZooError("the accuracy evaluator knows none of the datasets of these checkpoints; pass an "
                           "evaluate function that does, or use the default weight-space evaluator")
        return sum(accs) / len(accs)

    return score


EVALUATORS: dict[str, Callable[[], Evaluator | None]] = {  # built-in names the CLI accepts for --evaluator
    "weights": lambda: None,  # the generator kind's own score (IGPG: closeness of samples to registered weights)
}


def evaluators() -> dict[str, Callable[[], Evaluator | None]]:
    """Evaluator names (``zoo reindex --evaluator``) -> factories: the built-in ones and those plugins register
    through ``zoo_register_evaluators`` (the main job's ``tinyzoo``)."""
    from zoo.plugins import get_plugin_manager

    found = dict(EVALUATORS)

    def register(name: str, make: Callable[[], Evaluator | None]) -> None:
        found[name] = make

    get_plugin_manager().hook.zoo_register_evaluators(register=register)
    return found


def _settings(config: Any) -> Any:
    """A JSON-ready form of a kind's training settings (what keys a training's resumable state)."""
    if config is None or isinstance(config, Mapping):
        return config
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else repr(config)


__all__ = [
    "CHECKPOINT_SUFFIXES",
    "ENV_WATCH",
    "EVALUATORS",
    "JOB",
    "SIDECAR_KEYS",
    "Evaluator",
    "GeneratorDecision",
    "ReindexConfig",
    "ReindexReport",
    "accuracy_evaluator",
    "evaluators",
    "read_sidecar",
    "reindex",
    "scan",
    "sidecar_digest",
    "watch_dirs_from_env",
    "work_dir",
]
