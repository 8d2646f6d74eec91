"""IGPG's commands on the ``zoo`` command line (:mod:`igpg.plugin` adds them: ``zoo_register_commands``).

Light on purpose (``zoo --help`` imports it): torch and the model code are imported when a command runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import click

from zoo.cli import emit, json_option, registry_of


@dataclass(frozen=True)
class Preset:
    """A training preset of ``zoo train``: the settings it changes and what it costs (measured)."""

    tokenizer_steps: int  # stage 1 optimizer steps
    prior_steps: int  # stage 2 optimizer steps
    levels: int  # residual quantization levels (tokens per chunk)
    prior: dict[str, Any]  # PriorConfig fields (n_embd, n_layer) and TrainConfig prior_batch / prior_lr
    expected: str  # wall time on 2 idle CPU cores for a cnn-tiny zoo (bench/README.md, "zoo train presets")
    use: str  # what it is for


PRESETS: dict[str, Preset] = {  # name -> settings; explicit --tokenizer-steps/--prior-steps/--levels win
    "quick": Preset(
        300,
        300,
        6,
        {"n_embd": 128, "n_layer": 3, "prior_batch": 8, "prior_lr": 4e-3},
        "about 2 min",
        "to see the pipeline run end to end; its samples are rough",
    ),
    "demo": Preset(
        2000,
        1500,
        10,
        {"n_embd": 128, "n_layer": 3, "prior_batch": 8, "prior_lr": 4e-3},
        "about 8 min",
        "the main job's (zoo demo) generator: memorises a zoo of about 50 cnn-tiny networks",
    ),
    "full": Preset(
        2000,
        1500,
        6,
        {"n_embd": 192, "n_layer": 4, "prior_batch": 16, "prior_lr": 1e-3},
        "about 16 min",
        "the larger prior, for larger zoos",
    ),
}
DEFAULT_PRESET = "full"


def _presets_help() -> str:
    return "; ".join(
        f"{name}: {p.tokenizer_steps:,} + {p.prior_steps:,} steps, {p.expected} ({p.use})"
        for name, p in PRESETS.items()
    )


@click.command()
@click.option("--family", help="Train on every checkpoint of this family that names a dataset.")
@click.option("--arch", help="Train on checkpoints of exactly this architecture.")
@click.option("--k", default=16, show_default=True, help="Chunk size (values per chunk).")
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default=DEFAULT_PRESET,
    show_default=True,
    help="Training settings and their time on 2 idle CPU cores for a cnn-tiny zoo (2-4x that on a busy "
    "machine; longer networks take longer, up to the prior's 256-chunk window): " + _presets_help() + ".",
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

    How long it takes: see --preset (the time grows with the networks' length up to the prior's window, not
    with the number of checkpoints). Each stage prints its own estimate once its first steps are timed, a
    progress bar shows on a terminal, and `zoo jobs` lists the run (running, then how it ended and what it
    stored).

    Under torchrun (`torchrun --standalone --nproc_per_node N -m zoo train ...`) every process trains in
    DDP; rank 0 alone stores the generator and prints the result.
    """
    from igpg import distributed
    from igpg.prior import PriorConfig
    from igpg.registry_io import train_on_registry
    from igpg.tokenizer import TokenizerConfig
    from igpg.train import TrainConfig

    chosen = PRESETS[preset]
    prior = {k: v for k, v in chosen.prior.items() if not k.startswith("prior_")}
    cfg = TrainConfig(
        tokenizer=TokenizerConfig(levels=levels or chosen.levels),
        prior=PriorConfig(**prior),
        tokenizer_steps=tokenizer_steps or chosen.tokenizer_steps,
        prior_steps=prior_steps or chosen.prior_steps,
        device=device,
        coords=coords,
        **{k: v for k, v in chosen.prior.items() if k.startswith("prior_")},
    )
    logging.getLogger("igpg.train.expected").setLevel(logging.INFO)  # each stage's estimate, on stderr
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
