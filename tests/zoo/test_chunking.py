"""The default chunker (zoo.chunking): layout, masks, statistics and the exact inverse."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import zoo
from zoo.chunking import STD_FLOOR, Chunks, chunk, unchunk


def _layers(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(16, 3, 5, 5, generator=g) * 0.2,  # a conv weight: 1,200 values
        torch.ones(16),  # a fresh BatchNorm weight: constant
        torch.randn(7, generator=g) * 1e-3 + 4.0,  # large mean, tiny spread
        torch.randn(10, 20, generator=g),  # exactly 200 values
        torch.zeros(0, 4),  # empty (e.g. a head of 0 classes)
        torch.randn(33, generator=g).to(torch.float16),
    ]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.double(), b.double()
    return float(torch.linalg.vector_norm(a64 - b64) / torch.linalg.vector_norm(b64).clamp_min(1e-30))


@pytest.mark.parametrize("k", [1, 8, 64, 200, 4096])
def test_chunk_unchunk_recovers_tensors(k: int) -> None:
    layers = _layers()
    back = unchunk(chunk(layers, k))
    assert len(back) == len(layers)
    for a, b in zip(back, layers):
        assert a.shape == b.shape and a.dtype == b.dtype
        if b.numel():
            assert _rel_err(a, b) < 1e-6


@pytest.mark.parametrize("k", [1, 8, 64, 200, 4096])
def test_without_normalisation_the_round_trip_is_exact(k: int) -> None:
    layers = _layers(1) + [torch.randn(9).to(torch.bfloat16)]
    chunks = chunk(layers, k, normalize=False)
    assert not chunks.normalized and torch.equal(chunks.mean, torch.zeros(len(layers), dtype=torch.float64))
    for a, b in zip(unchunk(chunks), layers):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_layout_of_chunks_padding_and_masks() -> None:
    layers = _layers()
    k = 64
    c = chunk(layers, k)
    numels = [t.numel() for t in layers]
    per_layer = [-(-n // k) for n in numels]
    assert c.k == k and c.num_layers == len(layers) and c.numels == numels
    assert c.chunks_per_layer == per_layer and c.num_chunks == sum(per_layer)
    assert c.data.shape == (sum(per_layer), k) and c.data.dtype == torch.float32
    assert c.mask.shape == c.data.shape and c.mask.dtype == torch.bool
    assert c.layer.dtype == torch.long and c.position.dtype == torch.long
    assert c.layer.tolist() == [i for i, n in enumerate(per_layer) for _ in range(n)]
    assert c.position.tolist() == [p for n in per_layer for p in range(n)]
    assert c.shapes == tuple(tuple(t.shape) for t in layers)
    for i, n in enumerate(numels):  # each layer: full chunks, then one partly filled, zero padding
        rows = c.mask[c.layer == i]
        assert int(rows.sum()) == n
        if n:
            assert rows.reshape(-1)[:n].all() and not rows.reshape(-1)[n:].any()
    assert (c.data[~c.mask] == 0).all()


def test_each_layer_is_normalised_by_its_own_statistics() -> None:
    layers = _layers()
    c = chunk(layers, 32)
    for i, t in enumerate(layers):
        if t.numel() < 2:
            continue
        values = c.data[c.layer == i][c.mask[c.layer == i]]
        assert float(c.mean[i]) == pytest.approx(float(t.float().mean()), rel=1e-5, abs=1e-6)
        if float(t.float().std(correction=0)) > 0:
            assert float(values.mean()) == pytest.approx(0.0, abs=1e-3)  # float32: 4.0 +- 1e-3 loses digits
            assert float(values.std(correction=0)) == pytest.approx(1.0, rel=1e-3)
    ones = 1  # torch.ones(16)
    assert float(c.std[ones]) == pytest.approx(STD_FLOOR)  # floored: a constant layer becomes zeros, not NaN
    assert (c.data[c.layer == ones] == 0).all()
    assert torch.isfinite(c.data).all()


def test_generated_data_goes_back_through_with_data() -> None:
    layers = _layers()
    c = chunk(layers, 16)
    decoded = c.data + 0.5 * c.mask  # what a tokenizer might decode: shifted by half a std
    back = unchunk(c.with_data(decoded))
    assert _rel_err(back[0], layers[0] + 0.5 * float(c.std[0])) < 1e-6
    assert unchunk(dataclasses.replace(c, data=decoded))[3].shape == layers[3].shape
    with pytest.raises(ValueError, match="shape"):
        c.with_data(torch.zeros(3, 16))


def test_unchunk_returns_fresh_memory() -> None:
    layers = [torch.randn(100)]
    c = chunk(layers, 8, normalize=False)
    back = unchunk(c)
    back[0].fill_(7.0)
    assert not (c.data == 7.0).any()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        chunk([torch.zeros(3)], 0)
    c = chunk([torch.zeros(10)], 4)
    broken = dataclasses.replace(c, shapes=((40,),))
    with pytest.raises(ValueError, match="different chunkings"):
        unchunk(broken)
    empty = chunk([], 8)
    assert isinstance(empty, Chunks) and empty.num_chunks == 0 and unchunk(empty) == []


def test_family_chunk_defaults_to_the_shared_chunker_and_checks_the_layout() -> None:
    spec = zoo.resolve_arch("cnn-tiny")
    family = zoo.get_family("cnn")
    tensors = [torch.randn(s.shape) for s in family.layout(spec).generated]
    c = family.chunk(spec, tensors, k=32)
    assert c.num_layers == len(tensors) and int(c.mask.sum()) == family.layout(spec).num_generated == 2464
    assert all(
        torch.equal(a, b)
        for a, b in zip(family.unchunk(spec, family.chunk(spec, tensors, 32, normalize=False)), tensors)
    )
    with pytest.raises(zoo.ArchitectureMismatchError, match="generated tensors"):
        family.chunk(spec, tensors[:-1], k=32)
    with pytest.raises(zoo.ArchitectureMismatchError, match="layout"):
        family.unchunk(spec, chunk(tensors[:-1], 32))
