"""The ``zoo`` command line: a thin layer over the library. Commands only call library functions."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from zoo.errors import ZooError

log = logging.getLogger("zoo")


def registry_of(ctx: click.Context, *, create: bool = False):  # type: ignore[no-untyped-def]
    """The registry the command works on (for plugin commands too). Only commands that add (``create=True``)
    may create one: the others fail naming the path, so that a mistyped ``--registry`` is not a new, empty
    registry."""
    from zoo.registry import Registry

    obj = ctx.ensure_object(dict)
    if "registry" not in obj:
        obj["registry"] = Registry(obj.get("url"), blob_root=obj.get("blob_root"), create=create)
        ctx.call_on_close(obj["registry"].close)
    return obj["registry"]


_registry = registry_of


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else call ``human()`` (for plugin commands too)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human()


_emit = emit


def _table(rows: list[list[str]], headers: list[str]) -> None:
    widths = (
        [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else [len(h) for h in headers]
    )
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _checkpoint_rows(records) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [
        [
            r.ref,
            r.family,
            r.arch.name,
            _fmt_params(r.num_params),
            r.dataset or "-",
            ",".join(f"{k}={v:g}" for k, v in sorted(r.metrics.items())) or "-",
            r.origin,
            r.sha256[:12],
        ]
        for r in records
    ]


_HEADERS = ["REF", "FAMILY", "ARCH", "PARAMS", "DATASET", "METRICS", "ORIGIN", "BLOB"]


class ZooGroup(click.Group):
    """The command group: a :class:`~zoo.ZooError` from any command (a plugin's too) becomes one line on
    stderr and exit code 1, however the CLI is invoked. Plugins' commands (``zoo_register_commands``: the
    generator's ``train``, the main job's ``demo``) are added on the first lookup, and again when the set
    of plugins changes."""

    _plugins_generation: int | None = None

    def _add_plugin_commands(self) -> None:
        from zoo import plugins

        if self._plugins_generation != plugins.generation():
            plugins.get_plugin_manager().hook.zoo_register_commands(cli=self)
            self._plugins_generation = plugins.generation()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ZooError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=ZooGroup)
@click.option(
    "--registry",
    "url",
    envvar="ZOO_REGISTRY_URL",
    default=None,
    metavar="URL",
    help="Registry database: a SQLAlchemy URL or a SQLite path (default: sqlite:///registry.db).",
)
@click.option(
    "--blob-root",
    envvar="ZOO_BLOB_ROOT",
    default=None,
    metavar="DIR",
    help="Blob store folder (default: registry.blobs/ beside a SQLite file).",
)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="zoo")
@click.pass_context
def cli(ctx: click.Context, url: str | None, blob_root: str | None, verbose: int) -> None:
    """zoo: a registry of pretrained PyTorch models, and a generator of new weights from it."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict).update(url=url, blob_root=blob_root)


def as_flag(keyword: str, value: Any) -> str:
    """A Python keyword argument of a message's fix as this command line says it: ``weights='ema'`` ->
    ``--weights ema`` (for :meth:`ZooError.spelled`)."""
    flag = "--" + keyword.replace("_", "-")
    return flag if value is None else f"{flag} {shlex.quote(str(value))}"


@cli.command()
@click.argument("path", type=click.Path())  # a folder is refused by zoo (one Error: line), not click
@click.option("--name", help="Checkpoint name (default: the file stem). An existing name gets a new version.")
@click.option("--arch", help="Architecture name or spec JSON (default: detected from the weights).")
@click.option("--dataset", help="Name of the dataset the weights were trained on.")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=VALUE", help="A metric, e.g. accuracy=0.93.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option(
    "--origin", default="imported", type=click.Choice(["imported", "trained", "fine-tuned", "generated"])
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
    try:
        rec = _registry(ctx, create=True).add(
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
    _emit(
        rec.to_dict(),
        as_json,
        lambda: click.echo(
            f"added {rec.ref}: {rec.arch} ({_fmt_params(rec.num_params)} params), blob {rec.sha256[:12]}"
        ),
    )


@cli.command("list")
@click.option("--family", help="Only this family.")
@click.option("--name", help="Name or glob, e.g. 'resnet*'.")
@click.option("--latest", is_flag=True, help="Only the newest version of each name.")
@click.option("--limit", type=int, default=None)
@json_option
@click.pass_context
def list_(
    ctx: click.Context, family: str | None, name: str | None, latest: bool, limit: int | None, as_json: bool
) -> None:
    """List checkpoints, newest first."""
    recs = _registry(ctx).list(family=family, name=name, latest_only=latest, limit=limit)
    _emit([r.to_dict() for r in recs], as_json, lambda: _table(_checkpoint_rows(recs), _HEADERS))


@cli.command()
@click.argument("ref")
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show one checkpoint (REF: name, name:vN, name@alias or id:N) with its lineage and aliases."""
    reg = _registry(ctx)
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

    _emit(data, as_json, human)


@cli.command()
@click.option("--family")
@click.option("--arch", help="Architecture variant name, e.g. resnet20.")
@click.option("--dataset")
@click.option("--tag", "tags", multiple=True, help="Required tag (repeatable).")
@click.option("--metric", "metrics", multiple=True, metavar="EXPR", help="Threshold, e.g. 'accuracy>=0.9'.")
@click.option("--name", help="Name or glob.")
@click.option("--origin", type=click.Choice(["imported", "trained", "fine-tuned", "generated"]))
@click.option("--latest", is_flag=True, help="Only the newest version of each name.")
@click.option("--limit", type=int, default=None)
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
    recs = _registry(ctx).search(
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
    _emit([r.to_dict() for r in recs], as_json, lambda: _table(_checkpoint_rows(recs), _HEADERS))


@cli.command("load-check")
@click.argument("refs", nargs=-1, required=True)
@json_option
@click.pass_context
def load_check(ctx: click.Context, refs: tuple[str, ...], as_json: bool) -> None:
    """Load checkpoints as modules (hash verified) and run a forward pass on a dummy input."""
    import torch

    from zoo.plugins import get_family

    reg = _registry(ctx)
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
            results.append({"ref": ref, "ok": False, "error": str(exc)})
    _emit(
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
    a = _registry(ctx).alias(ref, alias)
    _emit(
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
    reg = _registry(ctx)
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
    _emit(
        impact.to_dict(),
        as_json,
        lambda: click.echo(
            f"removed {impact.checkpoint.ref} (id:{impact.checkpoint.id})"
            + "".join(f"\n  {line}" for line in impact.describe())
        ),
    )


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
    reg = _registry(ctx)
    rep = reg.verify(repair=repair) if grace_s is None else reg.verify(repair=repair, grace_s=grace_s)

    def human() -> None:
        click.echo(
            f"checked {rep.checked} blobs: {rep.ok} ok, {len(rep.missing)} missing, "
            f"{len(rep.corrupt)} corrupt,"
            f" {len(rep.orphan_files)} orphan files, {len(rep.orphan_rows)} orphan rows"
            + (" (repaired orphans)" if repair else "")
        )
        for sha in rep.missing:
            click.echo(f"missing  {sha}")
        for sha in rep.corrupt:
            click.echo(f"corrupt  {sha}")

    _emit(rep.to_dict(), as_json, human)
    if rep.missing or rep.corrupt or (not repair and not rep.clean):
        sys.exit(1)


@cli.command()
@json_option
def plugins(as_json: bool) -> None:
    """List loaded plugins and the architecture families and generator kinds they provide."""
    from zoo.generators import generator_kinds
    from zoo.plugins import families, list_plugins

    infos = list_plugins()
    fams = families()
    kinds = generator_kinds()
    data = {
        "plugins": [
            {"name": p.name, "source": p.source, "module": p.module, "hooks": list(p.hooks), "error": p.error}
            for p in infos
        ],
        "families": {
            n: {"summary": f.summary, "variants": f.variants(), "plugin": type(f).__module__}
            for n, f in fams.items()
        },
        "generator_kinds": {
            n: {"description": k.description, "plugin": type(k).__module__} for n, k in kinds.items()
        },
    }

    def human() -> None:
        _table(
            [
                [p.name, p.source, p.module, ", ".join(h.removeprefix("zoo_") for h in p.hooks) or p.error]
                for p in infos
            ],
            ["PLUGIN", "SOURCE", "MODULE", "HOOKS"],
        )
        click.echo("")
        _table(
            [
                [n, f.summary, ", ".join(f.variants()[:6]) + (" ..." if len(f.variants()) > 6 else "")]
                for n, f in fams.items()
            ],
            ["FAMILY", "SUMMARY", "VARIANTS"],
        )
        if kinds:
            click.echo("")
            _table(
                [[n, k.description, type(k).__module__] for n, k in kinds.items()],
                ["GENERATOR KIND", "DESCRIPTION", "PLUGIN"],
            )

    _emit(data, as_json, human)


@cli.group()
def datasets() -> None:
    """Register and list datasets (with their embeddings)."""


@datasets.command("register")
@click.argument("name")
@click.argument("source")
@click.option("--description", default=None)
@click.option("--encoder", "encoders", multiple=True, help="Dataset encoder id (repeatable; default: all).")
@click.option("--replace", is_flag=True, help="Replace a dataset of that name whose content differs.")
@json_option
@click.pass_context
def datasets_register(
    ctx: click.Context,
    name: str,
    source: str,
    description: str | None,
    encoders: tuple[str, ...],
    replace: bool,
    as_json: bool,
) -> None:
    """Register SOURCE as dataset NAME: an image folder, an MNIST folder, or "digits"."""
    rec = _registry(ctx, create=True).register_dataset(
        name, source, description=description, encoders=list(encoders) or None, replace=replace
    )
    _emit(
        rec.to_dict(),
        as_json,
        lambda: click.echo(
            f"registered {rec.name}: {rec.num_samples} samples, {rec.num_classes} classes, "
            f"{rec.fingerprint[:12]}"
        ),
    )


@datasets.command("list")
@json_option
@click.pass_context
def datasets_list(ctx: click.Context, as_json: bool) -> None:
    """List registered datasets."""
    recs = _registry(ctx).datasets()
    _emit(
        [r.to_dict() for r in recs],
        as_json,
        lambda: _table(
            [
                [
                    r.name,
                    str(r.num_samples),
                    str(r.num_classes),
                    r.fingerprint[:12] or "-",
                    r.description[:60],
                ]
                for r in recs
            ],
            ["NAME", "SAMPLES", "CLASSES", "FINGERPRINT", "DESCRIPTION"],
        ),
    )


@cli.command()
@click.argument("arch")
@click.argument("dataset")
@click.option("-k", default=5, show_default=True, help="How many checkpoints.")
@click.option("--encoder", default=None, help="Dataset encoder id (default: the offline default).")
@click.option(
    "--match",
    type=click.Choice(["exact", "family", "any"]),
    default="exact",
    show_default=True,
    help="Which architectures count as compatible.",
)
@json_option
@click.pass_context
def nearest(
    ctx: click.Context, arch: str, dataset: str, k: int, encoder: str | None, match: str, as_json: bool
) -> None:
    """Checkpoints of ARCH ranked by how similar their dataset is to DATASET (a registered name)."""
    hits = _registry(ctx).nearest(arch, dataset, k, encoder=encoder, match=match)
    _emit(
        [{"ref": h.checkpoint.ref, "similarity": h.similarity, "dataset": h.dataset} for h in hits],
        as_json,
        lambda: _table(
            [[h.checkpoint.ref, f"{h.similarity:.4f}", h.dataset] for h in hits],
            ["REF", "SIMILARITY", "DATASET"],
        ),
    )


@cli.command()
@click.option("--family", help="Only generators covering this family.")
@json_option
@click.pass_context
def generators(ctx: click.Context, family: str | None, as_json: bool) -> None:
    """List stored generator versions, newest first."""
    recs = _registry(ctx).generators(family=family)
    _emit(
        [
            {
                "ref": g.ref,
                "status": g.status,
                "families": list(g.families),
                "trained_on": len(g.trained_on),
                "watermark": g.watermark,
                "metrics": dict(g.metrics),
            }
            for g in recs
        ],
        as_json,
        lambda: _table(
            [
                [
                    g.ref,
                    g.status,
                    ",".join(g.families),
                    str(len(g.trained_on)),
                    str(g.watermark),
                    g.created_at.isoformat(timespec="seconds"),
                ]
                for g in recs
            ],
            ["REF", "STATUS", "FAMILIES", "CHECKPOINTS", "WATERMARK", "CREATED"],
        ),
    )


@cli.command()
@click.argument("arch")
@click.option(
    "--dataset",
    required=True,
    metavar="NAME_OR_PATH",
    help="A registered dataset name, a built-in (digits), an image folder or an MNIST folder.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to save the weights (.safetensors). Default: ARCH.safetensors here.",
)
@click.option(
    "--min-similarity",
    type=float,
    default=None,
    help="Dataset similarity a checkpoint needs to be served as is (default: 0.99, calibrated for the "
    "pixels encoder).",
)
@click.option(
    "--generate", "force_generate", is_flag=True, help="Always generate, whatever the registry holds."
)
@click.option(
    "--retrieve-only", is_flag=True, help="Never generate: a similar-enough checkpoint or an error."
)
@click.option(
    "--labelled",
    metavar="PATH",
    default=None,
    help="Labelled samples (image folder, MNIST folder, digits) to score candidates on and pick the best.",
)
@click.option(
    "--samples", type=int, default=None, help="Generated samples to score with --labelled (best-of-n)."
)
@click.option(
    "--generator",
    "generator_ref",
    default=None,
    help="Generator version (default: newest promoted that knows ARCH, else the newest candidate).",
)
@click.option("--temperature", type=float, default=None, help="Sampling temperature (0: greedy).")
@click.option("--seed", type=int, default=None, help="Sampling seed (default 0: reproducible).")
@click.option(
    "--register", is_flag=True, help="Register generated weights (origin 'generated', with the generator)."
)
@click.option("--name", default=None, help="Name to register generated weights under.")
@json_option
@click.pass_context
def get(
    ctx: click.Context,
    arch: str,
    dataset: str,
    out: str | None,
    min_similarity: float | None,
    force_generate: bool,
    retrieve_only: bool,
    labelled: str | None,
    samples: int | None,
    generator_ref: str | None,
    temperature: float | None,
    seed: int | None,
    register: bool,
    name: str | None,
    as_json: bool,
) -> None:
    """Weights of ARCH for a dataset: the nearest similar-enough checkpoint, or generated ones.

    Prints where they came from and why, and saves them as safetensors (`zoo add` reads the file back).
    """
    from zoo.provision import generate, retrieve, retrieve_or_generate

    if force_generate and retrieve_only:
        raise click.UsageError("--generate and --retrieve-only exclude each other")
    options = {
        k: v
        for k, v in {
            "min_similarity": min_similarity,
            "samples": samples,
            "generator": generator_ref,
            "temperature": temperature,
            "seed": seed,
        }.items()
        if v is not None
    }
    reg = _registry(ctx)
    if retrieve_only:
        prov = retrieve(arch, dataset, registry=reg, labelled=labelled, **options)
    elif force_generate:
        prov = generate(
            arch, dataset, registry=reg, labelled=labelled, register=register, name=name, **options
        )
    else:
        prov = retrieve_or_generate(
            arch, dataset, registry=reg, labelled=labelled, register=register, name=name, **options
        )
    path = prov.save(out or f"{arch}.safetensors")
    data = {**prov.to_dict(), "saved": str(path)}

    def human() -> None:
        sim = f"{prov.similarity:.4f}" if prov.similarity is not None else "-"
        rows = [
            ("source", prov.source),
            ("ref", prov.ref),
            ("arch", str(prov.arch)),
            ("dataset", str(dataset)),
            ("similarity", f"{sim} (threshold {prov.min_similarity:g})"),
        ]
        if prov.score is not None:
            rows.append(("score", f"{prov.score:.4f} (best of {len(prov.scores)} scored)"))
        rows += [("reason", prov.reason), ("seconds", f"{prov.seconds:.2f}"), ("saved", str(path))]
        if prov.registered is not None:
            rows.append(("registered", prov.registered.ref))
        for key, value in rows:
            click.echo(f"{key:>10}: {value}")

    _emit(data, as_json, human)


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
        rep = run_reindex(_registry(ctx, create=True), cfg)
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

    _emit(rep.to_dict(), as_json, human)
    if rep.damaged:
        sys.exit(1)


@cli.command()
@click.option("--kind", default=None, help="Only runs of this job (e.g. reindex).")
@click.option(
    "--status", type=click.Choice(["running", "succeeded", "failed", "skipped", "killed"]), default=None
)
@click.option("--limit", type=int, default=20, show_default=True)
@json_option
@click.pass_context
def jobs(ctx: click.Context, kind: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Recorded job runs, newest first: when, how long, how they ended and what they did."""
    from zoo.jobs import job_runs

    runs = job_runs(_registry(ctx), kind=kind, status=status, limit=limit)

    quiet = {"blobs_ok", "dataset_vectors_current", "files_scanned", "files_hashed"}  # in --json only

    def counts(c: Any) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(c.items()) if v and k not in quiet) or "-"

    _emit(
        [r.to_dict() for r in runs],
        as_json,
        lambda: _table(
            [
                [
                    str(r.id),
                    r.kind,
                    r.status,
                    r.started_at.isoformat(timespec="seconds"),
                    r.finished_at.isoformat(timespec="seconds") if r.finished_at else "-",
                    f"{r.duration_s:.1f}s" if r.duration_s is not None else "-",
                    counts(r.counts),
                ]
                for r in runs
            ],
            ["ID", "KIND", "STATUS", "STARTED", "FINISHED", "DURATION", "COUNTS"],
        ),
    )


def _add_plugin_commands() -> None:
    cli._add_plugin_commands()  # type: ignore[attr-defined]


def main() -> None:
    """Console entry point: runs the CLI and turns zoo errors into one-line messages and exit code 1."""
    try:
        _add_plugin_commands()
        code = cli.main(standalone_mode=False)  # returns the code of ctx.exit(...), e.g. ZooGroup's 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ZooError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except SystemExit:
        raise
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
