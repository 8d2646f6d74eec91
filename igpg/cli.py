"""IGPG's commands on the ``zoo`` command line (:mod:`igpg.plugin` adds them: ``zoo_register_commands``)."""

from __future__ import annotations

import json

import click

from zoo.cli import emit, json_option, registry_of


@click.command()
@click.option("--family", help="Train on every checkpoint of this family that names a dataset.")
@click.option("--arch", help="Train on checkpoints of exactly this architecture.")
@click.option("--k", default=16, show_default=True, help="Chunk size (values per chunk).")
@click.option("--tokenizer-steps", default=2000, show_default=True, help="Stage 1 optimizer steps.")
@click.option("--prior-steps", default=1500, show_default=True, help="Stage 2 optimizer steps.")
@click.option(
    "--levels", default=6, show_default=True, help="Residual quantization levels (tokens per chunk)."
)
@click.option(
    "--coords",
    type=click.Choice(["descriptor", "layer"]),
    default="descriptor",
    show_default=True,
    help="How chunks are located: slot descriptors (serves unseen depths/widths of trained families) "
    "or the absolute layer index (the old mode).",
)
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
@click.option("--name", default="igpg", show_default=True, help="Generator name; each run adds a version.")
@click.option("--promote", is_flag=True, help="Mark the new version as the one to serve.")
@json_option
@click.pass_context
def train(
    ctx: click.Context,
    family: str | None,
    arch: str | None,
    k: int,
    tokenizer_steps: int,
    prior_steps: int,
    levels: int,
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

    Under torchrun (`torchrun --standalone --nproc_per_node N -m zoo train ...`) every process trains in
    DDP; rank 0 alone stores the generator and prints the result.
    """
    from igpg import distributed
    from igpg.registry_io import train_on_registry
    from igpg.tokenizer import TokenizerConfig
    from igpg.train import TrainConfig

    cfg = TrainConfig(
        tokenizer=TokenizerConfig(levels=levels),
        tokenizer_steps=tokenizer_steps,
        prior_steps=prior_steps,
        device=device,
        coords=coords,
    )
    _, rec = train_on_registry(
        registry_of(ctx), family=family, arch=arch, k=k, config=cfg, name=name, promote=promote
    )
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
