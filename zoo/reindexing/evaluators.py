"""Evaluators the generator stage judges a candidate generator with (``zoo reindex --evaluator``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError
from zoo.generators import Evaluator, kind_of_generator
from zoo.records import CheckpointRecord
from zoo.registry import Registry

if TYPE_CHECKING:
    from torch import nn


def accuracy_evaluator(
    evaluate: Callable[[nn.Module, str], float], *, samples: int = 2, max_datasets: int = 8
) -> Evaluator:
    """An evaluator scoring a generator by the accuracy of its samples: mean over datasets and samples.

    ``evaluate(module, dataset_name) -> accuracy`` knows the tasks (e.g. ``zoo_demo.tinyzoo.evaluate``, which
    knows the tiny-zoo tasks by their dataset names; the main job's plugin registers that one as the
    ``tinyzoo`` evaluator). Datasets ``evaluate`` does not know (``KeyError``) are left out; up to
    ``max_datasets`` datasets with the newest checkpoints are used, ``samples`` networks each, sampled through
    the generator's kind (:meth:`~zoo.generators.GeneratorKind.sample_for`).
    """

    def score(registry: Registry, gen: Any, checkpoints: Sequence[CheckpointRecord], seed: int) -> float:
        kind = kind_of_generator(gen)
        fn = evaluate
        accs: list[float] = []
        seen: set[tuple[str, str]] = set()
        for rec in sorted(checkpoints, key=lambda r: -r.id):
            key = (rec.arch.key, rec.dataset or "")
            if not rec.dataset or key in seen or not kind.knows(gen, rec.arch) or len(seen) >= max_datasets:
                continue
            seen.add(key)
            try:
                nets = kind.sample_for(registry, gen, rec.arch, rec.dataset, n=samples, seed=seed)
                accs.extend(float(fn(net, rec.dataset)) for net in nets)
            except KeyError:  # a dataset the evaluate function does not know
                continue
        if not accs:
            raise ZooError(
                "the accuracy evaluator knows none of the datasets of these checkpoints; pass an "
                "evaluate function that does, or use the default weight-space evaluator"
            )
        return sum(accs) / len(accs)

    return score


EVALUATORS: dict[str, Callable[[], Evaluator | None]] = {  # built-in names the CLI accepts for --evaluator
    "weights": lambda: (
        None
    ),  # the generator kind's own score (IGPG: closeness of samples to registered weights)
}


def evaluators() -> dict[str, Callable[[], Evaluator | None]]:
    """Evaluator names (``zoo reindex --evaluator``) -> factories: the built-in ones and those plugins
    register through ``zoo_register_evaluators`` (the main job's ``tinyzoo``)."""
    from zoo.plugins import get_plugin_manager

    found = dict(EVALUATORS)

    def register(name: str, make: Callable[[], Evaluator | None]) -> None:
        found[name] = make

    get_plugin_manager().hook.zoo_register_evaluators(register=register)
    return found
