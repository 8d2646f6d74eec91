"""Dataset commands: ``datasets register`` and ``datasets list``."""

from __future__ import annotations

import click

from zoo.cli.app import (
    cli,
    emit,
    json_option,
    registry_of,
    table,
)


@cli.group()
def datasets() -> None:
    """Register and list datasets (with their embeddings)."""


@datasets.command("register")
@click.argument("name")
@click.argument("source")
@click.option("--description", default=None, help="What the data are (shown by `zoo datasets list`).")
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
    rec = registry_of(ctx, create=True).register_dataset(
        name, source, description=description, encoders=list(encoders) or None, replace=replace
    )
    emit(
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
    recs = registry_of(ctx).datasets()
    emit(
        [r.to_dict() for r in recs],
        as_json,
        lambda: table(
            [
                [
                    r.name,
                    str(r.num_samples),
                    str(r.num_classes),
                    r.fingerprint[:12] or "-",
                    r.description or "-",  # whole: a cut description misleads
                ]
                for r in recs
            ],
            ["NAME", "SAMPLES", "CLASSES", "FINGERPRINT", "DESCRIPTION"],
        ),
    )
