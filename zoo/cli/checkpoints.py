"""Checkpoint commands: ``add``, ``list``, ``show``, ``search``, ``load-check``, ``alias``, ``unalias``,
``rm``, and the everyday verbs on registered checkpoints: ``tag``/``untag``, ``metrics``, ``history``,
``lineage``, ``diff`` and ``export``."""

from __future__ import annotations

import datetime
import json
import sys
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # pragma: no cover - typing only
    from zoo import CheckpointRecord, Registry


@cli.command()
@click.argument("path", type=click.Path())  # folders and URLs are zoo's to read or refuse, not click's
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
    .ckpt) or a Hugging Face-style model folder (model.safetensors, or shards with their index, and
    config.json, kept in meta as source_config). URLs are refused: download the file first.

    Weights nested under state_dict/model/... are found and a prefix every tensor name shares (module.,
    model.) is removed when that makes them fit; what was taken is recorded in the checkpoint's meta."""
    parsed = parse_metrics(metrics, "--metric ")
    reg = registry_of(ctx, create=True)
    newest = reg.search(limit=1)  # ids grow with every add: a record at or below this one was there before
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)  # a repair is after it
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
    existed = bool(newest) and rec.id <= newest[0].id
    repaired = existed and _repaired_now(reg, rec, started)
    blob = rec.sha256[:12]
    emit(
        {**rec.to_dict(), "added": not existed, "repaired": repaired},
        as_json,
        lambda: click.echo(
            f"repaired the blob {blob} of {rec.ref} (its file was missing or damaged; these weights match "
            "it): nothing else changed"
            if repaired
            else f"{rec.ref} already holds these weights (not added again): {rec.arch}, blob {blob}"
            if existed
            else f"added {rec.ref}: {rec.arch} ({fmt_params(rec.num_params)} params), blob {blob}"
        ),
    )


def _repaired_now(reg: Registry, rec: CheckpointRecord, since: datetime.datetime) -> bool:
    """Whether this add wrote ``rec``'s blob file anew (it was missing or damaged): its history says so."""
    return any(e.action == "blob_repaired" and e.created_at >= since for e in reg.history(rec.id))


def parse_metrics(items: tuple[str, ...] | list[str], flag: str = "") -> dict[str, float]:
    """``NAME=NUMBER`` items as a dict, refused as zoo refuses: one 'Error:' line saying the fix in the words
    of the command (``flag``: how the command line writes one, e.g. ``"--metric "``)."""
    import math

    from zoo.errors import show

    parsed: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value) if sep else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ZooError(
                f"cannot read {flag}{show(item)}: write {flag}NAME=NUMBER with a finite number, "
                f"e.g. {flag}accuracy=0.93"
            )
        if key in parsed:
            raise ZooError(f"{flag}{show(key)} is given twice; give each metric once")
        parsed[key] = number
    return parsed


LIMIT = click.IntRange(min=1)  # --limit: a positive number of rows


@cli.command("list")
@click.option("--family", help="Only this family (`zoo plugins` lists them), e.g. resnet.")
@click.option("--name", help="Name or glob, e.g. 'resnet*'.")
@click.option("--dataset", help="Only checkpoints registered with this dataset (see `zoo datasets list`).")
@click.option("--latest", is_flag=True, help="Only the newest version of each name.")
@click.option("--limit", type=LIMIT, default=None, help="At most this many rows.")
@json_option
@click.pass_context
def list_(
    ctx: click.Context,
    family: str | None,
    name: str | None,
    dataset: str | None,
    latest: bool,
    limit: int | None,
    as_json: bool,
) -> None:
    """List checkpoints, newest first."""
    reg = registry_of(ctx)
    recs = reg.list(family=family, name=name, dataset=dataset, latest_only=latest, limit=limit)
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
            click.echo(f"{key:>11}: {'-' if data[key] is None else data[key]}")
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
@click.option("--limit", type=LIMIT, default=None, help="At most this many (newest first).")
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
    reg = registry_of(ctx)
    recs = reg.search(
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


@cli.command(short_help="Remove an alias: NAME ALIAS, or NAME@ALIAS.")
@click.argument("ref")
@click.argument("alias", required=False)
@json_option
@click.pass_context
def unalias(ctx: click.Context, ref: str, alias: str | None, as_json: bool) -> None:
    """Remove an alias: `zoo unalias resnet20 best` or `zoo unalias resnet20@best`. With REF name:vN the
    alias is removed only if it points at that version."""
    a = registry_of(ctx).unalias(ref, alias)
    emit(
        {"name": a.name, "alias": a.alias, "version": a.version, "checkpoint_id": a.checkpoint_id},
        as_json,
        lambda: click.echo(f"removed {a.name}@{a.alias} (pointed at {a.name}:v{a.version})"),
    )


def _tags_line(rec) -> str:  # type: ignore[no-untyped-def]
    return f"{rec.ref} tags: {', '.join(rec.tags) or '-'}"


@cli.command(short_help="Add tags to a checkpoint version.")
@click.argument("ref")
@click.argument("tags", nargs=-1, required=True)
@json_option
@click.pass_context
def tag(ctx: click.Context, ref: str, tags: tuple[str, ...], as_json: bool) -> None:
    """Add TAGS to the checkpoint version REF (recorded in `zoo history REF`)."""
    rec = registry_of(ctx).tag(ref, *tags)
    emit({"ref": rec.ref, "tags": list(rec.tags)}, as_json, lambda: click.echo(_tags_line(rec)))


@cli.command(short_help="Remove tags from a checkpoint version.")
@click.argument("ref")
@click.argument("tags", nargs=-1, required=True)
@json_option
@click.pass_context
def untag(ctx: click.Context, ref: str, tags: tuple[str, ...], as_json: bool) -> None:
    """Remove TAGS from the checkpoint version REF (a tag it does not have is refused; nothing changes)."""
    rec = registry_of(ctx).untag(ref, *tags)
    emit({"ref": rec.ref, "tags": list(rec.tags)}, as_json, lambda: click.echo(_tags_line(rec)))


@cli.command(short_help="Show, set or remove a checkpoint's metrics.")
@click.argument("ref")
@click.argument("values", nargs=-1, metavar="[NAME=NUMBER]...")
@click.option("--rm", "remove", multiple=True, metavar="NAME", help="Remove this metric (repeatable).")
@json_option
@click.pass_context
def metrics(
    ctx: click.Context, ref: str, values: tuple[str, ...], remove: tuple[str, ...], as_json: bool
) -> None:
    """Show, set or remove the metrics of the checkpoint version REF, e.g. `zoo metrics resnet20:v2
    top1=91.2 --rm loss`. Changes are recorded with their old values in `zoo history REF`."""
    parsed = parse_metrics(values)
    both = sorted(set(parsed) & set(remove))
    if both:
        raise ZooError(f"{', '.join(both)} is both set and removed; do one or the other")
    reg = registry_of(ctx)
    # one transaction: a metric REF lacks refuses the whole command before anything is set
    rec = reg.set_metrics(ref, parsed, remove=remove) if parsed or remove else reg.get(ref)
    emit(
        {"ref": rec.ref, "metrics": dict(rec.metrics)},
        as_json,
        lambda: click.echo(
            f"{rec.ref} metrics: " + (", ".join(f"{k}={v:g}" for k, v in sorted(rec.metrics.items())) or "-")
        ),
    )


@cli.command(short_help="What changed on a checkpoint since its add.")
@click.argument("ref")
@json_option
@click.pass_context
def history(ctx: click.Context, ref: str, as_json: bool) -> None:
    """What happened to the checkpoint version REF: its add, then every change to its tags, metrics, aliases
    and dataset, oldest first, with who made it and when."""
    events = registry_of(ctx).history(ref)
    emit(
        [e.to_dict() for e in events],
        as_json,
        lambda: table(
            [[e.created_at.isoformat(timespec="seconds"), e.actor or "-", e.describe()] for e in events],
            ["WHEN", "WHO", "WHAT"],
        ),
    )


@cli.command(short_help="A checkpoint's lineage tree and versions.")
@click.argument("ref")
@json_option
@click.pass_context
def lineage(ctx: click.Context, ref: str, as_json: bool) -> None:
    """The lineage tree REF belongs to: from its oldest ancestor down to everything made from it (fine-tuned,
    adapted, generated, adapters on it), REF marked with '*', then the versions of its name."""
    reg = registry_of(ctx)
    target = reg.get(ref)
    root = reg.lineage_tree(target.id)
    versions = reg.versions(target.name)
    data = {
        "ref": target.ref,
        "tree": root.to_dict(),
        "versions": [v.ref for v in versions],
        "ancestors": [r.ref for r in reg.lineage(target.id)[1:]],
    }

    def label(node) -> str:  # type: ignore[no-untyped-def]
        c = node.checkpoint
        parts = [c.ref, c.arch.name, c.origin]
        if c.dataset:
            parts.append(f"on {c.dataset}")
        if node.relation == "base":
            parts.append("(applied on top of it)")
        return "  ".join(parts) + ("  *" if c.id == target.id else "")

    def human() -> None:
        stack = [(root, "", "", True)]  # (node, prefix of its line, prefix of its children's lines, is root)
        while stack:
            node, lead, below, is_root = stack.pop()
            click.echo(label(node) if is_root else f"{lead}{label(node)}")
            kids = node.children
            for i in reversed(range(len(kids))):
                last = i == len(kids) - 1
                stack.append(
                    (
                        kids[i],
                        below + ("└── " if last else "├── "),
                        below + ("    " if last else "│   "),
                        False,
                    )
                )
        mark = ", ".join(f"v{v.version}" + (" *" if v.id == target.id else "") for v in versions)
        click.echo(f"versions of {target.name}: {mark}")

    emit(data, as_json, human)


@cli.command(short_help="Compare two checkpoints' weights, tensor by tensor.")
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("--all", "show_all", is_flag=True, help="List the tensors that are the same too.")
@json_option
@click.pass_context
def diff(ctx: click.Context, ref_a: str, ref_b: str, show_all: bool, as_json: bool) -> None:
    """How the weights of REF_B differ from those of REF_A, tensor by tensor: relative L2 distance
    (||b - a|| / ||a||) and largest absolute difference of each changed tensor, shape changes, tensors added
    and removed. Exits 0 whether or not they differ."""
    d = registry_of(ctx).diff(ref_a, ref_b)

    def shape(t) -> str:  # type: ignore[no-untyped-def]
        fmt = lambda s: "x".join(map(str, s)) if s else "scalar"  # noqa: E731
        if t.shape_a is None:
            return fmt(t.shape_b)
        if t.shape_b is None or t.shape_a == t.shape_b:
            return fmt(t.shape_a)
        return f"{fmt(t.shape_a)} -> {fmt(t.shape_b)}"

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.4g}"

    def human() -> None:
        click.echo(f"{d.a} -> {d.b}: {d.summary()}")
        rows = [
            [t.name, t.change, shape(t), num(t.rel_l2), num(t.max_abs)]
            for t in (d.tensors if show_all else d.differing)
        ]
        if rows:
            table(rows, ["TENSOR", "CHANGE", "SHAPE", "REL_L2", "MAX_ABS"])

    emit(
        d.to_dict() if not show_all else {**d.to_dict(), "tensors": [t.to_dict() for t in d.tensors]},
        as_json,
        human,
    )


@cli.command(short_help="Write a checkpoint's weights to a file.")
@click.argument("ref")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["safetensors", "pt"]),
    default=None,
    help="safetensors (the stored file as is: its sha256 is the checkpoint's) or pt (a state dict for "
    "torch.load(..., weights_only=True)). Default: from FILE's suffix.",
)
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@json_option
@click.pass_context
def export(ctx: click.Context, ref: str, file: str, fmt: str | None, force: bool, as_json: bool) -> None:
    """Write the weights of the checkpoint REF to FILE (checked against their hash first), e.g. `zoo export
    resnet20@best resnet20.safetensors`. An existing FILE is refused unless --force."""
    from pathlib import Path

    from zoo.exporting import export_format

    reg = registry_of(ctx)
    rec = reg.get(ref)
    if Path(file).exists() and not Path(file).is_dir() and not force:
        raise ZooError(f"{file} already exists; choose another file, or add --force to replace it")
    try:
        path = reg.export(rec, file, format=fmt, overwrite=force)
    except ZooError as exc:
        raise exc.spelled(as_flag) from None
    size = path.stat().st_size
    emit(
        {
            "ref": rec.ref,
            "path": str(path),
            "format": export_format(path, fmt),
            "bytes": size,
            "sha256": rec.sha256,
        },
        as_json,
        lambda: click.echo(
            f"exported {rec.ref} to {path} ({fmt_params(rec.num_params)} params, {size} bytes)"
        ),
    )


def names_a_checkpoint(text: str) -> bool:
    """Whether ``text`` is a checkpoint reference that no architecture name can be: ``name:vN``,
    ``name@alias`` or ``id:N`` (a bare name stays an architecture name)."""
    from zoo.refs import parse_ref

    try:
        r = parse_ref(text)
    except ZooError:
        return False
    return r.id is not None or r.version is not None or r.alias is not None


def serve_reference(
    ctx: click.Context,
    ref: str,
    dataset: str | None,
    out: str | None,
    as_json: bool,
    others: dict[str, object],
) -> None:
    """``zoo get REF``: the one checkpoint REF names, saved as is (what a user who names a version expects),
    or a refusal saying why, before anything is written."""
    given = sorted(flag for flag, value in others.items() if value not in (None, False))
    if given:
        raise ZooError(
            f"{ref} names one registered checkpoint, which is served as it is; {', '.join(given)} "
            f"{'does' if len(given) == 1 else 'do'} not apply to it. Leave "
            f"{'it' if len(given) == 1 else 'them'} out, or ask for an architecture instead (`zoo get ARCH "
            f"--dataset NAME {given[0]} ...`)"
        )
    reg = registry_of(ctx)
    rec = reg.get(ref)
    if dataset is not None and rec.dataset is not None and dataset != rec.dataset:
        raise ZooError(
            f"{rec.ref} is registered with dataset {rec.dataset}, not {dataset}; leave out --dataset to get "
            f"it as it is, or run `zoo get {rec.arch.name} --dataset {dataset}` for weights for {dataset}"
        )
    path = reg.export(
        rec, out or f"{rec.name}-v{rec.version}.safetensors", format="safetensors", overwrite=True
    )
    data = {
        "source": "registry",
        "ref": rec.ref,
        "arch": rec.arch.name,
        "dataset": rec.dataset,
        "reason": "named by reference",
        "saved": str(path),
        "sha256": rec.sha256,
        "checkpoint": rec.to_dict(),
    }

    def human() -> None:
        rows = [
            ("source", "registry"),
            ("ref", rec.ref),
            ("arch", str(rec.arch)),
            ("dataset", rec.dataset or "-"),
            ("reason", f"{ref} names this checkpoint; served as it is (hash checked)"),
            ("saved", str(path)),
        ]
        for key, value in rows:
            click.echo(f"{key:>10}: {value}")

    emit(data, as_json, human)


def refuse_checkpoint_name(ctx: click.Context, arch: str) -> None:
    """``zoo get NAME`` where NAME is a registered checkpoint's name and no architecture: say how to get that
    checkpoint instead of failing to find an architecture of that name."""
    from zoo.plugins import resolve_arch

    try:
        resolve_arch(arch)
        return
    except ZooError:
        pass
    try:
        versions = registry_of(ctx).versions(arch)
    except ZooError:
        return  # not a checkpoint name either: the architecture error says what is installed
    newest = versions[-1]
    raise ZooError(
        f"{arch} is the name of a registered checkpoint, not an architecture; run `zoo get {newest.ref}` to "
        f"get that checkpoint as it is, or `zoo get {newest.arch.name} --dataset NAME` for weights of its "
        f"architecture ({newest.arch.name}) for a dataset"
    )
