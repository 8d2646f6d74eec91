"""The runner: :func:`reindex` takes the lease, runs the list of stages in turn and records the run."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

from zoo.errors import LeaseHeldError
from zoo.jobs import Lease, finish_run, mark_killed, record_run, start_run
from zoo.registry import Registry
from zoo.reindexing.config import JOB, ReindexConfig, ReindexReport, check_config
from zoo.reindexing.importing import ImportStage
from zoo.reindexing.refresh import EmbeddingStage
from zoo.reindexing.retraining import GeneratorStage
from zoo.reindexing.stage import RunContext, Stage, timed
from zoo.reindexing.verification import VerifyStage

log = logging.getLogger(__name__)

STAGES: tuple[Stage, ...] = (  # in the order a run goes through them
    ImportStage(),  # register new checkpoint files from the watch directories
    VerifyStage(),  # hash every blob; report damaged ones; remove old orphans
    EmbeddingStage(),  # recompute stale vectors; bring the nearest-neighbour indexes up to date
    GeneratorStage(),  # retrain promoted generators on enough new checkpoints; promote one if not worse
)


def reindex(registry: Registry, config: ReindexConfig | None = None, **options: Any) -> ReindexReport:
    """Run the re-indexing job once (import, verify, refresh embeddings and indexes, retrain generators).

    ``options`` override fields of ``config`` (``reindex(reg, watch=["incoming"], wait_s=60)``). Only one
    run works at a time: when another holds the lease for longer than ``wait_s`` this raises
    :class:`~zoo.errors.LeaseHeldError` naming it (the attempt is recorded as ``skipped``). Every run is
    recorded in ``job_runs`` (see :func:`zoo.jobs.job_runs`, ``zoo jobs``); a run that raises is recorded
    as ``failed`` with the error, and one that is killed is marked ``killed`` by the next run, which redoes
    whatever it left undone. See :mod:`zoo.reindexing` for the stages.
    """
    cfg = dataclasses.replace(config or ReindexConfig(), **options)
    dirs = check_config(cfg)
    return run_stages(registry, cfg, STAGES, dirs)


def run_stages(
    registry: Registry, cfg: ReindexConfig, stages: Sequence[Stage], dirs: Sequence[Any] = ()
) -> ReindexReport:
    """Run ``stages`` in turn (those the config asks for) under the job's lease, recording the run."""
    t0 = time.perf_counter()
    lease = Lease(registry, JOB, ttl_s=cfg.lease_ttl_s, wait_s=cfg.wait_s)
    try:
        lease.acquire()
    except LeaseHeldError as exc:
        record_run(registry, JOB, "skipped", lease.holder, message=f"not run: {exc}")
        raise
    waited = time.perf_counter() - t0
    with lease:
        ctx = RunContext(registry, cfg, start_run(registry, JOB, lease.holder).id, lease, list(dirs))
        ctx.timings["lease"] = waited
        try:
            killed = mark_killed(registry, JOB, current=ctx.run_id)
            if killed:
                ctx.own_counts.add("runs_found_killed", len(killed))
                ctx.messages.append(
                    f"runs {', '.join(map(str, killed))} had been killed; finishing their work"
                )
            for stage in stages:
                if stage.wanted(ctx):
                    timed(ctx, stage)
            ctx.lease.check()
        except BaseException as exc:
            ctx.messages.append(
                f"failed: {type(exc).__name__}: {exc}"
                if isinstance(exc, Exception)
                else f"interrupted ({type(exc).__name__} {exc}): the process was stopped"
            )
            finish_run(registry, ctx.run_id, "failed", counts=ctx.counts, message=ctx.message)
            log.error("reindex run %d failed: %s", ctx.run_id, exc)
            raise
        status = "succeeded" if ctx.did_work else "skipped"
        finish_run(registry, ctx.run_id, status, counts=ctx.counts, message=ctx.message)
    counts = ctx.counts
    report = ReindexReport(
        ctx.run_id,
        status,
        counts,
        tuple(ctx.imported),
        tuple(ctx.bad_files),
        tuple(ctx.missing),
        tuple(ctx.corrupt),
        tuple(ctx.generators),
        tuple(ctx.messages),
        time.perf_counter() - t0,
        dict(ctx.timings),
    )
    log.info(
        "reindex run %d %s in %.2f s: %s",
        ctx.run_id,
        status,
        report.seconds,
        {k: v for k, v in counts.items() if v},
    )
    return report
