"""Dataset loading, validation and fingerprints (zoo.datasets)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.datasets import (
    ImageDataset,
    as_dataset,
    blur,
    from_arrays,
    from_image_folder,
    from_torch_dataset,
    invert,
    load_digits,
    load_mnist,
    load_source,
    rotate,
    scale,
)
from zoo.errors import DatasetError
from zoo.shared_data import shared_data_dir


def _toy(n_per_class: int = 4, classes: int = 3, side: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n_per_class * classes, side, side, generator=gen)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return x, y


def test_from_arrays_layouts_agree() -> None:
    x, y = _toy()
    u8 = (x * 255).round().to(torch.uint8)
    a = from_arrays(u8, y)  # (N, H, W) uint8
    b = from_arrays(u8.numpy()[..., None], y.numpy())  # (N, H, W, 1) numpy
    c = from_arrays(u8.float().div(255).unsqueeze(1), y.tolist())  # (N, 1, H, W) float
    assert a.image_shape == b.image_shape == c.image_shape == (1, 6, 6)
    assert a.num_classes == 3 and a.num_samples == 12
    assert a.fingerprint == b.fingerprint == c.fingerprint
    rgb = from_arrays(torch.rand(6, 5, 5, 3), [0, 1, 0, 1, 0, 1])
    assert rgb.image_shape == (3, 5, 5)


def test_fingerprint_follows_content() -> None:
    x, y = _toy()
    a = from_arrays(x, y)
    x2 = x.clone()
    x2[0, 0, 0] = 1 - x2[0, 0, 0]
    assert from_arrays(x2, y).fingerprint != a.fingerprint
    assert from_arrays(x, y.flip(0)).fingerprint != a.fingerprint
    assert from_arrays(x.clone(), y.clone()).fingerprint == a.fingerprint


def test_out_of_range_floats_are_rescaled() -> None:
    x, y = _toy()
    ds = from_arrays(x * 10 - 5, y)
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: from_arrays(torch.zeros(0, 4, 4), []), ["empty"]),
        (lambda: from_arrays(torch.rand(4, 4, 4), [0, 0, 2, 2]), ["class 1", "no images"]),
        (lambda: from_arrays(torch.rand(4, 4, 4), [0, 1, 0, 1], num_classes=3), ["class 2", "no images"]),
        (
            lambda: from_arrays([np.zeros((4, 4)), np.zeros((5, 4))], [0, 1]),
            ["different sizes", "[4, 4]", "[5, 4]"],
        ),
        (lambda: from_arrays(torch.rand(4, 4, 4), [0, 1, 0]), ["labels"]),
        (lambda: from_arrays(torch.full((2, 4, 4), float("nan")), [0, 1]), ["NaN"]),
        (lambda: from_arrays(torch.rand(2, 5, 8, 8), [0, 1]), ["channels"]),
        (lambda: from_arrays(torch.rand(2, 4, 4), [0.5, 1]), ["integers"]),
        (lambda: from_arrays(torch.rand(2, 4, 4), [0, 1], class_names=["a", "b", "c"]), ["class 2", "'c'"]),
    ],
)
def test_bad_inputs_raise_dataset_error(make, words: list[str]) -> None:
    with pytest.raises(DatasetError) as err:
        make()
    for w in words:
        assert w in str(err.value)


def test_split_select_and_transforms() -> None:
    ds = load_digits()
    a, b = ds.split(0.7, seed=1)
    assert a.num_samples + b.num_samples == ds.num_samples
    assert (a.class_counts > 0).all() and (b.class_counts > 0).all()
    assert abs(a.num_samples / ds.num_samples - 0.7) < 0.01
    sub = ds.select_classes([5, 6, 7])
    assert sub.num_classes == 3 and sub.class_names == ("5", "6", "7")
    assert sub.num_samples == int(ds.class_counts[5:8].sum())
    r = rotate(ds, 90)
    assert torch.equal(rotate(r, 270).images, ds.images)
    assert rotate(ds, 30).image_shape == ds.image_shape
    assert torch.allclose(invert(invert(ds)).images, ds.images)
    picks = ds.sample_per_class(5, seed=3)
    assert [len(p) for p in picks] == [5] * 10
    assert all(bool((ds.labels[p] == c).all()) for c, p in enumerate(picks))
    assert all(torch.equal(p, q) for p, q in zip(picks, ds.sample_per_class(5, seed=3)))
    with pytest.raises(DatasetError):
        ds.select_classes([3, 11])


def test_blur_and_scale_are_deterministic_replayable_transforms() -> None:
    ds = load_digits().resize(28)
    for made in (blur(ds, 1.5), scale(ds, 0.7), scale(blur(ds, 1.0), 1.3)):
        assert made.image_shape == ds.image_shape and made.num_classes == ds.num_classes
        assert torch.equal(made.labels, ds.labels) and not torch.equal(made.images, ds.images)
        assert 0.0 <= float(made.images.min()) and float(made.images.max()) <= 1.0
        again = load_source(made.source)  # the recorded steps replay to the very same data
        assert again.fingerprint == made.fingerprint
    assert blur(ds, 1.5).fingerprint == blur(ds, 1.5).fingerprint != blur(ds, 2.0).fingerprint
    assert blur(ds, 1.5).source["steps"][-1] == ["blur", 1.5]
    assert scale(ds, 0.5).source["steps"][-1] == ["scale", 0.5]


def test_blur_keeps_mass_and_a_uniform_image() -> None:
    dot = torch.zeros(1, 1, 15, 15)
    dot[0, 0, 7, 7] = 1.0
    one = from_arrays(torch.cat([dot, torch.full_like(dot, 0.6)]), [0, 1])
    out = blur(one, 1.0).images
    assert torch.isclose(out[0].sum(), torch.tensor(1.0), atol=1e-5)  # a Gaussian spreads, keeps the sum
    assert out[0, 0, 7, 7] == out[0].max() and out[0, 0, 7, 8] == out[0, 0, 8, 7] == out[0, 0, 7, 6]
    assert torch.allclose(out[1], torch.full_like(out[1], 0.6))  # edges replicated: no dark frame


def test_scale_zooms_about_the_centre() -> None:
    img = torch.zeros(1, 1, 20, 20)
    img[0, 0, 4:16, 4:16] = 1.0  # a 12x12 square in the middle
    ds = from_arrays(torch.cat([img, img]), [0, 1])
    half = scale(ds, 0.5).images[0, 0]
    rows = torch.nonzero(half > 0.5)
    assert rows.min().item() >= 6 and rows.max().item() <= 13  # about 6x6 around the centre
    assert torch.equal(half, half.flip(0)) and torch.equal(half, half.flip(1))  # still centred
    assert scale(ds, 2.0).images[0, 0].min() == 1.0  # the square fills the frame
    assert torch.equal(scale(ds, 1.0).images, ds.images)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: blur(d, 0), ["sigma 0", "positive"]),
        (lambda d: blur(d, float("nan")), ["sigma nan"]),
        (lambda d: scale(d, -0.5), ["scale by -0.5", "positive"]),
        (lambda d: scale(d, float("inf")), ["scale by inf"]),
    ],
)
def test_bad_blur_and_scale_arguments_are_dataset_errors(make, words: list[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatasetError) as err:
        make(load_digits())
    assert all(w in str(err.value) for w in words)


def test_digits_and_source_roundtrip() -> None:
    ds = load_digits()
    assert (ds.num_samples, ds.num_classes, ds.image_shape) == (1797, 10, (1, 8, 8))
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    assert load_source(ds.source).fingerprint == ds.fingerprint
    assert as_dataset("digits").fingerprint == ds.fingerprint


def test_torch_dataset() -> None:
    x, y = _toy()
    ds = from_torch_dataset(torch.utils.data.TensorDataset(x, y))
    assert ds.fingerprint == from_arrays(x, y).fingerprint
    assert as_dataset(torch.utils.data.TensorDataset(x, y)).fingerprint == ds.fingerprint
    assert as_dataset((x, y)).fingerprint == ds.fingerprint


def _write_folder(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, shapes in sizes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, (h, w) in enumerate(shapes):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_image_folder(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "imgs", {"cat": [(6, 6)] * 3, "dog": [(6, 6)] * 2})
    ds = from_image_folder(root)
    assert ds.class_names == ("cat", "dog") and ds.num_samples == 5 and ds.image_shape == (3, 6, 6)
    assert ds.source["kind"] == "image-folder"
    assert load_source(ds.source).fingerprint == ds.fingerprint
    assert as_dataset(root).fingerprint == ds.fingerprint
    gray = from_image_folder(root, grayscale=True, size=4)
    assert gray.image_shape == (1, 4, 4)


def test_image_folder_errors(tmp_path: Path) -> None:
    mixed = _write_folder(tmp_path / "mixed", {"a": [(6, 6)], "b": [(7, 6)]})
    with pytest.raises(DatasetError, match=r"different sizes.*b/0.png.*size="):
        from_image_folder(mixed)
    assert from_image_folder(mixed, size=(5, 5)).image_shape == (3, 5, 5)
    empty_class = _write_folder(tmp_path / "ec", {"a": [(6, 6)]})
    (empty_class / "b").mkdir()
    with pytest.raises(DatasetError, match="class 'b' has no images"):
        from_image_folder(empty_class)
    (tmp_path / "none").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        from_image_folder(tmp_path / "none")


def test_mnist_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path)


def test_mnist_idx() -> None:
    data = shared_data_dir()
    if data is None or not (data / "mnist").is_dir():
        pytest.skip("MNIST files are not present")
    ds = load_mnist(data / "mnist", limit=500)
    assert (ds.num_samples, ds.num_classes, ds.image_shape) == (500, 10, (1, 28, 28))
    assert load_source(ds.source).fingerprint == ds.fingerprint
    assert isinstance(as_dataset(data / "mnist"), ImageDataset)


def _image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray((rng.random((8, 8)) * 255).astype("uint8")).save(root / cls / f"{i}.png")
    return root


def test_image_folder_skips_hidden_and_macos_appledouble_files(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "imgs")
    (root / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")  # macOS copies leave these
    (root / "b" / ".hidden.png").write_bytes(b"")
    assert zoo.as_dataset(str(root)).num_samples == 4


@pytest.mark.parametrize(
    ("content", "said"), [(b"", "it is empty"), (b"junk", "it is not an image zoo can read")]
)
def test_an_unreadable_image_is_a_dataset_error_naming_the_file_on_every_command(
    tmp_path: Path, content: bytes, said: str
) -> None:
    from click.testing import CliRunner

    from zoo.cli import cli

    root = _image_folder(tmp_path / "imgs")
    bad = root / "b" / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(zoo.DatasetError, match=re.escape(f"image {bad}: {said}; replace or remove the file")):
        zoo.as_dataset(str(root))
    db = str(tmp_path / "registry.db")
    with zoo.Registry(db) as reg:
        torch.manual_seed(0)
        reg.add(zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")), name="net", dataset="digits")
    for args in (
        ["datasets", "register", "mine", str(root)],
        ["nearest", "cnn-tiny", str(root)],
        ["get", "cnn-tiny", "--dataset", "digits", "--labelled", str(root), "--out", str(tmp_path / "w.st")],
    ):
        res = CliRunner().invoke(cli, ["--registry", db, *args])
        assert res.exit_code == 1, (args, res.output)
        assert res.output.startswith("Error: ") and f"image {bad}: {said}" in res.output, (args, res.output)
        assert "Traceback" not in res.output and "UnidentifiedImageError" not in res.output
