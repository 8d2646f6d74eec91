"""Serving weights: ``nearest`` (retrieval only), ``get`` (retrieve or generate) and ``generators``."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.app import (
    cli,
    emit,
    json_option,
    registry_of,
    table,
)
from zoo.errors import ZooError


def resolve(arch: str):  # type: ignore[no-untyped-def]
    from zoo.plugins import resolve_arch

    return resolve_arch(arch)


@cli.command()
@click.argument("arch")
@click.argument("dataset")
@click.option("-k", type=click.IntRange(min=1), default=5, show_default=True, help="How many checkpoints.")
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
    """Checkpoints of ARCH ranked by how similar their dataset is to DATASET (a registered name, see `zoo
    datasets list`; or data: an image folder, an MNIST folder, digits). A registered name without a vector
    yet matches the checkpoints registered with exactly that name (similarity 1.0). When none is found it
    says why, with the command that fixes it."""
    from zoo.retrieval import why_none

    reg = registry_of(ctx)
    hits = reg.nearest(arch, dataset, k, encoder=encoder, match=match)
    emit(
        [{"ref": h.checkpoint.ref, "similarity": h.similarity, "dataset": h.dataset} for h in hits],
        as_json,
        lambda: table(
            [[h.checkpoint.ref, f"{h.similarity:.4f}", h.dataset] for h in hits],
            ["REF", "SIMILARITY", "DATASET"],
        ),
    )
    if not hits and not as_json:  # say why, on stderr (stdout stays the table; --json stays [] alone)
        reason, hints = why_none(reg, resolve(arch), dataset, encoder=encoder, match=match)
        for hint in hints:
            reason = reason.replace(hint.python, hint.cli)
        click.echo(f"nothing found: {reason}", err=True)


@cli.command()
@click.option("--family", help="Only generators covering this family.")
@json_option
@click.pass_context
def generators(ctx: click.Context, family: str | None, as_json: bool) -> None:
    """List stored generator versions, newest first."""
    recs = registry_of(ctx).generators(family=family)
    emit(
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
        lambda: table(
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
    default=None,
    metavar="NAME_OR_PATH",
    help="A registered dataset name (`zoo datasets list`; a name without a vector yet matches the "
    "checkpoints registered with exactly it), a built-in (digits: scikit-learn's raw 8x8 images), an image "
    "folder or an MNIST folder (required unless ARCH is a checkpoint reference).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to save the weights (.safetensors). Default: <variant name>.safetensors here "
    "(e.g. resnet20.safetensors, also for a spec given as JSON). An existing file is refused unless "
    "--force; the folder must exist.",
)
@click.option("--force", is_flag=True, help="Replace the --out file if it exists.")
@click.option(
    "--min-similarity",
    type=click.FloatRange(-1.0, 1.0),
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
    help="Labelled samples to score candidates on and pick the best: a registered dataset whose data zoo "
    "can read again (its name always means its own data; `zoo datasets list`), an image folder, an MNIST "
    "folder, or digits (scikit-learn's raw 8x8 images). Their image size must be what ARCH takes.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=None,
    help="Generated samples to score with --labelled (best-of-n).",
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
    "--adapt/--no-adapt",
    default=None,
    help="When no checkpoint of ARCH is similar enough, adapt same-family checkpoints to it (Net2Net: "
    "deeper/wider, function-preserving). Default: on.",
)
@click.option(
    "--adapt-shallower",
    is_flag=True,
    help="Also adapt deeper checkpoints by dropping blocks (approximate).",
)
@click.option(
    "--register",
    is_flag=True,
    help="Register generated weights (origin 'generated', with the generator) or adapted ones (origin "
    "'adapted', the source checkpoint as parent).",
)
@click.option("--name", default=None, help="Name to register generated or adapted weights under.")
@json_option
@click.pass_context
def get(
    ctx: click.Context,
    arch: str,
    dataset: str,
    out: str | None,
    force: bool,
    min_similarity: float | None,
    force_generate: bool,
    retrieve_only: bool,
    labelled: str | None,
    samples: int | None,
    generator_ref: str | None,
    temperature: float | None,
    seed: int | None,
    adapt: bool | None,
    adapt_shallower: bool,
    register: bool,
    name: str | None,
    as_json: bool,
) -> None:
    """Weights of ARCH for a dataset: the nearest similar-enough checkpoint, one of another architecture of
    its family adapted to ARCH, or generated ones.

    Prints where they came from and why, and saves them as safetensors (`zoo add` reads the file back).
    ARCH may also be a checkpoint reference (name:vN, name@alias, id:N): that checkpoint is saved as it is.
    """
    from zoo.cli.checkpoints import names_a_checkpoint, refuse_checkpoint_name, serve_reference

    if out is not None:
        writable_out(out, force)  # refused before any work, as `zoo export` does
    if names_a_checkpoint(arch):  # `zoo get digits-s5:v1`: that very checkpoint, or a clear refusal
        if out is None:
            try:
                rec = registry_of(ctx).get(arch)
            except ZooError:
                pass  # serve_reference refuses it in its own words
            else:
                out = writable_out(f"{rec.name}-v{rec.version}.safetensors", force)
        others = {
            "--min-similarity": min_similarity,
            "--generate": force_generate,
            "--retrieve-only": retrieve_only,
            "--labelled": labelled,
            "--samples": samples,
            "--generator": generator_ref,
            "--temperature": temperature,
            "--seed": seed,
            "--adapt/--no-adapt": adapt,
            "--adapt-shallower": adapt_shallower,
            "--register": register,
            "--name": name,
        }
        return serve_reference(ctx, arch, dataset, out, as_json, others)
    refuse_checkpoint_name(ctx, arch)  # `zoo get digits-s5`: a checkpoint's name, no architecture
    if dataset is None:
        raise click.UsageError("Missing option '--dataset' (required unless ARCH is a checkpoint reference).")
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
            "adapt": adapt,
            "adapt_shallower": adapt_shallower or None,
        }.items()
        if v is not None
    }
    reg = registry_of(ctx)
    if out is None:  # the default file: refused before any work too
        try:
            out = f"{resolve(arch).name}.safetensors"
        except ZooError:
            pass  # an unknown architecture: provisioning refuses it in its own words
        else:
            writable_out(out, force)
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
    path = prov.save(out or writable_out(f"{prov.arch.name}.safetensors", force))
    data = {**prov.to_dict(), "saved": str(path)}

    def human() -> None:
        sim = f"{prov.similarity:.4f}" if prov.similarity is not None else "-"  # 1.0000001 reads 1.0000
        rows = [
            ("source", prov.source),
            ("ref", prov.ref),
            ("arch", str(prov.arch)),
            ("dataset", str(dataset)),
            ("similarity", f"{sim} (threshold {prov.min_similarity:g})"),
        ]
        if prov.source == "adapted" and prov.checkpoint is not None:
            rows.append(("from", f"{prov.checkpoint.ref} ({prov.checkpoint.arch})"))
            rows.append(("adaptation", prov.adaptation or "-"))
        if prov.score is not None:
            rows.append(("score", f"{prov.score:.4f} (best of {len(prov.scores)} scored)"))
        rows += [("reason", prov.reason_for_cli()), ("seconds", f"{prov.seconds:.2f}"), ("saved", str(path))]
        if prov.registered is not None:
            rows.append(("registered", prov.registered.ref))
        for key, value in rows:
            click.echo(f"{key:>10}: {value}")

    emit(data, as_json, human)


def writable_out(out: str, force: bool) -> str:
    """``out`` when ``zoo get`` may write it: an existing file only with ``--force``, and never into a folder
    that does not exist (as ``zoo export`` refuses both). Raises :class:`ZooError` otherwise."""
    path = Path(out)
    if path.exists() and not force:
        raise ZooError(f"{out} already exists; choose another file with --out, or add --force to replace it")
    if not path.parent.is_dir():
        raise ZooError(f"cannot write {out}: the folder {path.parent} does not exist; create it first")
    return out
