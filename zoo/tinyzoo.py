"""Deprecated: the tiny zoo moved to :mod:`zoo_demo.tinyzoo` (the main job's package, above zoo and igpg).

``from zoo.tinyzoo import build_tiny_zoo`` keeps working with a :class:`DeprecationWarning`; the name is
imported from :mod:`zoo_demo.tinyzoo` on first use, so importing zoo never imports the demo package.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED_TO = "zoo_demo.tinyzoo"
_NAMES = frozenset(
    [  # what zoo.tinyzoo exported
        "ARCH",
        "HELD_OUT",
        "HELD_OUT_DIGITS_ONLY",
        "SEEN_DIGITS_ONLY",
        "SEEN_WITH_MNIST",
        "TASKS",
        "Task",
        "build_tiny_zoo",
        "default_tasks",
        "evaluate",
        "held_out_tasks",
        "mnist_dir",
        "task_data",
        "train_member",
    ]
)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'zoo.tinyzoo' has no attribute {name!r}")
    warnings.warn(
        f"zoo.tinyzoo.{name} moved to {_MOVED_TO}.{name}; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(_MOVED_TO), name)
