"""Checkpoint commands: ``add``, ``list``, ``show``, ``search``, ``load-check``, ``alias``, ``rm``."""

from __future__ import annotations

import json
import sys

import click

from zoo.cli.app import (
    CHECKPOINT_HEADERS,
    as_flag,
    checkpoint_rows,
    cli,
    emit,
    fmt_params,
    json_option,
    registry_of,
    table,
)
from zoo.errors import ZooError
from zoo.records import ORIGINS


@cli.command()
@click.argument("path", type=click.Path())  # a folder is refused by zoo (one Error: line), not click
@click.option("--name", help="Checkpoint name (default: the file stem). An existing name gets a new version.")
@click.option("--arch", help="Architecture name or spec JSON (default: detected from the weights).")
@click.option("--dataset", help="Name of the dataset the weights were trained on.")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=VALUE", help="A metric, e.g. accuracy=0.93.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option(
    "--origin", default="imported", type=click.Choice(ORIGINS), help="How the weights came to be (lineage)."
)
@click.option("--parent", help="Checkpoint this one came from (lineage).")
@click.option(
    "--base",
    help="Base checkpoint the weights apply to (LoRA adapters only; --parent records "
    "the checkpoint that other weights came from).",
)
@click.option("--alias", help="Point NAME@ALIAS at the new version.")
@click.option(
    "--exist-ok", is_flag=True, help="Return the existing version if these weights are already there."
)
@click.option(
    "--weights",
    metavar="KEY",
    help="The weight set to take from a file holding several, e.g. "
    "state_dict_ema (EMA) or state_dict (default: the only one; several are refused). Recorded in meta.",
)
@click.option(
    "--strip-prefix",
    metavar="PREFIX",
    help="Remove PREFIX (e.g. model.) from the tensor names and keep "
    "only those names (default: a prefix every name shares is removed when that makes the weights fit). "
    "Recorded in meta.",
)
@json_option
@click.pass_context
def add(
    ctx: click.Context,
    path: str,
    name: str | None,
    arch: str | None,
    dataset: str | None,
    metrics: tuple[str, ...],
    tags: tuple[str, ...],
    origin: str,
    parent: str | None,
    base: str | None,
    alias: str | None,
    exist_ok: bool,
    weights: str | None,
    strip_prefix: str | None,
    as_json: bool,
) -> None:
    """Add a checkpoint file (.safetensors or a weights-only torch file: .pt, .pth, .th, .bin, Lightning's
    .ckpt).

    Weights nested under state_dict/model/... are found and a prefix every tensor name shares (module.,
    model.) is removed when that makes them fit; what was taken is recorded in the checkpoint's meta."""
    import math

    from zoo.errors import show

    parsed: dict[str, float] = {}
    for item in metrics:  # refused as zoo refuses: one 'Error:' line saying the fix in this command's words
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value) if sep else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ZooError(
                f"cannot read --metric {show(item)}: write --metric NAME=NUMBER with a finite number, "
                "e.g. --metric accuracy=0.93"
            )
        if key in parsed:
            raise ZooError(f"--metric {show(key)} is given twice; give each metric once")
        parsed[key] = number
    reg = registry_of(ctx, create=True)
    newest = reg.list(limit=1)  # ids grow with every add: an id at or below this one was there before
    try:
        rec = reg.add(
            path,
            name=name,
            arch=arch,
            dataset=dataset,
            metrics=parsed,
            tags=tags,
            origin=origin,
            parent=parent,
            base=base,
            alias=alias,
            exist_ok=exist_ok,
            weights=weights,
            strip_prefix=strip_prefix,
        )
    except ZooError as exc:  # say the fix with this command's flags (--weights, --strip-prefix, --arch)
        raise exc.spelled(as_flag) from None
    existed = bool(newest) and rec.id <= newest[0].id  # --exist-ok found the same weights under the name
    verb = "already registered as" if existed else "added"
    emit(
        {**rec.to_dict(), "added": not existed},
        as_json,
        lambda: click.echo(
            f"{verb} {rec.ref}: {rec.arch} ({fmt_params(rec.num_params)} params), blob {rec.sha256[:12]}"
        ),
    )


@cli.command("list")
@click.option("--family", help="Only this family (`zoo plugins` lists them), e.g. resnet.")
@click.option("--name", help="Name or glob, e.g. 'resnet*'.")
@click.option("--latest", is_flag=True, help="Only the newest version of each name.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many (newest first).")
@json_option
@click.pass_context
def list_(
    ctx: click.Context, family: str | None, name: str | None, latest: bool, limit: int | None, as_json: bool
) -> None:
    """List checkpoints, newest first."""
    recs = registry_of(ctx).list(family=family, name=name, latest_only=latest, limit=limit)
    emit([r.to_dict() for r in recs], as_json, lambda: table(checkpoint_rows(recs), CHECKPOINT_HEADERS))


@cli.command()
@click.argument("ref")
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show one checkpoint (REF: name, name:vN, name@alias or id:N) with its lineage and aliases."""
    reg = registry_of(ctx)
    rec = reg.get(ref)
    lineage = reg.lineage(rec.id)
    aliases = [a.alias for a in reg.aliases(rec.name) if a.checkpoint_id == rec.id]
    data = {**rec.to_dict(), "aliases": aliases, "lineage": [r.ref for r in lineage]}

    def human() -> None:
        for key in (
            "ref",
            "family",
            "arch",
            "num_params",
            "dataset",
            "origin",
            "sha256",
            "size_bytes",
            "created_at",
        ):
            click.echo(f"{key:>11}: {data[key]}")
        click.echo(f"{'metrics':>11}: {json.dumps(data['metrics'])}")
        click.echo(f"{'tags':>11}: {', '.join(data['tags']) or '-'}")
        click.echo(f"{'aliases':>11}: {', '.join(aliases) or '-'}")
        click.echo(f"{'lineage':>11}: {' <- '.join(data['lineage'])}")
        click.echo(f"{'arch_text':>11}: {rec.arch_text}")

    emit(data, as_json, human)


@cli.command()
@click.option("--family", help="Architecture family (`zoo plugins` lists them), e.g. resnet.")
@click.option("--arch", help="Architecture variant name, e.g. resnet20.")
@click.option("--dataset", help="Name of the dataset the checkpoints were trained on (`zoo datasets list`).")
@click.option("--tag", "tags", multiple=True, help="Required tag (repeatable).")
@click.option(
    "--metric", "metrics", multiple=True, metavar="EXPR", help="Threshold, e.g. 'accuracy>=0.9' (repeatable)."
)
@click.option("--name", help="Name or glob, e.g. 'resnet*'.")
@click.option("--origin", type=click.Choice(ORIGINS), help="How the weights came to be (lineage).")
@click.option("--latest", is_flag=True, help="Only the newest version of each name.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many (newest first).")
@json_option
@click.pass_context
def search(
    ctx: click.Context,
    family: str | None,
    arch: str | None,
    dataset: str | None,
    tags: tuple[str, ...],
    metrics: tuple[str, ...],
    name: str | None,
    origin: str | None,
    latest: bool,
    limit: int | None,
    as_json: bool,
) -> None:
    """Search checkpoints by family, architecture, dataset, tags and metric thresholds."""
    recs = registry_of(ctx).search(
        family=family,
        arch=arch,
        dataset=dataset,
        tags=tags,
        metrics=list(metrics),
        name=name,
        origin=origin,
        latest_only=latest,
        limit=limit,
    )
    emit([r.to_dict() for r in recs], as_json, lambda: table(checkpoint_rows(recs), CHECKPOINT_HEADERS))


@cli.command("load-check")
@click.argument("refs", nargs=-1, required=True)
@json_option
@click.pass_context
def load_check(ctx: click.Context, refs: tuple[str, ...], as_json: bool) -> None:
    """Load checkpoints as modules (hash verified) and run a forward pass on a dummy input."""
    import torch

    from zoo.plugins import get_family

    reg = registry_of(ctx)
    results = []
    failed = False
    for ref in refs:
        try:
            rec = reg.get(ref)
            module = reg.load(rec)
            n = sum(p.numel() for p in module.parameters())
            shape = get_family(rec.family).input_shape(rec.arch)
            out_shape = None
            if shape is not None:  # families without a fixed input size skip the forward pass
                with torch.no_grad():
                    out_shape = list(module(torch.zeros(1, *shape)).shape)
            results.append({"ref": rec.ref, "ok": True, "params": n, "output_shape": out_shape})
        except ZooError as exc:
            failed = True
            results.append({"ref": ref, "ok": False, "error": str(exc.for_cli())})
    emit(
        results,
        as_json,
        lambda: [
            click.echo(
                f"ok   {r['ref']}: {r['params']} params, output {r['output_shape']}"
                if r["ok"]
                else f"FAIL {r['ref']}: {r['error']}"
            )
            for r in results
        ],
    )
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("ref")
@click.argument("alias")
@json_option
@click.pass_context
def alias(ctx: click.Context, ref: str, alias: str, as_json: bool) -> None:
    """Point NAME@ALIAS at the version REF names (e.g. `zoo alias resnet20:v2 best`)."""
    a = registry_of(ctx).alias(ref, alias)
    emit(
        {"name": a.name, "alias": a.alias, "version": a.version, "checkpoint_id": a.checkpoint_id},
        as_json,
        lambda: click.echo(f"{a.name}@{a.alias} -> {a.name}:v{a.version}"),
    )


@cli.command()
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Remove without asking (needed when stdin is not a terminal).")
@json_option
@click.pass_context
def rm(ctx: click.Context, ref: str, yes: bool, as_json: bool) -> None:
    """Remove one checkpoint version (REF: name:vN, name@alias, id:N, or a name with one version) and its blob
    when nothing else uses it. Says what the removal touches: children, aliases, generators trained on it.
    Without --yes it asks, and refuses when it cannot ask. Removed versions and ids are never reused.
    """
    reg = registry_of(ctx)
    impact = reg.removal_impact(ref)
    target = impact.checkpoint
    if impact.base_of:  # removal would be refused anyway: say so before asking
        raise ZooError(
            f"{target.ref} is the base of {', '.join(impact.base_of)}; remove those first (`zoo rm "
            f"{impact.base_of[0]}`)"
        )
    if not yes:
        if not sys.stdin.isatty():
            touches = f" ({'; '.join(impact.describe())})" if impact.orphans else ""
            raise ZooError(
                f"not removing {target.ref}{touches}: confirmation needed and stdin is not a terminal; "
                f"run `zoo rm {target.ref} --yes` to remove it"
            )
        details = "".join(f"\n  {line}" for line in impact.describe())
        click.confirm(f"remove {target.ref} (id:{target.id}, {target.arch}){details}\nremove?", abort=True)
    impact = reg.remove(target.id)  # exactly the version shown, even if REF now names another
    emit(
        impact.to_dict(),
        as_json,
        lambda: click.echo(
            f"removed {impact.checkpoint.ref} (id:{impact.checkpoint.id})"
            + "".join(f"\n  {line}" for line in impact.describe())
        ),
    )
