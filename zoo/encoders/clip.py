"""``clip``: the IGPG dataset encoder on open_clip's image tower.

A few images per class (default 5) go through the CLIP image encoder; the unit image vectors are
mean-pooled per class, and the class vectors are averaged into one dataset vector (L2-normalised).

Weights are never downloaded. They come from, in order:

- ``weights=``: a local open_clip checkpoint file (``.safetensors``, ``.bin``, ``.pt``) of the model;
- ``pretrained=`` (a tag such as ``"openai"``) looked up in ``cache_dir`` (a Hugging Face hub cache, or a
  folder holding the tag's file), without any network access;
- ``random_init=True``: random initialisation from ``seed`` (for tests and benchmarks only: such vectors
  say little about datasets).

The built-in ``clip`` encoder reads ``$ZOO_CLIP_MODEL`` (default ``ViT-B-32``), ``$ZOO_CLIP_WEIGHTS``,
``$ZOO_CLIP_PRETRAINED`` and ``$ZOO_CLIP_CACHE_DIR`` (see :meth:`ClipDatasetEncoder.from_env`).
``model`` may be an open_clip model name, a model-config mapping (``embed_dim``, ``vision_cfg``,
``text_cfg``) or the path of such a JSON file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from zoo.encoders.base import ClassPooledEncoder, file_digest
from zoo.errors import ConfigError

log = logging.getLogger(__name__)

RECIPE_VERSION = "1"  # the pooling recipe; part of every clip encoder's version
DEFAULT_MODEL = "ViT-B-32"
ENV_MODEL = "ZOO_CLIP_MODEL"
ENV_WEIGHTS = "ZOO_CLIP_WEIGHTS"
ENV_PRETRAINED = "ZOO_CLIP_PRETRAINED"
ENV_CACHE_DIR = "ZOO_CLIP_CACHE_DIR"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip.constants.OPENAI_DATASET_MEAN
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)  # open_clip.constants.OPENAI_DATASET_STD
SMALL_TEST_CONFIG: dict[str, Any] = {  # a ~160k-parameter CLIP for tests: 32x32 input, 32-d vectors
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
}
_WEIGHT_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)


def _model_config(model: str | Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(a name for the version string, the config mapping or None for a built-in open_clip name)."""
    if isinstance(model, Mapping):
        cfg = json.loads(json.dumps(dict(model)))
        digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
        return f"cfg-{digest}", cfg
    if str(model).endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise ConfigError(
                f"CLIP model config {path} does not exist; pass an open_clip model name or a JSON config"
            )
        cfg = json.loads(path.read_text())
        cfg = cfg.get("model_cfg", cfg)  # open_clip_config.json nests it
        return _model_config(cfg)
    return str(model), None  # checked when first needed: importing open_clip takes seconds


def _builtin_config(name: str) -> dict[str, Any]:
    import open_clip

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ConfigError(
            f"unknown open_clip model {name!r}; choose one of open_clip.list_models() or pass a config"
        )
    return cfg


class ClipDatasetEncoder(ClassPooledEncoder):
    """Dataset vectors from an open_clip image encoder (the IGPG recipe); loads lazily, never downloads."""

    description = "IGPG: open_clip image vectors, mean-pooled per class, then over classes"

    def __init__(
        self,
        model: str | Mapping[str, Any] = DEFAULT_MODEL,
        *,
        weights: str | os.PathLike[str] | None = None,
        pretrained: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        random_init: bool = False,
        seed: int = 0,
        per_class: int = 5,
        id: str = "clip",
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ) -> None:
        self.id = id
        self.model = model
        self.model_key, self._cfg = _model_config(model)
        self.weights = Path(weights) if weights is not None else None
        self.pretrained = pretrained
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.random_init = random_init
        self.init_seed = seed
        self.per_class = per_class
        self.seed = 0
        self.batch_size = batch_size
        self.device = (
            torch.device(device)
            if device is not None
            else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        self._visual: torch.nn.Module | None = None
        self._lock = threading.Lock()
        self._mean = OPENAI_MEAN
        self._std = OPENAI_STD

    @classmethod
    def from_env(cls, id: str = "clip") -> "ClipDatasetEncoder":
        """The encoder the environment configures (``$ZOO_CLIP_MODEL``, ``$ZOO_CLIP_WEIGHTS``, ...)."""
        return cls(
            os.environ.get(ENV_MODEL) or DEFAULT_MODEL,
            weights=os.environ.get(ENV_WEIGHTS) or None,
            pretrained=os.environ.get(ENV_PRETRAINED) or None,
            cache_dir=os.environ.get(ENV_CACHE_DIR) or None,
            id=id,
        )

    # -- identity -----------------------------------------------------------------------------------
    @property
    def version(self) -> str:  # type: ignore[override]
        """Recipe, model, weights (sha256 prefix or random seed) and images per class."""
        if self.random_init:
            source = f"random-s{self.init_seed}"
        else:
            source = "sha-" + file_digest(self._weights_file())[:16]
        return f"{RECIPE_VERSION}+{self.model_key}+{source}+n{self.per_class}"

    @property
    def dim(self) -> int:
        if self._cfg is not None:
            return int(self._cfg["embed_dim"])
        return int(_builtin_config(self.model_key)["embed_dim"])

    def unavailable_reason(self) -> str | None:
        """Why this encoder cannot embed now (no weights configured, file missing), or None if it can."""
        if self.random_init:
            return None
        try:
            self._weights_file()
        except ConfigError as exc:
            return str(exc)
        return None

    # -- loading ------------------------------------------------------------------------------------
    def _weights_file(self) -> Path:
        if self.weights is not None:
            path = self.weights
            if path.is_dir():
                found = next((path / n for n in _WEIGHT_FILES if (path / n).is_file()), None)
                if found is None:
                    raise ConfigError(f"CLIP weights folder {path} holds none of {', '.join(_WEIGHT_FILES)}")
                path = found
            if not path.is_file():
                raise ConfigError(
                    f"CLIP weights file {path} does not exist; point weights= (or ${ENV_WEIGHTS}) "
                    "at a local open_clip checkpoint"
                )
            return path
        if self.pretrained is not None:
            return self._cached_pretrained()
        raise ConfigError(
            f"CLIP encoder {self.id!r} has no weights: set ${ENV_WEIGHTS} to a local open_clip checkpoint of "
            f"{self.model_key} (or ${ENV_PRETRAINED}=<tag> with ${ENV_CACHE_DIR} holding its cached file); "
            "zoo never downloads. Without CLIP weights use the offline encoder 'pixels'"
        )

    def _cached_pretrained(self) -> Path:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(self.model_key, self.pretrained) if self._cfg is None else {}
        if not cfg:
            raise ConfigError(
                f"open_clip has no pretrained tag {self.pretrained!r} for {self.model_key}; tags: "
                f"{', '.join(open_clip.list_pretrained_tags_by_model(self.model_key)) or '(none)'}"
            )
        if self.cache_dir is None:
            raise ConfigError(
                f"pretrained={self.pretrained!r} needs cache_dir= (or ${ENV_CACHE_DIR}): the folder that "
                "holds the already downloaded weights; zoo never downloads"
            )
        tried: list[str] = []
        if cfg.get("hf_hub"):
            from huggingface_hub import try_to_load_from_cache

            rest = cfg["hf_hub"].split("/", 2)
            repo_id = "/".join(rest[:2])
            names = [rest[2]] if len(rest) > 2 and rest[2] else list(_WEIGHT_FILES)
            for name in names:
                hit = try_to_load_from_cache(repo_id, name, cache_dir=str(self.cache_dir))
                tried.append(f"{repo_id}/{name}")
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
        if cfg.get("url"):
            cand = self.cache_dir / os.path.basename(cfg["url"])
            tried.append(str(cand))
            if cand.is_file():
                return cand
        raise ConfigError(
            f"CLIP weights {self.model_key}/{self.pretrained} are not in {self.cache_dir} (looked for "
            f"{', '.join(tried)}); download them once elsewhere, or pass weights=<file>"
        )

    def _load(self) -> torch.nn.Module:
        with self._lock:
            if self._visual is not None:
                return self._visual
            import open_clip

            path = None if self.random_init else self._weights_file()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                try:
                    if self._cfg is None:
                        _builtin_config(self.model_key)
                        model = open_clip.create_model(
                            self.model_key,
                            pretrained=None,
                            pretrained_image=False,
                            pretrained_text=False,
                            device="cpu",
                        )
                        pcfg = (
                            open_clip.get_pretrained_cfg(self.model_key, self.pretrained)
                            if self.pretrained
                            else {}
                        )
                        self._mean = tuple(pcfg.get("mean", OPENAI_MEAN))
                        self._std = tuple(pcfg.get("std", OPENAI_STD))
                    else:
                        from open_clip.model import CLIP, CustomTextCLIP

                        cls = CustomTextCLIP if "hf_model_name" in self._cfg.get("text_cfg", {}) else CLIP
                        model = cls(**self._cfg)
                    if path is not None:
                        open_clip.load_checkpoint(model, str(path), strict=True)
                except ConfigError:
                    raise
                except Exception as exc:
                    raise ConfigError(
                        f"cannot load CLIP {self.model_key} from {path or 'random init'}: {exc}"
                    ) from exc
            visual = model.visual.eval().to(self.device)
            visual.requires_grad_(False)
            del model  # the text tower is not needed
            log.info(
                "loaded CLIP image encoder %s (%s)",
                self.model_key,
                path or f"random init, seed {self.init_seed}",
            )
            self._visual = visual
            return visual

    # -- embedding ----------------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Images in [0, 1] to the model's input: 3 channels, shortest side resized, centre crop,
        normalised."""
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        th, tw = image_size
        scale = max(th / h, tw / w)
        nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (nh - th) // 2, (nw - tw) // 2
        x = x[:, :, top : top + th, left : left + tw]
        mean = torch.tensor(self._mean, dtype=x.dtype)[None, :, None, None]
        std = torch.tensor(self._std, dtype=x.dtype)[None, :, None, None]
        return (x - mean) / std  # (B, 3, th, tw)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        visual = self._load()
        size = visual.image_size if isinstance(visual.image_size, tuple) else (visual.image_size,) * 2
        x = self.preprocess(images, tuple(int(s) for s in size)).to(self.device)
        return visual(x).float().cpu()  # (B, embed_dim)


__all__ = ["ClipDatasetEncoder", "SMALL_TEST_CONFIG"]
