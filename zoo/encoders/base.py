"""The encoder contracts: what a plugin implements to turn datasets or architecture texts into vectors.

A dataset encoder subclasses :class:`DatasetEncoder` (any recipe) or, for the IGPG recipe, the
:class:`ClassPooledEncoder` helper: it implements only :meth:`ClassPooledEncoder.embed_images` and gets
sampling a few images per class, per-class mean pooling and the combination into one dataset vector.
A text encoder subclasses :class:`TextEncoder` and implements :meth:`TextEncoder.embed`.

Every encoder has an ``id`` (unique among encoders of its kind) and a ``version``; both are stored beside
each vector it makes, and a vector whose encoder version differs from the installed one is stale.
Vectors are float32 and L2-normalised, so cosine similarity is their dot product.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zoo.datasets import ImageDataset

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, for weight files


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, cached per (path, size, mtime) for the life of the process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` scaled to unit L2 norm along ``axis`` (zero vectors stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


class DatasetEncoder(ABC):
    """Base class of a dataset encoder: one labelled image dataset in, one unit vector out."""

    id: str  # unique among dataset encoders, e.g. "pixels" or "clip"
    version: str  # changes whenever the vectors it makes would change (recipe, weights)
    description: str = ""  # one line for listings
    embed_by_default: bool = True  # False: used only when named (register_dataset(encoders=[...]), --encoder)

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of the vectors this encoder makes."""

    @abstractmethod
    def embed(self, dataset: ImageDataset) -> np.ndarray:
        """The dataset's vector: float32, shape ``(dim,)``, unit L2 norm. Deterministic for given data."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}@{self.version}>"


class ClassPooledEncoder(DatasetEncoder):
    """The IGPG recipe on top of an image encoder.

    For every class, ``per_class`` images are drawn (deterministically, from ``seed``) and embedded with
    :meth:`embed_images`; each image vector is L2-normalised (unless ``normalize_images`` is False) and the
    class vector is their mean. The
    dataset vector is :meth:`combine` of the class vectors (default: their mean, L2-normalised).
    """

    per_class: int = 5  # images drawn per class (IGPG uses 5)
    seed: int = 0  # seed of the per-class draw
    batch_size: int = 64  # images per forward pass
    normalize_images: bool = True  # L2-normalise each image vector before pooling (CLIP: yes)

    @abstractmethod
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Vectors of a batch of images ``(B, C, H, W)`` in [0, 1] (C is 1 or 3): shape ``(B, D)``."""

    def class_vectors(self, dataset: ImageDataset) -> torch.Tensor:
        """One mean-pooled vector per class: ``(num_classes, D)``."""
        picks = dataset.sample_per_class(self.per_class, self.seed)
        idx = torch.cat(picks)
        owner = torch.cat([torch.full((len(p),), c, dtype=torch.int64) for c, p in enumerate(picks)])
        feats = []
        with torch.inference_mode():
            for start in range(0, len(idx), self.batch_size):
                batch = dataset.images[idx[start : start + self.batch_size]]
                feats.append(self.embed_images(batch).float())
        z = torch.cat(feats)  # (n, D)
        if self.normalize_images:
            z = torch.nn.functional.normalize(z, dim=1)
        sums = torch.zeros(dataset.num_classes, z.shape[1]).index_add_(0, owner, z)
        return sums / torch.bincount(owner, minlength=dataset.num_classes).clamp_min(1)[:, None]

    def combine(self, class_vectors: torch.Tensor, dataset: ImageDataset) -> np.ndarray:
        """One dataset vector from the class vectors. Default: their mean, L2-normalised."""
        return l2_normalize(class_vectors.mean(0).numpy())

    def embed(self, dataset: ImageDataset) -> np.ndarray:
        return self.combine(self.class_vectors(dataset), dataset)


class TextEncoder(ABC):
    """Base class of an architecture text encoder: texts in, unit vectors out."""

    id: str  # unique among text encoders, e.g. "minilm"
    version: str  # changes whenever the vectors it makes would change
    description: str = ""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of the vectors this encoder makes."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``: float32, shape ``(len(texts), dim)``, each of unit L2 norm."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}@{self.version}>"


__all__ = ["ClassPooledEncoder", "DatasetEncoder", "TextEncoder", "file_digest", "l2_normalize"]
