"""The tokenizer's quantizers and the prior's sampling, on small real chunkings of a zoo CNN."""

from __future__ import annotations

import pytest
import torch

import zoo
from igpg.prior import ChunkCoords, PriorConfig, WeightPrior
from igpg.quantizers import EMAQuantizer, GumbelQuantizer, make_quantizer
from igpg.tokenizer import TokenizerConfig, WeightTokenizer, chunk_coords
from zoo.chunking import chunk, unchunk


def cnn_chunks(seed: int = 0, k: int = 16):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    spec = zoo.resolve_arch("cnn-tiny")
    fam = zoo.get_family("cnn")
    return chunk(fam.flatten(spec, fam.build(spec).state_dict()), k)


@pytest.mark.parametrize("kind", ["ema", "gumbel"])
@pytest.mark.parametrize("levels", [1, 3])
def test_indices_map_back_to_the_quantized_vectors(kind: str, levels: int) -> None:
    torch.manual_seed(0)
    q = make_quantizer(kind, levels, size=32, dim=8)
    z = torch.randn(64, 8)
    q.train()
    q(z)  # initialises / updates the codebook
    q.eval()
    out = q(z)
    assert out.indices.shape == (64, levels)
    assert torch.allclose(q.lookup(out.indices), out.quantized, atol=1e-6)


def test_ema_replaces_dead_codes_in_training_only() -> None:
    torch.manual_seed(0)
    q = EMAQuantizer(size=16, dim=4, decay=0.5, dead_threshold=0.5)
    q.train()
    z = torch.randn(256, 4)
    q(z)
    q.codebook[0] = 1e6  # a code nobody will pick
    q.eval()
    q(z)
    assert q.codebook[0, 0] == 1e6  # eval never touches the codebook
    q.train()
    for _ in range(3):
        q(z)
    assert q.codebook[0].abs().max() < 100  # re-seeded from data


def test_gumbel_quantizer_is_differentiable() -> None:
    q = GumbelQuantizer(size=16, dim=4)
    q.train()
    out = q(torch.randn(32, 4, requires_grad=True))
    (out.quantized.sum() + out.loss).backward()
    assert q.codebook.grad is not None and q.proj.weight.grad is not None


def test_tokenizer_learns_to_reconstruct_a_network() -> None:
    torch.manual_seed(0)
    ch = cnn_chunks(k=32)
    tok = WeightTokenizer(TokenizerConfig(k=32, codebook_size=64, levels=2, hidden=64))
    layer, pos, cnt = chunk_coords(ch)
    opt = torch.optim.Adam(tok.parameters(), 2e-3)
    first = None
    for _ in range(100):
        out = tok(ch.data, ch.mask, layer, pos, cnt)
        first = first if first is not None else out["recon_loss"].detach().item()
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    tok.eval()
    idx = tok.encode(ch)
    assert idx.shape == (ch.num_chunks, 2) and idx.dtype == torch.long
    decoded = tok.decode(idx, ch)
    assert (decoded.data[~ch.mask] == 0).all()
    err = ((decoded.data - ch.data) ** 2)[ch.mask].mean()
    assert err < 0.25 * first
    rebuilt = unchunk(decoded)
    assert [t.shape for t in rebuilt] == [torch.Size(s) for s in ch.shapes]


def _prior(block: int) -> WeightPrior:
    torch.manual_seed(0)
    p = WeightPrior(
        PriorConfig(
            vocab_size=32, levels=3, block_size=block, n_layer=2, n_head=2, n_embd=32, ds_dim=6, arch_dim=5
        )
    )
    for prm in p.parameters():
        prm.data.normal_(0, 0.3)  # a random but decisive prior, so greedy paths differ between positions
    return p


def test_window_covering_the_sequence_equals_single_pass_greedy() -> None:
    ch = cnn_chunks(k=16)
    coords = ChunkCoords(*chunk_coords(ch))
    prior = _prior(block=len(coords))
    ds, arch = torch.randn(2, 6), torch.randn(2, 5)
    cached = prior.generate(coords, ds, arch, temperature=0)
    reference = prior.generate_reference(coords, ds, arch)
    assert cached.shape == (2, len(coords), 3)
    assert torch.equal(cached, reference)
    assert len(set(cached[0].reshape(-1).tolist())) > 1


@pytest.mark.parametrize("overlap", [0, 8, 15])
def test_window_by_window_generation_covers_long_networks(overlap: int) -> None:
    ch = cnn_chunks(k=16)
    coords = ChunkCoords(*chunk_coords(ch))
    prior = _prior(block=16)
    assert len(coords) > 4 * 16
    g = torch.Generator().manual_seed(0)
    out = prior.generate(
        coords,
        torch.randn(3, 6),
        torch.randn(3, 5),
        temperature=1.0,
        top_k=8,
        guidance=1.5,
        overlap=overlap,
        generator=g,
    )
    assert out.shape == (3, len(coords), 3) and out.min() >= 0 and out.max() < 32
    greedy = prior.generate(coords, torch.zeros(1, 6), torch.zeros(1, 5), temperature=0, overlap=overlap)
    again = prior.generate(coords, torch.zeros(1, 6), torch.zeros(1, 5), temperature=0, overlap=overlap)
    assert torch.equal(greedy, again)


def test_prior_training_loss_decreases_on_fixed_sequences() -> None:
    torch.manual_seed(0)
    ch = cnn_chunks(k=32)
    coords = ChunkCoords(*chunk_coords(ch))
    t = len(coords)
    prior = WeightPrior(
        PriorConfig(
            vocab_size=32,
            levels=3,
            block_size=t,
            n_layer=2,
            n_head=2,
            n_embd=64,
            ds_dim=4,
            arch_dim=4,
            cond_dropout=0.0,
        )
    )
    targets = torch.randint(0, 32, (2, t, 3))
    ds = torch.eye(4)[:2]
    prev = torch.cat([torch.full((2, 1, 3), prior.bos), targets[:, :-1]], 1)
    opt = torch.optim.Adam(prior.parameters(), 3e-3)
    losses = []
    for _ in range(150):
        _, loss = prior(prev, coords, ds, ds, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    out = prior.generate(coords, ds, ds, temperature=0)
    assert (out == targets).float().mean() > 0.9  # conditioning selects the memorised sequence


def test_nucleus_sampling_keeps_only_the_likeliest_mass() -> None:
    from igpg.prior import _sample

    logits = torch.log(torch.tensor([[0.6, 0.3, 0.06, 0.04]])).expand(2000, -1)
    g = torch.Generator().manual_seed(0)
    picked = _sample(logits, 1.0, None, g, top_p=0.85)  # nucleus {0, 1}: 0.6 alone is short of 0.85
    assert set(picked.tolist()) == {0, 1}
    assert 0.6 < float((picked == 0).float().mean()) < 0.74  # renormalised 0.6 / 0.9
    confident = torch.log(torch.tensor([[0.95, 0.03, 0.02]])).expand(500, -1)
    assert set(_sample(confident, 1.0, None, g, top_p=0.9).tolist()) == {0}  # a confident step is greedy
    assert len(set(_sample(confident, 1.0, None, g).tolist())) > 1  # plain sampling strays now and then


def test_a_skip_tokenizer_starts_as_a_residual_quantizer_of_the_values() -> None:
    torch.manual_seed(0)
    ch = cnn_chunks(k=16)
    tok = WeightTokenizer(
        TokenizerConfig(k=16, latent_dim=16, codebook_size=64, levels=3, hidden=32, skip=True)
    )
    layer, pos, cnt = chunk_coords(ch)
    tok.train()
    tok(ch.data, ch.mask, layer, pos, cnt)  # the codebooks start from the data
    tok.eval()
    idx = tok.encode(ch)
    q = tok.quantizer.lookup(idx)  # what the codes say, before any learnt correction
    assert torch.allclose(tok.decode(idx, ch).data, q * ch.mask)
    assert ((q - ch.data)[ch.mask] ** 2).mean() < (
        ch.data[ch.mask] ** 2
    ).mean()  # codes of the values themselves
    with pytest.raises(ValueError, match="latent_dim must equal k"):
        WeightTokenizer(TokenizerConfig(k=16, latent_dim=8, skip=True))
