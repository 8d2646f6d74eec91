"""IGPG's commands on the ``zoo`` command line (:mod:`igpg.plugin` adds them: ``zoo_register_commands``).

Light on purpose (``zoo --help`` imports it): torch and the model code are imported when a command runs.
"""

from __future__ import annotations

import json
import logging

import click

from igpg.presets import PRESETS
from zoo.cli import emit, json_option, registry_of


def _presets_help() -> str:
    return "; ".join(f"{name}: {text}" for name, text in PRESETS.items())


@click.command()
@click.option("--family", help="Train on every checkpoint of this family that names a dataset.")
@click.option("--arch", help="Train on checkpoints of exactly this architecture.")
@click.option(
    "--k", type=click.IntRange(min=1), default=16, show_default=True, help="Chunk size (values per chunk)."
)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default="default",
    show_default=True,
    help="Training budget, with its time on 2 idle CPU cores for the 24-checkpoint sample zoo (2-4x that on "
    "a busy machine; longer networks take longer, up to the prior's 256-chunk window): "
    + _presets_help()
    + ".",
)
@click.option(
    "--tokenizer-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Stage 1 optimizer steps (default: the preset's).",
)
@click.option(
    "--prior-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Stage 2 optimizer steps (default: the preset's).",
)
@click.option(
    "--levels",
    type=click.IntRange(min=1),
    default=None,
    help="Residual quantization levels, tokens per chunk (default: the preset's).",
)
@click.option(
    "--coords",
    type=click.Choice(["descriptor", "layer"]),
    default="descriptor",
    show_default=True,
    help="How chunks are located: slot descriptors (serves unseen depths/widths of trained families) "
    "or the absolute layer index (the old mode).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu or cuda.",
)
@click.option("--name", default="igpg", show_default=True, help="Generator name; each run adds a version.")
@click.option("--promote", is_flag=True, help="Mark the new version as the one to serve.")
@json_option
@click.pass_context
def train(
    ctx: click.Context,
    family: str | None,
    arch: str | None,
    k: int,
    preset: str,
    tokenizer_steps: int | None,
    prior_steps: int | None,
    levels: int | None,
    coords: str,
    device: str,
    name: str,
    promote: bool,
    as_json: bool,
) -> None:
    """Train the generator (stage 1 tokenizer, stage 2 prior) on registered checkpoints and store it.

    With --family, on every checkpoint of that family (mixed depths and widths: trained across two or more
    architectures, it also serves the family's other architectures); with --arch, on exactly one
    architecture; with neither, on every checkpoint of every family (one generator across families).
    `zoo sample-zoo` builds a small zoo to train on in about a minute.

    How long it takes: see --preset (the time grows with the networks' length up to the prior's window, not
    with the number of checkpoints). Each stage prints its own estimate once its first steps are timed, a
    progress bar shows on a terminal, and `zoo jobs` lists the run (running, then how it ended and what it
    stored).

    Under torchrun (`torchrun --standalone --nproc_per_node N -m zoo train ...`) every process trains in
    DDP; rank 0 alone stores the generator and prints the result.
    """
    from igpg import distributed
    from igpg.registry_io import check_preconditions, train_on_registry
    from igpg.train import TrainConfig
    from zoo import resolve_arch, training_checkpoints
    from zoo.cli import as_flag
    from zoo.errors import GeneratorError, ZooError

    cfg = TrainConfig.preset(preset)
    if levels is not None:
        cfg.tokenizer.levels = levels
    cfg.tokenizer_steps = cfg.tokenizer_steps if tokenizer_steps is None else tokenizer_steps
    cfg.prior_steps = cfg.prior_steps if prior_steps is None else prior_steps
    cfg.device, cfg.coords = device, coords
    try:  # cheap checks first: a bad name or device is refused before any training, not after it
        check_preconditions(name=name, k=k, device=device)
    except ZooError as exc:
        raise exc.spelled(as_flag) from None
    reg = registry_of(ctx)
    if not training_checkpoints(reg, family=family, arch=resolve_arch(arch) if arch else None):
        what = f"architecture {arch}" if arch else f"family {family}" if family else "the registry"
        raise GeneratorError(
            f"no checkpoints with a dataset in {what} to train on: add some with "
            "`zoo add FILE --dataset NAME`, or build a small real zoo of cnn-tiny with `zoo sample-zoo` "
            "(about a minute)"
        )
    logging.getLogger("igpg.train.expected").setLevel(logging.INFO)  # each stage's estimate, on stderr
    _, rec = train_on_registry(reg, family=family, arch=arch, k=k, config=cfg, name=name, promote=promote)
    if not distributed.is_main():
        return
    data = {
        "ref": rec.ref,
        "status": rec.status,
        "trained_on": len(rec.trained_on),
        "metrics": dict(rec.metrics),
    }
    emit(
        data,
        as_json,
        lambda: click.echo(
            f"stored {rec.ref} ({rec.status}), trained on {len(rec.trained_on)} "
            f"checkpoints: {json.dumps(dict(rec.metrics))}"
        ),
    )


__all__ = ["train"]
