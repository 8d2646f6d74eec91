"""The ``zoo`` command line: a thin layer over the library. Commands only call library functions.

:mod:`zoo.cli.app` holds the group and the helpers plugin commands use (:func:`registry_of`, :func:`emit`,
:func:`json_option`); the commands live in one module per area: :mod:`~zoo.cli.checkpoints`,
:mod:`~zoo.cli.datasets`, :mod:`~zoo.cli.serving`, :mod:`~zoo.cli.maintenance`, :mod:`~zoo.cli.plugins_info`.
Plugins add theirs through the ``zoo_register_commands`` hook (the generator's ``train``, the main job's
``demo``).
"""

from __future__ import annotations

from zoo.cli import checkpoints, datasets, maintenance, plugins_info, serving  # noqa: F401  (register commands)
from zoo.cli.app import ZooGroup, as_flag, cli, emit, json_option, main, registry_of

__all__ = ["ZooGroup", "as_flag", "cli", "emit", "json_option", "main", "registry_of"]
