"""The main job as a zoo plugin: the ``zoo demo`` command and the ``tinyzoo`` re-indexing evaluator.

Registered through the ``zoo.plugins`` entry-point group (``demo = "zoo_demo.plugin"``). Light on purpose:
the job, igpg and the tiny zoo are imported when the command or the evaluator runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from zoo import hookimpl


@click.command()
@click.option(
    "--out",
    default="zoo-run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Working folder for registry.db, report.md and figure.png (an existing zoo there is reused).",
)
@click.option(
    "--tasks", default=None, help="Comma-separated training tasks (default: 8, MNIST ones when found)."
)
@click.option(
    "--held-out", default=None, help="Comma-separated held-out tasks (default: digits-rot15, mnist-rot180)."
)
@click.option("--per-task", default=6, show_default=True, help="Checkpoints (seeds) per task.")
@click.option("--samples", default=5, show_default=True, help="Generated networks per task (best-of-n).")
@click.option(
    "--tokenizer-steps", default=None, type=int, help="Generator stage-1 steps (default: the fast run's)."
)
@click.option(
    "--prior-steps", default=None, type=int, help="Generator stage-2 steps (default: the fast run's)."
)
@click.option(
    "--fine-tune-steps", default=150, show_default=True, help="Fine-tuning steps on held-out tasks."
)
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
@click.option(
    "--mnist",
    "mnist_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder with the MNIST IDX files (default: $ZOO_MNIST_DIR or ../shared/data/mnist).",
)
@click.option("--no-pretrained", is_flag=True, help="Skip importing the real pretrained ResNets.")
def demo(
    out: str,
    tasks: str | None,
    held_out: str | None,
    per_task: int,
    samples: int,
    tokenizer_steps: int | None,
    prior_steps: int | None,
    fine_tune_steps: int,
    device: str,
    mnist_dir: str | None,
    no_pretrained: bool,
) -> None:
    """The main job: build the tiny zoo, train the generator, retrieve or generate, fine-tune, and report.

    The defaults take under 10 minutes on 2 CPU cores; raise --per-task, --samples and the step counts
    (and use --device cuda) for a bigger run.
    """
    from zoo_demo.job import DemoConfig, fast_generator_config, run_demo

    if mnist_dir:
        os.environ["ZOO_MNIST_DIR"] = mnist_dir
    gen = fast_generator_config()
    if tokenizer_steps is not None:
        gen.tokenizer_steps = tokenizer_steps
    if prior_steps is not None:
        gen.prior_steps = prior_steps

    def split(value: str | None) -> tuple[str, ...] | None:
        return tuple(t.strip() for t in value.split(",") if t.strip()) if value else None

    cfg = DemoConfig(
        tasks=split(tasks),
        held_out=split(held_out),
        per_task=per_task,
        samples=samples,
        fine_tune_steps=fine_tune_steps,
        generator=gen,
        device=device,
        import_pretrained=not no_pretrained,
    )
    report = run_demo(out, cfg)
    click.echo(f"report: {report}")


def tinyzoo_evaluator() -> Any:
    """Sample accuracy on the tiny-zoo tasks (:func:`zoo_demo.tinyzoo.evaluate`), for ``zoo reindex``."""
    from zoo import accuracy_evaluator
    from zoo_demo.tinyzoo import evaluate

    return accuracy_evaluator(evaluate)


@hookimpl
def zoo_register_commands(cli: click.Group) -> None:
    cli.add_command(demo)


@hookimpl
def zoo_register_evaluators(register: Callable[[str, Callable[[], Any]], None]) -> None:
    register("tinyzoo", tinyzoo_evaluator)


__all__ = ["demo", "tinyzoo_evaluator"]
