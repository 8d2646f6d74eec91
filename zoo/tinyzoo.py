"""Deprecated: the tiny zoo moved to :mod:`zoo_demo.tinyzoo` (the main job's package, above zoo and igpg).

``from zoo.tinyzoo import build_tiny_zoo`` keeps working with a :class:`DeprecationWarning`; the name is
imported from :mod:`zoo_demo.tinyzoo` on first use, so importing zoo never imports the demo package.
"""

from __future__ import annotations

from zoo.lazy import lazy_exports

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


__all__ = sorted(_NAMES)  # so that `from zoo.tinyzoo import *` brings the moved names (each warns)
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_NAMES, _MOVED_TO), moved=True)
