"""Deprecated: the main job moved to :mod:`zoo_demo.job` (the main job's package, above zoo and igpg).

``from zoo.demo import run_demo`` keeps working with a :class:`DeprecationWarning`; the name is imported from
:mod:`zoo_demo.job` on first use, so importing zoo never imports the demo package.
"""

from __future__ import annotations

from zoo.lazy import lazy_exports

_MOVED_TO = "zoo_demo.job"
_NAMES = frozenset(["DemoConfig", "fast_generator_config", "run_demo"])


__all__ = sorted(_NAMES)  # so that `from zoo.tinyzoo import *` brings the moved names (each warns)
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_NAMES, _MOVED_TO), moved=True)
