"""Dataset and text encoders (zoo.encoders): the offline default, CLIP on a small random config, MiniLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.datasets import ImageDataset, from_arrays, load_digits, rotate
from zoo.encoders import (
    DatasetEncoder,
    dataset_encoders,
    get_dataset_encoder,
    get_text_encoder,
    text_encoders,
)
from zoo.encoders.clip import SMALL_TEST_CONFIG, ClipDatasetEncoder
from zoo.encoders.offline import PixelStatsEncoder
from zoo.encoders.probe import ProbeEncoder
from zoo.errors import ConfigError, UnknownPluginError
from zoo.hookspecs import hookimpl
from zoo.plugins import register_plugin, unregister_plugin


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_digits()


def test_pixels_vector_is_unit_deterministic_and_discriminative(digits: ImageDataset) -> None:
    enc = PixelStatsEncoder()
    v = enc.embed(digits)
    assert v.dtype == np.float32 and v.shape == (enc.dim,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(v, PixelStatsEncoder().embed(digits))
    a, b = digits.split(0.5, seed=0)
    same = float(enc.embed(a) @ enc.embed(b))
    rotated = float(enc.embed(a) @ enc.embed(rotate(b, 90)))
    subset = float(enc.embed(a) @ enc.embed(b.select_classes(range(5))))
    assert same > 0.98 and same > rotated + 0.1 and same > subset + 0.05


PERMUTED_TWINS = [  # (classes, the same classes in another label order, least margin asserted)
    ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], 0.1),
    ([0, 1, 2], [2, 1, 0], 0.1),
    (list(range(10)), [3, 1, 4, 0, 5, 9, 2, 6, 8, 7], 0.1),
    (list(range(10)), [1, 0, 2, 3, 4, 5, 6, 7, 8, 9], 0.03),  # one swapped pair of ten
]


@pytest.mark.parametrize("encoder_id", ["pixels", "probe"])
def test_offline_encoders_tell_label_orders_apart(digits: ImageDataset, encoder_id: str) -> None:
    """The same images under another label order score clearly lower than the same task's other split
    (pixels version 1 scored them about 0.994, as high as the other split)."""
    enc = get_dataset_encoder(encoder_id)
    a, b = digits.split(0.5, seed=0)
    for classes, twin, margin in PERMUTED_TWINS:
        mine = enc.embed(a.select_classes(classes))
        same = float(mine @ enc.embed(b.select_classes(classes)))
        permuted = float(mine @ enc.embed(b.select_classes(twin)))
        assert same > permuted + margin, (classes, twin, same, permuted)
    if encoder_id == "pixels":  # the default stays above zoo.provision.DEFAULT_MIN_SIMILARITY, twins below
        assert same > 0.99 > permuted


@pytest.mark.parametrize("encoder_id", ["pixels", "probe"])
def test_offline_encoders_are_deterministic_unit_vectors(digits: ImageDataset, encoder_id: str) -> None:
    enc = get_dataset_encoder(encoder_id)
    v = enc.embed(digits)
    assert v.dtype == np.float32 and v.shape == (enc.dim,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    fresh = type(enc)()  # a new object builds its filters / probe weights again from the fixed seed
    assert np.array_equal(v, fresh.embed(digits))
    one_class = digits.select_classes([3])  # no order to see: the ordered block is zero, the vector is not
    w = enc.embed(one_class)
    assert np.isfinite(w).all() and np.linalg.norm(w) == pytest.approx(1.0, abs=1e-5)


def test_offline_encoder_dims() -> None:
    assert PixelStatsEncoder().dim == 1275 and PixelStatsEncoder.version == "2"
    assert ProbeEncoder().dim == 2181 and ProbeEncoder.version == "1"


def test_probe_builds_no_network_until_it_embeds() -> None:
    enc = ProbeEncoder()
    assert enc._weights is None  # nothing is built (let alone trained) on import or construction
    enc.embed(from_arrays(torch.rand(6, 1, 8, 8), [0, 1, 2] * 2))
    assert enc._weights is not None


def test_pixels_reads_rgb_and_any_size() -> None:
    x = torch.rand(12, 3, 20, 13)
    for enc in (PixelStatsEncoder(), ProbeEncoder()):
        v = enc.embed(from_arrays(x, [0, 1, 2] * 4))
        assert v.shape == (enc.dim,) and np.isfinite(v).all()


def test_clip_small_random_config(digits: ImageDataset, tmp_path: Path) -> None:
    enc = ClipDatasetEncoder(SMALL_TEST_CONFIG, random_init=True, seed=3, id="clip-small")
    v = enc.embed(digits)
    assert v.shape == (32,) == (enc.dim,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    assert "random-s3" in enc.version and enc.version.endswith("+n5")
    # the same weights through the local-file path give the same vectors; the version names the file
    from open_clip.model import CLIP

    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = CLIP(**SMALL_TEST_CONFIG)
    path = tmp_path / "clip-small.pt"
    torch.save(model.state_dict(), path)
    loaded = ClipDatasetEncoder(SMALL_TEST_CONFIG, weights=path)
    assert loaded.unavailable_reason() is None
    assert "+sha-" in loaded.version and loaded.version != enc.version
    np.testing.assert_allclose(loaded.embed(digits), v, atol=1e-5)
    other = ClipDatasetEncoder(SMALL_TEST_CONFIG, random_init=True, seed=4)
    assert not np.allclose(other.embed(digits), v)


def test_clip_without_weights_explains_the_fix(digits: ImageDataset, tmp_path: Path) -> None:
    enc = ClipDatasetEncoder(SMALL_TEST_CONFIG)
    assert "ZOO_CLIP_WEIGHTS" in (enc.unavailable_reason() or "")
    with pytest.raises(ConfigError, match="never downloads"):
        enc.embed(digits)
    with pytest.raises(ConfigError, match="does not exist"):
        ClipDatasetEncoder(SMALL_TEST_CONFIG, weights=tmp_path / "missing.pt").embed(digits)
    bad = tmp_path / "bad.pt"
    torch.save({"visual.nope": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match="cannot load CLIP"):
        ClipDatasetEncoder(SMALL_TEST_CONFIG, weights=bad).embed(digits)
    with pytest.raises(ConfigError, match="not in"):
        ClipDatasetEncoder("ViT-B-32", pretrained="openai", cache_dir=tmp_path).embed(digits)
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        ClipDatasetEncoder("no-such-clip", random_init=True).embed(digits)


def test_minilm_text_encoder() -> None:
    enc = get_text_encoder("minilm")
    texts = [
        "Convolutional neural network cnn-tiny: 3 convolution layers, 10 classes.",
        "Convolutional neural network cnn-small: 3 convolution layers, 10 classes.",
        "A recipe for tomato soup with basil.",
    ]
    v = enc.embed(texts)
    assert v.shape == (3, 384) == (3, enc.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert enc.version.startswith("1+sha-")
    np.testing.assert_allclose(enc.embed(texts[:1])[0], v[0], atol=1e-5)


def test_builtin_encoders_are_plugins() -> None:
    assert {"pixels", "probe", "clip"} <= set(dataset_encoders())
    assert "minilm" in text_encoders()
    assert get_dataset_encoder().id == "pixels"
    assert get_dataset_encoder("pixels") is get_dataset_encoder("pixels")
    assert get_dataset_encoder("probe") is get_dataset_encoder("probe")
    assert (
        get_dataset_encoder("pixels").embed_by_default and not get_dataset_encoder("probe").embed_by_default
    )
    with pytest.raises(UnknownPluginError, match=r"unknown dataset encoder 'nope'; installed: .*pixels"):
        get_dataset_encoder("nope")
    with pytest.raises(UnknownPluginError, match="text encoder"):
        get_text_encoder("nope")


def test_third_party_encoder_plugin() -> None:
    class Mean(DatasetEncoder):
        id = "mean-pixel"
        version = "1"
        dim = 1

        def embed(self, dataset: ImageDataset) -> np.ndarray:
            return np.ones(1, dtype=np.float32)

    class Plugin:
        @hookimpl
        def zoo_register_dataset_encoders(self, register) -> None:  # type: ignore[no-untyped-def]
            register(Mean())

    name = register_plugin(Plugin(), name="test-mean-encoder")
    try:
        assert get_dataset_encoder("mean-pixel").id == "mean-pixel"
    finally:
        unregister_plugin(name)
    assert "mean-pixel" not in dataset_encoders()


def test_probe_is_used_only_when_named(digits: ImageDataset, tmp_path: Path) -> None:
    import zoo
    import zoo.embeddings as E

    with zoo.Registry(tmp_path / "registry.db") as registry:
        E.register_dataset(registry, "digits", digits)  # every encoder that runs by default: pixels
        assert [e.encoder_id for e in E.embeddings(registry, subject="dataset")] == ["pixels"]
        E.register_dataset(registry, "digits", digits, encoders=["probe"])  # named: embedded
        assert [e.encoder_id for e in E.embeddings(registry, subject="dataset")] == ["pixels", "probe"]
        hits = E.nearest(registry, "cnn-tiny", digits, encoder="probe")
        assert hits == []  # no checkpoints, but the probe vectors are searchable without an error
