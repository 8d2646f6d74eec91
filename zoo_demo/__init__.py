"""zoo_demo: the main job (``zoo demo``, ``make run``) and what it is built from.

The tiny model zoo (:mod:`zoo_demo.tinyzoo`: real digit tasks and the builder that trains and registers
cnn-tiny checkpoints on them), the tiny-zoo evaluation protocol for IGPG generators
(:mod:`zoo_demo.evaluation`) and the job that builds the zoo, trains IGPG, serves requests and writes the
report (:mod:`zoo_demo.job`). It sits above zoo and igpg and uses both; neither imports it.
:mod:`zoo_demo.plugin` adds the ``zoo demo`` command and the ``tinyzoo`` re-indexing evaluator through the
``zoo.plugins`` entry-point group. The names below are imported on first use, so that loading the plugin
(which zoo does for every command) loads neither the job nor igpg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo import lazy_exports

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports on first use
    from zoo_demo.job import DemoConfig, fast_generator_config, run_demo
    from zoo_demo.resnet_zoo import build_resnet_zoo
    from zoo_demo.tinyzoo import (
        TASKS,
        Task,
        build_tiny_zoo,
        default_tasks,
        evaluate,
        held_out_tasks,
        task_data,
    )

_EXPORTS: dict[str, str] = {  # public name -> the module that defines it (imported on first use: see igpg)
    "DemoConfig": "zoo_demo.job",
    "TASKS": "zoo_demo.tinyzoo",
    "Task": "zoo_demo.tinyzoo",
    "build_resnet_zoo": "zoo_demo.resnet_zoo",
    "build_tiny_zoo": "zoo_demo.tinyzoo",
    "default_tasks": "zoo_demo.tinyzoo",
    "evaluate": "zoo_demo.tinyzoo",
    "fast_generator_config": "zoo_demo.job",
    "held_out_tasks": "zoo_demo.tinyzoo",
    "run_demo": "zoo_demo.job",
    "task_data": "zoo_demo.tinyzoo",
}

__all__ = [
    "TASKS",
    "DemoConfig",
    "Task",
    "build_resnet_zoo",
    "build_tiny_zoo",
    "default_tasks",
    "evaluate",
    "fast_generator_config",
    "held_out_tasks",
    "run_demo",
    "task_data",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
