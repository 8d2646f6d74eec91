"""Labelled image datasets as dataset encoders read them: loading, validation, fingerprints.

Every source becomes one :class:`ImageDataset`: images as a float tensor ``(N, C, H, W)`` in ``[0, 1]``
(``C`` is 1 or 3), integer labels ``0..num_classes-1``, and, where the data can be read again, a
``source`` mapping that :func:`load_source` understands (the registry keeps it so that embeddings can be
refreshed later without the caller handing the data in again).

Sources: tensors or arrays (:func:`from_arrays`), a ``torch.utils.data.Dataset`` (:func:`from_torch_dataset`),
an image folder ``root/<class>/<image>`` (:func:`from_image_folder`), scikit-learn's bundled digits
(:func:`load_digits`) and the MNIST IDX files (:func:`load_mnist`). :func:`as_dataset` picks the right one.

Bad input raises :class:`~zoo.errors.DatasetError` naming the problem and the fix: an empty dataset, a class
without images, images of different sizes, labels that do not match the images, NaN or infinite pixels.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import math
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zoo.errors import SHOW_LIMIT, DatasetError, Hint

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = b"zoo-dataset-v1"  # bump when the fingerprint's definition changes
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)
MNIST_FILES = {  # split -> (images file, labels file), as published
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
}
ENV_MNIST_DIR = "ZOO_MNIST_DIR"


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image dataset held in memory, validated on construction.

    Build one with :func:`from_arrays` (or :func:`as_dataset`) rather than directly: those accept more
    layouts and dtypes and give better errors. Instances are immutable; the helpers return new datasets.
    """

    images: torch.Tensor  # (N, C, H, W) float32 in [0, 1], C in {1, 3}
    labels: torch.Tensor  # (N,) int64 in [0, num_classes)
    num_classes: int  # every class 0..num_classes-1 has at least one image
    class_names: tuple[str, ...] = ()  # one per class, or empty
    source: Mapping[str, Any] | None = None  # how load_source() reads the same data again; None if in memory

    def __post_init__(self) -> None:
        if self.source is not None:
            object.__setattr__(self, "source", MappingProxyType(dict(self.source)))
        _validate(self.images, self.labels, self.num_classes, self.class_names)

    # -- facts --------------------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @functools.cached_property
    def class_counts(self) -> np.ndarray:
        """Images per class, shape ``(num_classes,)``."""
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 over the image shape, the pixels (float32) and the labels: changes iff the content does."""
        h = hashlib.sha256(FINGERPRINT_VERSION)
        h.update(struct.pack("<5q", self.num_samples, *self.image_shape, self.num_classes))
        h.update(np.ascontiguousarray(self.images.numpy(), dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(self.labels.numpy(), dtype="<i8").tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        c, hh, w = self.image_shape
        return f"ImageDataset({self.num_samples} images {c}x{hh}x{w}, {self.num_classes} classes)"

    # -- derived datasets ---------------------------------------------------------------------------
    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> "ImageDataset":
        """The images at ``indices`` (every class must keep at least one image). The subset is held in memory
        (``source`` None); :meth:`split` and :meth:`select_classes` keep a readable source."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ImageDataset(self.images[idx], self.labels[idx], self.num_classes, self.class_names)

    def select_classes(self, classes: Sequence[int]) -> "ImageDataset":
        """Only the images of ``classes``, relabelled ``0..len(classes)-1`` in the order given."""
        classes = [int(c) for c in classes]
        bad = [c for c in classes if not 0 <= c < self.num_classes]
        if bad or not classes or len(set(classes)) != len(classes):
            raise DatasetError(
                f"cannot select classes {classes}: pass distinct labels in 0..{self.num_classes - 1}"
            )
        remap = torch.full((self.num_classes,), -1, dtype=torch.int64)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        keep = remap[self.labels] >= 0
        names = tuple(self.class_names[c] for c in classes) if self.class_names else ()
        return ImageDataset(
            self.images[keep],
            remap[self.labels[keep]],
            len(classes),
            names,
            derived(self.source, "select_classes", classes),
        )

    def split(self, fraction: float, seed: int = 0) -> tuple["ImageDataset", "ImageDataset"]:
        """A stratified split: ``fraction`` of every class in the first part, the rest in the second.

        Deterministic: both parts keep a readable ``source`` when this dataset has one."""
        if not 0.0 < fraction < 1.0:
            raise DatasetError(f"split fraction {fraction} must lie strictly between 0 and 1")
        gen = torch.Generator().manual_seed(seed)
        first: list[torch.Tensor] = []
        second: list[torch.Tensor] = []
        for c in range(self.num_classes):
            idx = torch.nonzero(self.labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            cut = min(max(1, round(len(idx) * fraction)), len(idx) - 1)
            if cut < 1:
                raise DatasetError(f"class {c} has {len(idx)} image(s); a split needs at least 2 per class")
            first.append(idx[:cut])
            second.append(idx[cut:])
        parts = []
        for part, idx in enumerate((torch.cat(first).sort().values, torch.cat(second).sort().values)):
            step = derived(self.source, "split", float(fraction), int(seed), part)
            sub = self.subset(idx)
            parts.append(ImageDataset(sub.images, sub.labels, sub.num_classes, sub.class_names, step))
        return parts[0], parts[1]

    def map_images(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "ImageDataset":
        """A dataset whose images are ``fn(images)`` (a batch ``(N, C, H, W)`` in, a batch out). Held in
        memory (``source`` None: zoo cannot replay an arbitrary function); :meth:`resize`, :func:`rotate`,
        :func:`invert`, :func:`mirror`, :func:`blur` and :func:`scale` keep a readable source."""
        return ImageDataset(_to_nchw(fn(self.images)), self.labels, self.num_classes, self.class_names)

    def resize(self, size: int | Sequence[int]) -> "ImageDataset":
        """Every image resized (bilinear) to ``size``: ``(H, W)`` or one side, e.g. scikit-learn's 8x8 digits
        to the 28x28 that MNIST-sized networks take. Keeps a readable ``source``."""
        hw = [int(size), int(size)] if isinstance(size, int) else [int(x) for x in size]
        if len(hw) != 2 or min(hw) < 1:
            raise DatasetError(f"cannot resize to {size!r}; pass (height, width) or one side, e.g. 28")
        out = _to_nchw(F.interpolate(self.images, size=tuple(hw), mode="bilinear", align_corners=False))
        return self._replaced(out, derived(self.source, "resize", hw))

    def _replaced(self, images: torch.Tensor, source: Mapping[str, Any] | None) -> "ImageDataset":
        return ImageDataset(images, self.labels, self.num_classes, self.class_names, source)

    def sample_per_class(self, per_class: int, seed: int = 0) -> list[torch.Tensor]:
        """For every class, the indices of up to ``per_class`` of its images, drawn without replacement.

        Deterministic: the draw depends only on the labels, ``per_class`` and ``seed``.
        """
        out = []
        for c in range(self.num_classes):
            idx = torch.nonzero(self.labels == c).flatten()
            gen = torch.Generator().manual_seed(seed * 1_000_003 + c)
            out.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]].sort().values)
        return out


# ----------------------------------------------------------------------------------------------------
# validation and conversion
# ----------------------------------------------------------------------------------------------------
def _validate(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, class_names: tuple[str, ...]
) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.dtype != torch.float32:
        raise DatasetError(
            "ImageDataset.images must be a float32 tensor (N, C, H, W); build datasets with "
            "zoo.datasets.from_arrays(images, labels), which converts other layouts"
        )
    n = images.shape[0]
    if n == 0:
        raise DatasetError("the dataset is empty (0 images); pass at least one image for every class")
    if images.shape[1] not in (1, 3):
        raise DatasetError(
            f"images have {images.shape[1]} channels; zoo reads 1 (grayscale) or 3 (RGB) channels"
        )
    if labels.dtype != torch.int64 or labels.shape != (n,):
        raise DatasetError(
            f"labels must be an int64 tensor of shape ({n},), one per image; got "
            f"{labels.dtype} {tuple(labels.shape)}"
        )
    if num_classes < 1:
        raise DatasetError(f"num_classes is {num_classes}; a dataset needs at least one class")
    if class_names and len(class_names) != num_classes:
        raise DatasetError(
            f"{len(class_names)} class names for {num_classes} classes; pass one name per class"
        )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise DatasetError(
            f"labels range over {lo}..{hi} but num_classes is {num_classes}; labels must lie in "
            f"0..{num_classes - 1}"
        )
    counts = torch.bincount(labels, minlength=num_classes)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        named = ", ".join(f"{c} ({class_names[c]!r})" if class_names else str(c) for c in empty[:5])
        raise DatasetError(
            f"class {named} has no images ({len(empty)} of {num_classes} classes are empty); add "
            "images for it, or leave it out and renumber the labels (ImageDataset.select_classes)"
        )
    if not bool(torch.isfinite(images).all()):
        raise DatasetError("images contain NaN or infinite values; clean them before registering the dataset")


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    """A float32 ``(N, C, H, W)`` batch in [0, 1] from ``(N, H, W)``, NHWC or NCHW, uint8 or float."""
    if x.dim() == 3:
        x = x.unsqueeze(1)  # (N, 1, H, W)
    if x.dim() != 4:
        raise DatasetError(
            f"images have shape {tuple(x.shape)}; pass (N, H, W), (N, C, H, W) or (N, H, W, C)"
        )
    if x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW
    if x.shape[1] == 4:
        x = x[:, :3]  # drop alpha
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.dtype == torch.bool:
        x = x.float()
    elif not x.dtype.is_floating_point:
        top = float(x.max()) if x.numel() else 1.0
        x = x.float() / (255.0 if top > 1 else 1.0)
    else:
        x = x.float()
        if x.numel() and bool(torch.isfinite(x).all()):
            lo, hi = float(x.min()), float(x.max())
            if lo < -1e-3 or hi > 1.0 + 1e-3:
                log.warning("image values span %.3g..%.3g, outside [0, 1]; rescaling them to [0, 1]", lo, hi)
                x = (x - lo) / max(hi - lo, 1e-12)
    return x.contiguous()


def _stack(images: Sequence[Any], names: Sequence[str] | None = None) -> torch.Tensor:
    """Stack a list of per-image arrays, failing clearly when their sizes differ."""
    if len(images) == 0:
        raise DatasetError("the dataset is empty (0 images); pass at least one image for every class")
    tensors = [im if isinstance(im, torch.Tensor) else torch.from_numpy(np.array(im)) for im in images]
    first = tuple(tensors[0].shape)
    for i, t in enumerate(tensors):
        if tuple(t.shape) != first:
            a = names[0] if names else "image 0"
            b = names[i] if names else f"image {i}"
            resize = Hint("from_image_folder takes size=(H, W)", "`zoo datasets register` takes --size HxW")
            raise DatasetError(
                f"images have different sizes: {a} is {list(first)} but {b} is {list(t.shape)}; "
                f"resize them to one size first ({resize})"
            ).hinting(resize)
    return torch.stack(tensors)


def from_arrays(
    images: Any,
    labels: Any,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] = (),
    source: Mapping[str, Any] | None = None,
) -> ImageDataset:
    """A dataset from images and labels given as tensors, NumPy arrays or lists.

    ``images``: ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)``; uint8 (0-255) or float (0-1; other
    ranges are rescaled with a warning), or a list of equally sized images. ``labels``: ``N`` integers.
    ``num_classes`` defaults to ``max(label) + 1`` (or ``len(class_names)``); every class must have images.
    """
    if isinstance(images, (list, tuple)):
        x = _stack(images)
    else:
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.numel() == 0 or x.shape[0] == 0:
        raise DatasetError("the dataset is empty (0 images); pass at least one image for every class")
    x = _to_nchw(x.detach().cpu())
    y = torch.as_tensor(np.asarray(labels if not isinstance(labels, torch.Tensor) else labels.cpu()))
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise DatasetError(
            f"{x.shape[0]} images but labels of shape {tuple(y.shape)}; pass one label per image"
        )
    if y.dtype.is_floating_point:
        if not bool((y == y.round()).all()):
            raise DatasetError("labels must be integers (class indices 0..num_classes-1)")
    y = y.to(torch.int64)
    if num_classes is None:
        num_classes = len(class_names) if class_names else int(y.max()) + 1
    return ImageDataset(x, y, int(num_classes), tuple(str(c) for c in class_names), source)


def from_torch_dataset(
    dataset: Any, *, num_classes: int | None = None, class_names: Sequence[str] = (), limit: int | None = None
) -> ImageDataset:
    """A dataset from a map-style ``torch.utils.data.Dataset`` of ``(image, label)`` pairs.

    Images may be tensors, arrays or PIL images; ``limit`` reads only the first ``limit`` items.
    ``class_names`` default to the dataset's ``classes`` attribute when it has one (torchvision datasets).
    """
    try:
        n = len(dataset)
    except TypeError:
        raise DatasetError(
            f"{type(dataset).__name__} has no length; pass a map-style dataset, or tensors"
        ) from None
    n = min(n, limit) if limit is not None else n
    images: list[Any] = []
    labels: list[int] = []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DatasetError(f"item {i} of {type(dataset).__name__} is not an (image, label) pair")
        img, label = item[0], item[1]
        images.append(img.detach().cpu() if isinstance(img, torch.Tensor) else np.asarray(img))
        labels.append(int(label))
    if not class_names and hasattr(dataset, "classes"):
        class_names = [str(c) for c in dataset.classes]
    return from_arrays(images if images else [], labels, num_classes=num_classes, class_names=class_names)


def from_image_folder(
    root: str | os.PathLike[str],
    *,
    size: tuple[int, int] | int | None = None,
    grayscale: bool = False,
    limit_per_class: int | None = None,
) -> ImageDataset:
    """A dataset from ``root/<class name>/<image file>`` (classes in sorted order, as torchvision does).

    Every image must have the same size unless ``size`` (``(H, W)`` or one side) resizes them all.
    A class folder without images is an error, as is a root without class folders. Hidden files (a leading
    ``.``, such as macOS ``._name.png`` AppleDouble files) are skipped.

    Raises:
        DatasetError: ``root`` is not a folder, has no class folders, a class has no images, an image cannot
            be read (the message names the file), or the images differ in size without ``size``.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(
            f"image folder {root} has no class folders; lay it out as {root}/<class>/<image>.png"
        )
    hw = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    for c, cname in enumerate(classes):
        files = sorted(
            p
            for p in (root / cname).iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")  # hidden, macOS ._x.png
        )
        if limit_per_class is not None:
            files = files[:limit_per_class]
        if not files:
            raise DatasetError(
                f"class {cname!r} has no images: {root / cname} holds no "
                f"{'/'.join(sorted(IMAGE_SUFFIXES))} files; add images or remove the folder"
            )
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if grayscale else "RGB")
                    if hw is not None:
                        im = im.resize((hw[1], hw[0]), Image.BILINEAR)
                    arrays.append(np.asarray(im))
            except (OSError, SyntaxError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
                reason = (
                    "it is empty"
                    if f.stat().st_size == 0
                    else "it is not an image zoo can read"
                    if isinstance(exc, Image.UnidentifiedImageError)
                    else f"it cannot be read ({str(exc)[:SHOW_LIMIT]})"
                )
                raise DatasetError(
                    f"image {f}: {reason}; replace or remove the file (hidden files, such as macOS "
                    "'._' files, are skipped)"
                ) from None
            labels.append(c)
            names.append(str(f.relative_to(root)))
    x = _stack(arrays, names)
    source = {
        "kind": "image-folder",
        "path": str(root.resolve()),
        "size": list(hw) if hw else None,
        "grayscale": grayscale,
        "limit_per_class": limit_per_class,
    }
    return from_arrays(x, labels, num_classes=len(classes), class_names=classes, source=source)


def load_digits() -> ImageDataset:
    """scikit-learn's bundled handwritten digits: 1,797 real 8x8 grayscale images, 10 classes."""
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    images = torch.from_numpy(d.images.astype(np.float32) / 16.0)  # (N, 8, 8), values 0..16
    return from_arrays(
        images,
        d.target,
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        source={"kind": "sklearn-digits"},
    )


def _open_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        data = fh.read()
    if len(data) < 8:
        raise DatasetError(f"{path} is not an IDX file (too short)")
    zero, dtype_code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype_code != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}i", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise DatasetError(f"{path}: header says {dims} but holds {body.size} values; the file is truncated")
    return body.reshape(dims)


def find_mnist(
    directory: str | os.PathLike[str] | None = None, split: str = "test"
) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of ``split`` in ``directory`` (or ``$ZOO_MNIST_DIR``), if present."""
    if split not in MNIST_FILES:
        raise DatasetError(f"unknown MNIST split {split!r}; choose from {', '.join(MNIST_FILES)}")
    dirs = (
        [Path(directory)]
        if directory is not None
        else ([Path(os.environ[ENV_MNIST_DIR])] if os.environ.get(ENV_MNIST_DIR) else [])
    )
    for d in dirs:
        found = []
        for stem in MNIST_FILES[split]:
            cand = [d / f"{stem}.gz", d / stem]
            hit = next((c for c in cand if c.is_file()), None)
            if hit is None:
                break
            found.append(hit)
        if len(found) == 2:
            return found[0], found[1]
    return None


def load_mnist(
    directory: str | os.PathLike[str] | None = None, *, split: str = "test", limit: int | None = None
) -> ImageDataset:
    """MNIST from its IDX files (``t10k-images-idx3-ubyte[.gz]`` and labels) in ``directory``.

    ``directory`` defaults to ``$ZOO_MNIST_DIR``. Nothing is downloaded: a missing file is an error that
    says where zoo looked.
    """
    files = find_mnist(directory, split)
    if files is None:
        where = (
            directory
            if directory is not None
            else os.environ.get(ENV_MNIST_DIR, "(ZOO_MNIST_DIR is not set)")
        )
        raise DatasetError(
            f"MNIST {split} files {' and '.join(MNIST_FILES[split])} (.gz or not) are not in {where}; "
            "point load_mnist(directory) or $ZOO_MNIST_DIR at the folder that holds them"
        )
    images, labels = _open_idx(files[0]), _open_idx(files[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"MNIST files disagree: images {images.shape}, labels {labels.shape}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    source = {"kind": "mnist-idx", "path": str(files[0].parent.resolve()), "split": split, "limit": limit}
    return from_arrays(
        torch.from_numpy(images.copy()),
        labels.astype(np.int64),
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        source=source,
    )


BUILTIN_SOURCES: dict[str, Callable[[], ImageDataset]] = {  # names as_dataset() accepts
    "digits": load_digits,  # scikit-learn's 8x8 digits
    "sklearn-digits": load_digits,  # the same
}


def load_source(source: Mapping[str, Any]) -> ImageDataset:
    """Read a dataset again from the ``source`` mapping an earlier load recorded."""
    kind = source.get("kind")
    if kind == "derived":
        ds = load_source(source["from"])
        for step in source.get("steps", ()):
            ds = _replay(ds, step)
        return ds
    if kind == "sklearn-digits":
        return load_digits()
    if kind == "mnist-idx":
        return load_mnist(source["path"], split=source.get("split", "test"), limit=source.get("limit"))
    if kind == "image-folder":
        size = source.get("size")
        return from_image_folder(
            source["path"],
            size=tuple(size) if size else None,
            grayscale=bool(source.get("grayscale")),
            limit_per_class=source.get("limit_per_class"),
        )
    raise DatasetError(
        f"cannot reload a dataset from source {dict(source)!r}; register it again with its data"
    )


def as_dataset(data: Any, labels: Any = None, **kwargs: Any) -> ImageDataset:
    """Whatever describes a labelled image dataset, as an :class:`ImageDataset`.

    Accepts an ``ImageDataset``; ``(images, labels)`` (or ``images`` and ``labels=``) as tensors or arrays;
    a ``torch.utils.data.Dataset``; a path to an image folder or to a folder holding the MNIST IDX files; a
    built-in name (``"digits"``); or a ``source`` mapping recorded by an earlier load.
    """
    if isinstance(data, ImageDataset):
        return data
    if labels is not None:
        return from_arrays(data, labels, **kwargs)
    if isinstance(data, tuple) and len(data) == 2:
        return from_arrays(data[0], data[1], **kwargs)
    if isinstance(data, Mapping) and "kind" in data:
        return load_source(data)
    if isinstance(data, str) and data in BUILTIN_SOURCES:
        return BUILTIN_SOURCES[data]()
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir() and find_mnist(path) is not None:
            return load_mnist(path, **kwargs)
        if path.is_dir():
            return from_image_folder(path, **kwargs)
        raise DatasetError(
            f"{data!r} is neither a built-in dataset ({', '.join(BUILTIN_SOURCES)}) nor a folder; "
            "give an existing image folder (one subfolder per class), an MNIST folder or a built-in "
            "name (from Python also (images, labels) tensors or a torch Dataset)"
        )
    if isinstance(data, torch.utils.data.Dataset) or (
        hasattr(data, "__getitem__") and hasattr(data, "__len__")
    ):
        return from_torch_dataset(data, **kwargs)
    raise DatasetError(
        f"cannot read a dataset from {type(data).__name__}; pass (images, labels), a torch Dataset, "
        "an image folder path or a built-in name"
    )


# ----------------------------------------------------------------------------------------------------
# transformations (used to build distinct tasks from one source)
# ----------------------------------------------------------------------------------------------------
def rotate(dataset: ImageDataset, degrees: float) -> ImageDataset:
    """Every image rotated counter-clockwise by ``degrees`` (exact for multiples of 90, bilinear
    otherwise). Keeps a readable ``source``."""
    step = derived(dataset.source, "rotate", float(degrees))
    if float(degrees) % 90 == 0:
        k = int(float(degrees) // 90) % 4
        return dataset._replaced(torch.rot90(dataset.images, k, dims=(2, 3)).contiguous(), step)
    theta = math.radians(float(degrees))
    cos, sin = math.cos(theta), math.sin(theta)

    def fn(x: torch.Tensor) -> torch.Tensor:
        mat = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(mat, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)

    return dataset._replaced(_to_nchw(fn(dataset.images)), step)


def invert(dataset: ImageDataset) -> ImageDataset:
    """Every pixel ``p`` replaced by ``1 - p``. Keeps a readable ``source``."""
    return dataset._replaced((1.0 - dataset.images).contiguous(), derived(dataset.source, "invert"))


def mirror(dataset: ImageDataset) -> ImageDataset:
    """Every image flipped left to right. Keeps a readable ``source``."""
    return dataset._replaced(
        torch.flip(dataset.images, dims=(3,)).contiguous(), derived(dataset.source, "mirror")
    )


def blur(dataset: ImageDataset, sigma: float) -> ImageDataset:
    """Every image blurred by a Gaussian of standard deviation ``sigma`` pixels (separable, truncated at
    ``3 sigma``, edges replicated, so a uniform background stays uniform). Deterministic; keeps a readable
    ``source``. Raises :class:`~zoo.errors.DatasetError` unless ``sigma`` is a positive finite number."""
    s = float(sigma)
    if not math.isfinite(s) or s <= 0:
        raise DatasetError(f"cannot blur with sigma {sigma!r}: pass a positive width in pixels, e.g. 1.5")
    step = derived(dataset.source, "blur", s)
    radius = max(1, math.ceil(3 * s))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / s) ** 2)
    kernel = (kernel / kernel.sum()).to(dataset.images.dtype)
    n, c, h, w = dataset.images.shape
    flat = dataset.images.reshape(n * c, 1, h, w)  # (N*C, 1, H, W): every channel on its own
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return dataset._replaced(flat.reshape(n, c, h, w).clamp(0, 1).contiguous(), step)


def scale(dataset: ImageDataset, factor: float) -> ImageDataset:
    """Every image zoomed about its centre by ``factor`` (bilinear; the same size out): below 1 it shrinks
    (the border filled with 0, as :func:`rotate` fills corners), above 1 it enlarges and crops.
    Deterministic; keeps a readable ``source``. Raises :class:`~zoo.errors.DatasetError` unless ``factor``
    is a positive finite number."""
    f = float(factor)
    if not math.isfinite(f) or f <= 0:
        raise DatasetError(
            f"cannot scale by {factor!r}: pass a positive zoom factor, e.g. 0.7 (1 = unchanged)"
        )
    step = derived(dataset.source, "scale", f)
    if f == 1.0:
        return dataset._replaced(dataset.images, step)
    x = dataset.images
    mat = torch.tensor([[1.0 / f, 0.0, 0.0], [0.0, 1.0 / f, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)
    return dataset._replaced(_to_nchw(out), step)


def derived(source: Mapping[str, Any] | None, op: str, *args: Any) -> dict[str, Any] | None:
    """The ``source`` of a dataset made from one with ``source`` by the step ``op(*args)`` (one of
    :data:`STEPS`): ``{"kind": "derived", "from": <the first source>, "steps": [[op, *args], ...]}``, which
    :func:`load_source` replays. None when ``source`` is None (data held in memory stay so)."""
    if source is None:
        return None
    if op not in STEPS:
        raise DatasetError(f"unknown dataset step {op!r}; choose from {', '.join(STEPS)}")
    step = [op, *(list(a) if isinstance(a, (tuple, list)) else a for a in args)]
    if source.get("kind") == "derived":
        return {"kind": "derived", "from": dict(source["from"]), "steps": [*source["steps"], step]}
    return {"kind": "derived", "from": dict(source), "steps": [step]}


def _replay(dataset: ImageDataset, step: Sequence[Any]) -> ImageDataset:
    """``dataset`` after one recorded step (see :func:`derived`)."""
    op, *args = step
    if op == "resize":
        return dataset.resize(args[0])
    if op == "rotate":
        return rotate(dataset, float(args[0]))
    if op == "invert":
        return invert(dataset)
    if op == "mirror":
        return mirror(dataset)
    if op == "blur":
        return blur(dataset, float(args[0]))
    if op == "scale":
        return scale(dataset, float(args[0]))
    if op == "select_classes":
        return dataset.select_classes(args[0])
    if op == "split":
        return dataset.split(float(args[0]), seed=int(args[1]))[int(args[2])]
    raise DatasetError(f"cannot replay dataset step {op!r}; choose from {', '.join(STEPS)}")


STEPS = (  # what a derived source replays
    "resize",
    "rotate",
    "invert",
    "mirror",
    "blur",
    "scale",
    "select_classes",
    "split",
)  # what a derived source replays


__all__ = [
    "BUILTIN_SOURCES",
    "STEPS",
    "ImageDataset",
    "derived",
    "as_dataset",
    "blur",
    "find_mnist",
    "from_arrays",
    "from_image_folder",
    "from_torch_dataset",
    "invert",
    "load_digits",
    "load_mnist",
    "load_source",
    "mirror",
    "rotate",
    "scale",
]
