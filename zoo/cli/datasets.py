"""Dataset commands: ``datasets register``, ``datasets list`` and ``datasets rm``."""

from __future__ import annotations

import sys

import click

from zoo.cli.app import (
    as_flag,
    cli,
    emit,
    json_option,
    registry_of,
    table,
)
from zoo.errors import ZooError


@cli.group()
def datasets() -> None:
    """Register, list and remove datasets (with their embeddings)."""


@datasets.command("register")
@click.argument("name")
@click.argument("source")
@click.option("--description", default=None, help="What the data are (shown by `zoo datasets list`).")
@click.option(
    "--encoder",
    "encoders",
    multiple=True,
    help="Dataset encoder id (repeatable; default: every default encoder; probe runs only when named).",
)
@click.option("--replace", is_flag=True, help="Replace a dataset of that name whose content differs.")
@click.option(
    "--size",
    metavar="HxW",
    default=None,
    help="Resize every image to H by W pixels (e.g. 28x28, or 28): for a folder of mixed image sizes.",
)
@json_option
@click.pass_context
def datasets_register(
    ctx: click.Context,
    name: str,
    source: str,
    description: str | None,
    encoders: tuple[str, ...],
    replace: bool,
    size: str | None,
    as_json: bool,
) -> None:
    """Register SOURCE as dataset NAME: an image folder, an MNIST folder, or "digits"."""
    data: object = source
    if size is not None:
        data = _resized(source, _parse_size(size))
    rec = registry_of(ctx, create=True).register_dataset(
        name, data, description=description, encoders=list(encoders) or None, replace=replace
    )
    emit(
        rec.to_dict(),
        as_json,
        lambda: click.echo(
            f"registered {rec.name}: {rec.num_samples} samples, {rec.num_classes} classes, "
            f"{rec.fingerprint[:12]}"
        ),
    )


def _parse_size(text: str) -> tuple[int, int]:
    """``"28x32"`` -> (28, 32), ``"28"`` -> (28, 28); a click usage error otherwise."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) == 1:
        hw *= 2
    if len(hw) != 2 or min(hw) < 1 or max(hw) > 4096:
        raise click.BadParameter(
            f"{text!r} is not a size; give HxW (e.g. 28x28) or one side (28)", param_hint="--size"
        )
    return hw[0], hw[1]


def _resized(source: str, hw: tuple[int, int]) -> object:
    """SOURCE read with every image resized to ``hw`` (an image folder reads them at that size)."""
    from pathlib import Path

    from zoo import datasets as zd  # torch: only for a resized registration

    path = Path(source)
    if path.is_dir() and zd.find_mnist(path) is None:
        return zd.from_image_folder(path, size=hw)
    return zd.as_dataset(source).resize(hw)


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


@datasets.command("rm", short_help="Remove a dataset and its vectors (never a checkpoint).")
@click.argument("name")
@click.option(
    "--detach",
    is_flag=True,
    help="Also when checkpoints are registered with NAME: they stay, with their dataset cleared "
    "(recorded in `zoo history`). Without it such a removal is refused.",
)
@click.option("--yes", is_flag=True, help="Remove without asking (needed when stdin is not a terminal).")
@json_option
@click.pass_context
def datasets_rm(ctx: click.Context, name: str, detach: bool, yes: bool, as_json: bool) -> None:
    """Remove dataset NAME and its vectors; never a checkpoint, never another dataset. Refused while
    checkpoints are registered with it, unless --detach. Without --yes it asks, and refuses when it cannot
    ask."""
    reg = registry_of(ctx)
    impact = reg.dataset_removal_impact(name)
    touches = f"; clears the dataset of {', '.join(impact.checkpoints)}" if impact.checkpoints else ""
    if impact.checkpoints and not detach:  # refused anyway: say so before asking
        n = len(impact.checkpoints)
        shown = ", ".join(impact.checkpoints[:5]) + (f" and {n - 5} more" if n > 5 else "")
        again = f"zoo datasets rm {name} --detach{' --yes' if yes else ''}{' --json' if as_json else ''}"
        raise ZooError(
            f"dataset {name} is the dataset of {n} checkpoint(s) ({shown}); nothing was removed. Run "
            f"`{again}` to remove it and clear their dataset (the checkpoints stay), or "
            f"remove those checkpoints first (`zoo rm {impact.checkpoints[0]}`)"
        )
    if not yes:
        if not sys.stdin.isatty():
            raise ZooError(
                f"not removing dataset {name} ({impact.vectors} vectors{touches}): confirmation needed and "
                f"stdin is not a terminal; run `zoo datasets rm {name}{' --detach' if detach else ''} --yes"
                f"{' --json' if as_json else ''}`"
            )
        click.confirm(f"remove dataset {name} ({impact.vectors} vectors{touches})?", abort=True)
    try:
        removal = reg.remove_dataset(name, detach=detach)
    except ZooError as exc:  # checkpoints were registered with it meanwhile
        raise exc.spelled(as_flag) from None
    emit(
        removal.to_dict(),
        as_json,
        lambda: click.echo(
            f"removed dataset {name} ({removal.vectors} vectors)"
            + (f"; cleared the dataset of {', '.join(removal.checkpoints)}" if removal.checkpoints else "")
        ),
    )
