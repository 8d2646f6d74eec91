"""Keeping a registry healthy: ``verify``, ``reindex`` (the nightly job) and ``jobs`` (what ran)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from zoo.cli.app import (
    cli,
    emit,
    json_option,
    registry_of,
    table,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from zoo import Registry


@cli.command()
@click.option("--repair", is_flag=True, help="Delete orphan files, stale temp files and unreferenced rows.")
@click.option(
    "--grace",
    "grace_s",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Only files older than this count as orphans (default 600: an add may be writing younger "
    "ones). Use 0 only when no other process is writing, e.g. after a crash.",
)
@json_option
@click.pass_context
def verify(ctx: click.Context, repair: bool, grace_s: float | None, as_json: bool) -> None:
    """Hash every blob; report missing, corrupt and orphaned ones. Exit 1 if anything is damaged."""
    reg = registry_of(ctx)
    rep = reg.verify(repair=repair) if grace_s is None else reg.verify(repair=repair, grace_s=grace_s)

    def human() -> None:
        click.echo(
            f"checked {rep.checked} blobs: {rep.ok} ok, {len(rep.missing)} missing, "
            f"{len(rep.corrupt)} corrupt,"
            f" {len(rep.orphan_files)} orphan files, {len(rep.orphan_rows)} orphan rows"
            + (" (removed them)" if repair and (rep.orphan_files or rep.orphan_rows) else "")
        )
        damaged = [("missing", sha) for sha in rep.missing] + [("corrupt", sha) for sha in rep.corrupt]
        users = _users(reg, {sha for _, sha in damaged}) if damaged else {}
        for what, sha in damaged:
            refs = users.get(sha, [])
            click.echo(
                f"{what}  {sha}  " + (f"used by {', '.join(refs)}" if refs else "(no checkpoint uses it)")
            )
        if rep.missing and not rep.ok and not rep.corrupt:  # all gone: more likely the wrong folder
            click.echo(
                f"every blob is missing from {reg.blobs.root}: check --blob-root (or ZOO_BLOB_ROOT); leave "
                "it out to use the folder beside a SQLite registry",
                err=True,
            )
        elif damaged:
            first = next((users[sha][0] for _, sha in damaged if users.get(sha)), "REF")
            click.echo(
                "fix: add the same weights again from their source (`zoo add FILE --name NAME`) to repair a "
                f"blob, or remove the checkpoints that use it (`zoo rm {first}`)",
                err=True,
            )

    emit(rep.to_dict(), as_json, human)
    if rep.missing or rep.corrupt or (not repair and not rep.clean):
        sys.exit(1)


def _users(reg: Registry, shas: set[str]) -> dict[str, list[str]]:
    """The checkpoints (``name:vN``) whose weights are each of ``shas``."""
    out: dict[str, list[str]] = {}
    for rec in reg.search():
        if rec.sha256 in shas:
            out.setdefault(rec.sha256, []).append(rec.ref)
    return out


@cli.command()
@click.option(
    "--watch",
    "watch",
    multiple=True,
    envvar="ZOO_WATCH_DIRS",
    type=click.Path(file_okay=False),
    help="Folder to import new checkpoint files from, recursively (repeatable; default: $ZOO_WATCH_DIRS, "
    "separated by ':'). A sidecar NAME.json beside NAME.safetensors gives name, dataset, metrics, ...",
)
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait when another run holds the lease (then exit 1 naming it).",
)
@click.option(
    "--lease-ttl",
    "lease_ttl_s",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds a killed run keeps others out (the lease is renewed every third of it while running).",
)
@click.option(
    "--retrain-min",
    type=int,
    default=20,
    show_default=True,
    help="New checkpoints since a promoted generator's watermark that trigger training a successor.",
)
@click.option("--no-retrain", is_flag=True, help="Never train generators.")
@click.option("--no-verify", is_flag=True, help="Do not hash every blob.")
@click.option("--no-embeddings", is_flag=True, help="Do not refresh stale vectors and indexes.")
@click.option("--keep-orphans", is_flag=True, help="Report orphan blobs instead of removing them.")
@click.option(
    "--evaluator",
    default="weights",
    show_default=True,
    metavar="NAME",
    help="How candidate generators are scored against the current one: 'weights', the generator "
    "kind's own score (IGPG's: closeness of samples to the registered weights, no data needed), "
    "or one a plugin registers (the main job's 'tinyzoo': sample accuracy on the tiny-zoo tasks).",
)
@click.option(
    "--device",
    default=None,
    help="Device to train and score generators on (default: CPU / the generator's own setting).",
)
@json_option
@click.pass_context
def reindex(
    ctx: click.Context,
    watch: tuple[str, ...],
    wait_s: float,
    lease_ttl_s: float,
    retrain_min: int,
    no_retrain: bool,
    no_verify: bool,
    no_embeddings: bool,
    keep_orphans: bool,
    evaluator: str,
    device: str | None,
    as_json: bool,
) -> None:
    """The nightly job: import new checkpoint files, verify blobs, refresh stale embeddings and indexes, and
    retrain generators when enough new checkpoints arrived (promoting a new version only if it scores at
    least as well). One run at a time; safe to kill. Exit 1 if it fails or finds damaged blobs.
    """
    import signal

    from zoo.reindexing import ReindexConfig, evaluators
    from zoo.reindexing import reindex as run_reindex

    known = evaluators()
    if evaluator not in known:
        raise click.BadParameter(
            f"{evaluator!r} is not an evaluator; choose from {', '.join(sorted(known))}",
            param_hint="'--evaluator'",
        )

    def _terminated(
        signum: int, _frame: Any
    ) -> None:  # a scheduler stopping the job: record it, free the lease
        raise SystemExit(128 + signum)

    cfg = ReindexConfig(
        watch=list(watch),
        wait_s=wait_s,
        lease_ttl_s=lease_ttl_s,
        retrain_min=retrain_min,
        retrain=not no_retrain,
        verify=not no_verify,
        embeddings=not no_embeddings,
        repair_orphans=not keep_orphans,
        evaluator=known[evaluator](),
        device=device,
    )
    before = signal.signal(signal.SIGTERM, _terminated)
    try:
        rep = run_reindex(registry_of(ctx, create=True), cfg)
    finally:
        signal.signal(signal.SIGTERM, before)

    def human() -> None:
        c = rep.counts
        click.echo(f"run {rep.run_id} {rep.status} in {rep.seconds:.1f} s")
        click.echo(
            f"  import:     {c.get('files_scanned', 0)} files scanned, {c.get('files_hashed', 0)} read, "
            f"{c.get('imported', 0)} imported, {c.get('files_duplicate', 0)} duplicates, "
            f"{c.get('files_bad', 0)} unreadable"
        )
        click.echo(
            f"  verify:     {c.get('blobs_checked', 0)} blobs checked, {c.get('blobs_missing', 0)} missing, "
            f"{c.get('blobs_corrupt', 0)} corrupt, {c.get('orphans_removed', 0)} orphans removed"
        )
        click.echo(
            f"  embeddings: {c.get('datasets_embedded', 0)} dataset and {c.get('archs_embedded', 0)} "
            f"architecture vectors embedded, {c.get('indexes_rebuilt', 0)} indexes rebuilt"
        )
        click.echo(
            f"  generators: {c.get('generators_trained', 0)} trained, {c.get('generators_promoted', 0)} "
            f"promoted, {c.get('generators_rejected', 0)} rejected"
        )
        for g in rep.generators:
            click.echo(f"    {g}")
        for path, err in rep.bad_files:
            click.echo(f"unreadable {path}: {err}")
        for line in rep.missing:
            click.echo(f"missing  {line}")
        for line in rep.corrupt:
            click.echo(f"corrupt  {line}")

    emit(rep.to_dict(), as_json, human)
    if rep.damaged:
        sys.exit(1)


@cli.command()
@click.option(
    "--kind",
    default=None,
    help="Only runs of this job: reindex, train (generator training), demo, build-tiny-zoo, ...",
)
@click.option(
    "--status", type=click.Choice(["running", "succeeded", "failed", "skipped", "killed"]), default=None
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many runs."
)
@json_option
@click.pass_context
def jobs(ctx: click.Context, kind: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Recorded job runs, newest first: re-indexing, generator training, zoo builders and the main job;
    when, how long, how they ended and what they did. A run still `running` whose process is gone shows as
    `running?` (the next run of its kind marks it killed)."""
    from zoo.jobs import holder_is_dead, job_runs

    runs = job_runs(registry_of(ctx), kind=kind, status=status, limit=limit)

    quiet = {"blobs_ok", "dataset_vectors_current", "files_scanned", "files_hashed"}  # in --json only

    def counts(c: Any) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(c.items()) if v and k not in quiet) or "-"

    def shown(r: Any) -> str:
        return "running?" if r.status == "running" and holder_is_dead(r.holder) else r.status

    emit(
        [r.to_dict() for r in runs],
        as_json,
        lambda: table(
            [
                [
                    str(r.id),
                    r.kind,
                    shown(r),
                    r.started_at.isoformat(timespec="seconds"),
                    r.finished_at.isoformat(timespec="seconds") if r.finished_at else "-",
                    f"{r.duration_s:.1f}s" if r.duration_s is not None else "-",
                    counts(r.counts),
                    r.message or "-",
                ]
                for r in runs
            ],
            ["ID", "KIND", "STATUS", "STARTED", "FINISHED", "DURATION", "COUNTS", "SUMMARY"],
        ),
    )
