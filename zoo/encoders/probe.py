"""``probe``: a fixed random convolutional network as an offline image encoder (Task2Vec-flavoured).

No weights file, no downloads, no training: the network's weights are drawn from a seeded
:class:`torch.Generator` (:data:`PROBE_SEED`) on the CPU in float32 the first time the encoder embeds,
so every machine builds the same network. Random convolutional features are a known, cheap image
descriptor (Jarrett et al., 2009; Saxe et al., 2011): they respond to strokes, orientations and position,
which is what separates rotated, mirrored or inverted digit tasks.

What it computes (version "1"), for a dataset with ``K`` classes of ``C x H x W`` images:

1. Draw ``per_class`` images of every class (default 32, seed 0), turn each into grayscale (Rec. 601 luma
   for RGB), resize it to 28x28 (bilinear, antialiased) and map it to [-1, 1].
2. The probe: conv 5x5 (1 -> 16 channels, padding 2), ReLU, 2x2 max-pool; conv 3x3 (16 -> 32, padding 1),
   ReLU, 2x2 max-pool; then the mean of each channel over each quadrant of the 7x7 map (2x2 average pool):
   128 features per image, square-rooted. Kaiming-normal weights, zero biases.
3. Per class, the mean of those per-image vectors (``(K, 128)``).
4. The dataset vector concatenates, each block L2-normalised and scaled by its weight in :data:`WEIGHTS`:
   ``pooled``, the mean over classes (128: what the images look like, whatever their labels); ``ordered``,
   for classes ``0..15`` in label order, the class vector minus the mean over classes (16 x 128 = 2048,
   zero for absent classes: this tells label orders and class subsets apart); ``meta``: ``log2(K)``, class
   balance (normalised entropy of class counts), ``log2 H``, ``log2 W`` and ``C`` (5).
5. The whole vector is L2-normalised (dimension 2181).

Cost and retrieval quality are measured in ``bench/bench_task_retrieval.py`` (see docs/embeddings.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from zoo.datasets import ImageDataset
from zoo.encoders.base import ClassPooledEncoder, l2_normalize

PROBE_SEED = 20261129  # seeds the probe's weights; changing it is a new encoder version
SIDE = 28  # images are resized to SIDE x SIDE before the probe
CHANNELS = (16, 32)  # output channels of the two convolutions
FEATURES = CHANNELS[1] * 4  # per image: channel means over the 2x2 quadrants of the last map
ORDERED_CLASSES = 16  # classes whose centred vector enters the label-ordered block
WEIGHTS: dict[str, float] = {  # block -> weight (before the final normalisation)
    "pooled": 1.0,  # mean feature vector over classes
    "ordered": 1.5,  # centred class vectors in label order
    "meta": 0.3,  # class count, balance, image size, channels
}
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _probe_weights() -> list[torch.Tensor]:
    """The probe's two convolution kernels: Kaiming-normal, drawn from :data:`PROBE_SEED` on the CPU."""
    gen = torch.Generator().manual_seed(PROBE_SEED)
    out = []
    for c_in, c_out, k in ((1, CHANNELS[0], 5), (CHANNELS[0], CHANNELS[1], 3)):
        w = torch.randn(c_out, c_in, k, k, generator=gen, dtype=torch.float32)
        out.append(w * math.sqrt(2.0 / (c_in * k * k)))
    return out


class ProbeEncoder(ClassPooledEncoder):
    """A fixed, seeded random CNN's features, pooled per class and kept in label order (see module docs)."""

    id = "probe"
    version = "1"
    description = "offline, opt-in: a fixed seeded random CNN's features per class, in label order"
    embed_by_default = False  # used only when named: it measured below pixels (task_retrieval.json)

    def __init__(self, per_class: int = 32, seed: int = 0) -> None:
        self.per_class = per_class
        self.seed = seed
        self.batch_size = 512
        self.normalize_images = False  # combine() normalises per block
        self._weights: list[torch.Tensor] | None = None  # built on first use, never at import

    @property
    def dim(self) -> int:
        return FEATURES + FEATURES * ORDERED_CLASSES + 5

    def _kernels(self) -> list[torch.Tensor]:
        if self._weights is None:  # two threads racing here build the same weights: no lock needed
            self._weights = _probe_weights()
        return self._weights

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        w1, w2 = self._kernels()
        x = images.float().cpu()
        rgb = x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1)
        g = (rgb * _LUMA[None, :, None, None]).sum(1, keepdim=True)  # (B, 1, H, W)
        g = F.interpolate(g, size=(SIDE, SIDE), mode="bilinear", align_corners=False, antialias=True)
        h = F.max_pool2d(F.relu(F.conv2d(g * 2 - 1, w1, padding=2)), 2)  # (B, 16, 14, 14)
        h = F.max_pool2d(F.relu(F.conv2d(h, w2, padding=1)), 2)  # (B, 32, 7, 7)
        return F.adaptive_avg_pool2d(h, 2).flatten(1).sqrt()  # (B, 128)

    def combine(self, class_vectors: torch.Tensor, dataset: ImageDataset) -> np.ndarray:
        k = dataset.num_classes
        ordered = torch.zeros(ORDERED_CLASSES, FEATURES)
        ordered[: min(k, ORDERED_CLASSES)] = (class_vectors - class_vectors.mean(0))[:ORDERED_CLASSES]
        counts = dataset.class_counts.astype(np.float64)
        p = counts / counts.sum()
        balance = float(-(p * np.log(p)).sum() / math.log(k)) if k > 1 else 1.0
        c, h, w = dataset.image_shape
        blocks = {
            "pooled": class_vectors.mean(0),
            "ordered": ordered.flatten(),
            "meta": torch.tensor([math.log2(k) / 4, balance, math.log2(h) / 4, math.log2(w) / 4, c / 3]),
        }
        parts = [l2_normalize(blocks[name].numpy()) * WEIGHTS[name] for name in WEIGHTS]
        return l2_normalize(np.concatenate(parts))


__all__ = ["ProbeEncoder"]
