"""Every hook a zoo plugin can implement.

A plugin is a module (or object) with functions decorated by :data:`zoo.hookimpl`, registered through the
``zoo.plugins`` entry-point group. Registration hooks receive a ``register`` callback; lookup hooks are
``firstresult``: they stop at the first non-None result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    import click
    import torch

    from zoo.family import ArchitectureFamily
    from zoo.generators import Evaluator, GeneratorKind
    from zoo.records import ArchSpec

PROJECT = "zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register_families(register: Callable[[ArchitectureFamily], None]) -> None:
    """Register architecture families.

    Call ``register(family)`` once per :class:`~zoo.family.ArchitectureFamily` instance the plugin
    provides. A family whose name is already taken replaces it with a warning.
    """


@hookspec
def zoo_register_dataset_encoders(register: Callable[[Any], None]) -> None:
    """Register dataset encoders.

    Call ``register(encoder)`` once per dataset encoder (an object with ``id``, ``version`` and
    ``embed(dataset)``) the plugin provides.
    """


@hookspec
def zoo_register_text_encoders(register: Callable[[Any], None]) -> None:
    """Register architecture text encoders.

    Call ``register(encoder)`` once per text encoder (an object with ``id``, ``version`` and
    ``embed(texts)``) the plugin provides.
    """


@hookspec
def zoo_register_generators(register: Callable[[GeneratorKind], None]) -> None:
    """Register generator kinds.

    Call ``register(kind)`` once per :class:`~zoo.generators.GeneratorKind` instance the plugin provides
    (IGPG registers itself this way). Provision, re-indexing and the CLI find a stored generator version's
    kind by the name in its config. A kind whose name is already taken replaces it with a warning.
    """


@hookspec
def zoo_register_evaluators(register: Callable[[str, Callable[[], Evaluator | None]], None]) -> None:
    """Register named generator evaluators (what ``zoo reindex --evaluator NAME`` accepts).

    Call ``register(name, make)``: ``make()`` returns an evaluator, a callable ``(registry, generator,
    checkpoints, seed) -> score`` (higher is better), or None for the generator kind's own default.
    """


@hookspec
def zoo_register_commands(cli: click.Group) -> None:
    """Add commands to the ``zoo`` command-line interface by calling ``cli.add_command(...)``."""


@hookspec(firstresult=True)
def zoo_resolve_architecture(name: str, overrides: Mapping[str, Any]) -> ArchSpec | None:
    """Turn an architecture name (e.g. ``"resnet20"``) and settings into a spec.

    Stops at the first non-None result. The built-in implementation (tried last) asks every registered
    family's ``parse``; a plugin implements this hook only to add aliases or override a family's parsing.
    """


@hookspec(firstresult=True)
def zoo_detect_architecture(state_dict: Mapping[str, torch.Tensor]) -> ArchSpec | None:
    """Recognise the architecture of a state dict from its keys and shapes.

    Stops at the first non-None result. The built-in implementation (tried last) asks every registered
    family's ``detect``.
    """
