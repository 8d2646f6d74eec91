"""Deprecated: the main job moved to :mod:`zoo_demo.job` (the main job's package, above zoo and igpg).

``from zoo.demo import run_demo`` keeps working with a :class:`DeprecationWarning`; the name is imported from
:mod:`zoo_demo.job` on first use, so importing zoo never imports the demo package.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED_TO = "zoo_demo.job"
_NAMES = frozenset(["DemoConfig", "fast_generator_config", "run_demo"])


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'zoo.demo' has no attribute {name!r}")
    warnings.warn(
        f"zoo.demo.{name} moved to {_MOVED_TO}.{name}; import it from there", DeprecationWarning, stacklevel=2
    )
    return getattr(importlib.import_module(_MOVED_TO), name)
