"""``pixels``: the offline default dataset encoder. No weights, no downloads, deterministic.

What it computes (version "2"), for a dataset with ``K`` classes of ``C x H x W`` images:

1. Draw ``per_class`` images of every class (default 32, seed 0) and turn each into grayscale
   (Rec. 601 luma for RGB).
2. Per image, four feature blocks:
   - ``shape``: the image area-resized to 8x8, mapped to [-1, 1] (64 values);
   - ``texture``: the image resized to 32x32 and to 16x16, each convolved with the same 24 fixed
     random 5x5 zero-mean unit-norm filters (seeded by :data:`FILTER_SEED`), then the mean positive and
     mean negative response per filter (2 scales x 24 filters x 2 = 96 values), square-rooted;
   - ``intensity``: an 8-bin soft histogram of pixel values and an 8-bin histogram of gradient magnitude
     (16 values, square-rooted: Hellinger);
   - ``colour``: per-channel mean and standard deviation of the original image (6 values; grayscale is
     replicated to 3 channels).
3. Per class, the mean of those per-image vectors.
4. The dataset vector concatenates, each block L2-normalised and scaled by its weight in :data:`WEIGHTS`:
   the mean over classes of every block; the spread over classes of the ``shape`` block (standard
   deviation, 64 values: how different the classes look); the **label-ordered** block: for classes
   ``0..15`` in label order, the class's 8x8 mean image (from up to ``ordered_per_class`` = 256 images of
   the class, same seed) minus the mean of those over classes (16 x 64 = 1024 values, zero for absent
   classes); and a ``meta`` block with ``log2(K)``, class balance (normalised entropy of class counts),
   ``log2 H``, ``log2 W`` and ``C``.
5. The whole vector is L2-normalised (dimension 1275). Cosine similarity is the weighted sum of the
   block cosines.

The label-ordered block is what tells two tasks with the same images but another class order (or another
class subset) apart. Version 1 kept the *uncentred* 4x4 class means, which look alike for every class (a
dark background, a bright middle), so a permuted twin scored about 0.994; centred, a class's vector says
how it differs from the other classes, and a permutation moves those vectors to other slots (block cosine
about 0, twin about 0.79 overall). The larger sample keeps the same task's other split close (block
cosine about 0.98 where 32 images gave 0.96). The block's weight 1.0 is the largest of the sweep in
``bench/bench_task_retrieval.py`` that keeps every same-task query of that benchmark at or above
:data:`zoo.provision.DEFAULT_MIN_SIMILARITY` (0.99); docs/embeddings.md has the numbers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from zoo.datasets import ImageDataset
from zoo.encoders.base import ClassPooledEncoder, l2_normalize

FILTER_SEED = 20250402  # seeds the random filter bank; changing it is a new encoder version
NUM_FILTERS = 24  # random 5x5 filters per scale
ORDERED_CLASSES = 16  # classes whose centred 8x8 mean image enters the label-ordered block
WEIGHTS: dict[str, float] = {  # block -> weight (before the final normalisation)
    "shape": 1.0,  # mean 8x8 image over classes
    "texture": 1.0,  # random-filter energies
    "intensity": 0.7,  # pixel and gradient histograms
    "colour": 0.5,  # channel means and spreads
    "spread": 0.7,  # per-pixel spread of the class mean images
    "ordered": 1.0,  # class mean images in label order, centred: what tells label orders apart
    "meta": 0.7,  # class count, balance, image size, channels
}
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _filter_bank() -> torch.Tensor:
    gen = torch.Generator().manual_seed(FILTER_SEED)
    w = torch.randn(NUM_FILTERS, 1, 5, 5, generator=gen)
    w = w - w.mean(dim=(2, 3), keepdim=True)  # zero mean: flat regions give no response
    return w / w.flatten(1).norm(dim=1)[:, None, None, None]


def _shape(gray: torch.Tensor) -> torch.Tensor:
    """Grayscale images ``(B, 1, H, W)`` area-resized to 8x8 and mapped to [-1, 1]: ``(B, 64)``."""
    big = min(gray.shape[-2:]) >= 8
    small = F.interpolate(
        gray, size=(8, 8), mode="area" if big else "bilinear", align_corners=None if big else False
    )
    return (small * 2 - 1).flatten(1)


class PixelStatsEncoder(ClassPooledEncoder):
    """The offline default: deterministic pixel, texture and label-structure features (see module docs)."""

    id = "pixels"
    version = "2"
    description = "offline default: class-mean images, random-filter textures, histograms, class structure"
    weights: dict[str, float] = WEIGHTS  # block -> weight; the blocks are concatenated in this order

    def __init__(self, per_class: int = 32, seed: int = 0, ordered_per_class: int = 256) -> None:
        self.per_class = per_class
        self.ordered_per_class = ordered_per_class  # images per class behind the label-ordered block
        self.seed = seed
        self.batch_size = 512
        self.normalize_images = False  # blocks have different scales; combine() normalises per block
        self._filters = _filter_bank()

    @property
    def dim(self) -> int:
        return 64 + 4 * NUM_FILTERS + 16 + 6 + 64 + 64 * ORDERED_CLASSES + 5

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        rgb = x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1)
        g = (rgb * _LUMA.to(x)[None, :, None, None]).sum(1, keepdim=True)  # (B, 1, H, W)
        shape = _shape(g)  # (B, 64)
        tex = []
        for side in (32, 16):
            gi = F.interpolate(g, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
            r = F.conv2d(gi, self._filters)  # (B, F, side-4, side-4)
            tex += [r.clamp_min(0).mean((2, 3)), (-r).clamp_min(0).mean((2, 3))]
        texture = torch.cat(tex, 1).sqrt()  # (B, 4F)
        centers = torch.linspace(0, 1, 8)
        flat = g.flatten(1)  # (B, HW)
        hist = torch.exp(-((flat[:, :, None] - centers) ** 2) / (2 * 0.07**2)).mean(1)  # (B, 8)
        gy, gx = torch.gradient(g[:, 0], dim=(1, 2))
        mag = (gx**2 + gy**2).sqrt().flatten(1).clamp(0, 1)
        ghist = torch.exp(-((mag[:, :, None] - centers * 0.5) ** 2) / (2 * 0.035**2)).mean(1)  # (B, 8)
        intensity = torch.cat(
            [
                hist / hist.sum(1, keepdim=True).clamp_min(1e-12),
                ghist / ghist.sum(1, keepdim=True).clamp_min(1e-12),
            ],
            1,
        ).sqrt()  # (B, 16)
        colour = torch.cat([rgb.mean((2, 3)), rgb.std((2, 3), unbiased=False)], 1)  # (B, 6)
        return torch.cat([shape, texture, intensity, colour], 1)

    def class_shapes(self, dataset: ImageDataset) -> torch.Tensor:
        """The 8x8 mean image of every class from up to ``ordered_per_class`` of its images: ``(K, 64)``."""
        picks = dataset.sample_per_class(self.ordered_per_class, self.seed)
        out = torch.zeros(dataset.num_classes, 64)
        with torch.inference_mode():
            for c, idx in enumerate(picks):
                x = dataset.images[idx].float()
                rgb = x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1)
                out[c] = _shape((rgb * _LUMA.to(x)[None, :, None, None]).sum(1, keepdim=True)).mean(0)
        return out

    def ordered_block(self, class_vectors: torch.Tensor, dataset: ImageDataset) -> torch.Tensor:
        """Classes ``0..ORDERED_CLASSES-1`` in label order, each its 8x8 mean image minus the mean over
        classes (zero for absent classes): ``(ORDERED_CLASSES * 64,)``."""
        ordered = torch.zeros(ORDERED_CLASSES, 64)
        shapes = self.class_shapes(dataset)  # (K, 64)
        ordered[: min(dataset.num_classes, ORDERED_CLASSES)] = (shapes - shapes.mean(0))[:ORDERED_CLASSES]
        return ordered.flatten()

    def combine(self, class_vectors: torch.Tensor, dataset: ImageDataset) -> np.ndarray:
        k = dataset.num_classes
        nt = 4 * NUM_FILTERS
        mean = class_vectors.mean(0)
        blocks = {
            "shape": mean[:64],
            "texture": mean[64 : 64 + nt],
            "intensity": mean[64 + nt : 80 + nt],
            "colour": mean[80 + nt : 86 + nt],
            "spread": class_vectors[:, :64].std(0, unbiased=False) if k > 1 else torch.zeros(64),
        }
        blocks["ordered"] = self.ordered_block(class_vectors, dataset)
        counts = dataset.class_counts.astype(np.float64)
        p = counts / counts.sum()
        balance = float(-(p * np.log(p)).sum() / math.log(k)) if k > 1 else 1.0
        c, h, w = dataset.image_shape
        blocks["meta"] = torch.tensor([math.log2(k) / 4, balance, math.log2(h) / 4, math.log2(w) / 4, c / 3])
        parts = [l2_normalize(blocks[name].numpy()) * weight for name, weight in self.weights.items()]
        return l2_normalize(np.concatenate(parts))


__all__ = ["PixelStatsEncoder"]
