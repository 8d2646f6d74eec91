"""The main job as a zoo plugin: the ``zoo demo`` and ``zoo sample-zoo`` commands and the ``tinyzoo``
re-indexing evaluator.

Registered through the ``zoo.plugins`` entry-point group (``demo = "zoo_demo.plugin"``). Light on purpose:
the job, igpg and the tiny zoo are imported when the command or the evaluator runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from zoo import hookimpl
from zoo.cli import emit, json_option, registry_of


@click.command()
@click.option(
    "--out",
    default="zoo-run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Working folder for registry.db, report.md and figure.png (an existing zoo there is reused).",
)
@click.option(
    "--tasks",
    default=None,
    help="Comma-separated training tasks (default: the generalisation split's 56, MNIST ones when found).",
)
@click.option(
    "--held-out",
    default=None,
    help="Comma-separated held-out tasks (default: the split's 4 near and 4 far, e.g. mnist-rot60-invert).",
)
@click.option(
    "--per-task",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Checkpoints (seeds) per task.",
)
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
    """The main job: build the generalisation zoo, train the generator, retrieve or generate for seen and
    held-out tasks against every baseline, fine-tune, and report.

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


SECONDS_PER_NET = 1.5  # measured: 0.9-1.2 s per cnn-tiny of 200 steps on 2 busy CPU cores (shared machine)


@click.command("sample-zoo")
@click.option(
    "--tasks",
    default=None,
    help="Comma-separated tasks (default: 8; MNIST ones when its files are found). A task is "
    "SOURCE[-STEP]...: SOURCE digits or mnist; steps, applied left to right: rotN (degrees), invert, mirror, "
    "blurS (pixels), scaleF (zoom), cDIGITS (keep those classes, relabelled in that order), e.g. "
    "mnist-rot60-invert, digits-c86420.",
)
@click.option("--per-task", default=3, show_default=True, type=click.IntRange(min=1), help="Seeds per task.")
@click.option(
    "--steps", default=200, show_default=True, type=click.IntRange(min=1), help="Adam steps per network."
)
@click.option(
    "--mnist",
    "mnist_dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="Folder with the MNIST IDX files (default: $ZOO_MNIST_DIR or ../shared/data/mnist).",
)
@json_option
@click.pass_context
def sample_zoo(
    ctx: click.Context, tasks: str | None, per_task: int, steps: int, mnist_dir: str | None, as_json: bool
) -> None:
    """Build a small real zoo in the registry: cnn-tiny trained on real digit tasks, a few seeds each.

    Every task's training split is registered as a dataset of the task's name, every network as a
    checkpoint `TASK-sSEED` with its dataset, test accuracy and tags `tinyzoo`, `task-TASK`. Idempotent: what
    is already there is kept, not trained again. The defaults (8 tasks x 3 seeds) take about a minute on 2
    CPU cores; the zoo is what `zoo nearest`, `zoo get` and `zoo train` work on.
    """
    import time

    from zoo.errors import DatasetError
    from zoo_demo.tinyzoo import ARCH, TASKS, Task, build_tiny_zoo, default_tasks, members

    if mnist_dir:
        from zoo.datasets import find_mnist

        if find_mnist(mnist_dir) is None:
            raise click.BadParameter(
                f"{mnist_dir} holds no MNIST IDX files (t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, "
                "optionally gzipped); name the folder that holds them",
                param_hint="--mnist",
            )
        os.environ["ZOO_MNIST_DIR"] = mnist_dir
    names = list(dict.fromkeys(_split(tasks) or default_tasks()))  # a task named twice is one task
    for name in names:
        try:
            Task.parse(name)
        except DatasetError as exc:  # says what is wrong with the name and gives the grammar
            raise click.BadParameter(
                f"{exc}; e.g. {', '.join(list(TASKS)[:4])}", param_hint="--tasks"
            ) from None
    reg = registry_of(ctx, create=True)
    have = members(reg, names, per_task)  # refuses, before training, a name another checkpoint holds
    todo = sum(f"{t}-s{s}" not in have for t in names for s in range(per_task))
    if todo and not as_json:
        click.echo(
            f"training {todo} {ARCH} network(s) of {steps} steps "
            f"(about {todo * SECONDS_PER_NET * steps / 200:.0f} s on 2 CPU cores)",
            err=True,
        )
    t0 = time.perf_counter()
    recs = build_tiny_zoo(reg, names, per_task=per_task, steps=steps, progress=not as_json)
    data = {
        "checkpoints": len(recs),
        "new": todo,
        "datasets": list(names),
        "arch": ARCH,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    emit(
        data,
        as_json,
        lambda: click.echo(
            f"sample zoo: {len(recs)} {ARCH} checkpoints on {len(names)} datasets "
            f"({todo} new) in {data['seconds']:.0f} s; next: zoo nearest {ARCH} {names[0]}"
        ),
    )


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.split(",") if t.strip()) if value else ()


def tinyzoo_evaluator() -> Any:
    """Sample accuracy on the tiny-zoo tasks (:func:`zoo_demo.tinyzoo.evaluate`), for ``zoo reindex``."""
    from zoo import accuracy_evaluator
    from zoo_demo.tinyzoo import evaluate

    return accuracy_evaluator(evaluate)


@hookimpl
def zoo_register_commands(cli: click.Group) -> None:
    cli.add_command(demo)
    cli.add_command(sample_zoo)


@hookimpl
def zoo_register_evaluators(register: Callable[[str, Callable[[], Any]], None]) -> None:
    register("tinyzoo", tinyzoo_evaluator)


__all__ = ["demo", "sample_zoo", "tinyzoo_evaluator"]
