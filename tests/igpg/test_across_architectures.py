"""One generator across depths, widths and families: descriptor coordinates, pooled statistics, refusals.

A tiny registry of CIFAR-style ResNets (resnet8 and resnet14 at width 4, one input channel, 8x8 digits) and
cnn-tiny checkpoints; generators trained for a few steps on it. Sampled networks only need to be real
networks of the requested spec with finite outputs: quality is measured elsewhere.
"""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

import igpg
import zoo
from igpg.data import load_zoo, pooled_stats
from igpg.evaluation import sample_for
from igpg.generator import Generator
from igpg.plugin import IGPGKind
from igpg.structure import LOG_KINDS, to_model_space
from igpg.train import TrainConfig, _Windows
from zoo.datasets import load_digits

SIZE = 8  # the digits' side: the ResNets are fully convolutional


def tiny_config(**overrides: object) -> TrainConfig:
    return TrainConfig(
        tokenizer=igpg.TokenizerConfig(codebook_size=16, levels=2, hidden=32),
        prior=igpg.PriorConfig(block_size=48, n_layer=1, n_head=2, n_embd=32),
        tokenizer_steps=20,
        prior_steps=12,
        tokenizer_batch=256,
        prior_batch=4,
        **overrides,  # type: ignore[arg-type]
    )


def resnet(depth: int, width: int = 4, input_size: int = SIZE) -> zoo.ArchSpec:
    return zoo.resolve_arch(f"resnet{depth}", in_chans=1, width=width, input_size=input_size)


@pytest.fixture(scope="module")
def zoo_of_two_depths(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """resnet8 and resnet14 (width 4), two seeds each, plus two cnn-tiny; generators trained on the resnets
    (family="resnet"), on cnn-tiny alone, and on everything (family=None)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is many times faster on shared cores
    reg = zoo.Registry(tmp_path_factory.mktemp("across") / "registry.db")
    digits = load_digits().subset(range(200))
    reg.register_dataset("digits", digits, encoders=["pixels"])
    for spec in (resnet(8), resnet(14), zoo.resolve_arch("cnn-tiny")):
        family = zoo.get_family(spec.family)
        for seed in range(2):
            torch.manual_seed(seed)
            reg.add(family.build(spec), name=f"{spec.name}-s{seed}", arch=spec, dataset="digits")
    cfg = tiny_config()
    resnets, rec = igpg.train_on_registry(reg, family="resnet", k=32, config=cfg, progress=False)
    cnn, _ = igpg.train_on_registry(reg, arch="cnn-tiny", k=32, config=cfg, progress=False, name="cnn")
    both, both_rec = igpg.train_on_registry(reg, k=32, config=cfg, progress=False, name="both")
    try:
        yield SimpleNamespace(
            reg=reg, digits=digits, resnets=resnets, rec=rec, cnn=cnn, both=both, both_rec=both_rec
        )
    finally:
        reg.close()
        torch.set_num_threads(threads)


def _is_network_of(net: torch.nn.Module, spec: zoo.ArchSpec, images: torch.Tensor) -> None:
    layout = zoo.get_family(spec.family).layout(spec).generated
    state = net.state_dict()
    assert [tuple(state[s.name].shape) for s in layout] == [s.shape for s in layout]
    assert all((v > 0).all() for k, v in state.items() if k.endswith("running_var"))  # generated in log space
    out = net.eval()(images)
    assert out.shape == (len(images), 10) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("spec", "level"),
    [
        (resnet(20), "shape"),  # unseen depth between the trained ones: every tensor shape was seen
        (resnet(32), "shape"),  # unseen depth beyond them
        (resnet(8, width=6), "stage"),  # unseen width: statistics fitted in log fan-in per (role, stage)
        (resnet(20, width=6), "stage"),  # both at once
    ],
    ids=["depth20", "depth32", "width6", "depth20-width6"],
)
def test_unseen_depths_and_widths_are_real_networks_of_the_spec(zoo_of_two_depths, spec, level) -> None:  # type: ignore[no-untyped-def]
    z = zoo_of_two_depths
    gen = z.resnets
    assert gen.coords == "descriptor" and gen.knows(spec) and IGPGKind().knows(gen, spec)
    norm = gen.normalisation(spec)
    assert level in norm.levels and "arch" not in norm.levels and "kind" not in norm.levels
    assert (norm.std > 0).all() and torch.isfinite(norm.mean).all()
    nets = sample_for(z.reg, gen, spec, "digits", n=2, seed=0)
    for net in nets:
        _is_network_of(net, spec, z.digits.images[:5])
    again = sample_for(z.reg, gen, spec, "digits", n=2, seed=0)
    assert all(torch.equal(v, again[0].state_dict()[k]) for k, v in nets[0].state_dict().items())


def test_the_resnet_family_takes_even_widths(zoo_of_two_depths) -> None:  # type: ignore[no-untyped-def]
    """Option-A shortcuts pad half the added channels on each side: an odd width does not add up."""
    family = zoo.get_family("resnet")
    x = torch.zeros(1, 1, SIZE, SIZE)
    assert family.build(resnet(8, width=6))(x).shape == (1, 10)
    with pytest.raises(RuntimeError):
        family.build(resnet(8, width=5))(x)


def test_a_trained_architecture_keeps_its_exact_statistics(zoo_of_two_depths) -> None:  # type: ignore[no-untyped-def]
    z = zoo_of_two_depths
    gen = z.resnets
    family = zoo.get_family("resnet")
    for spec in (resnet(8), resnet(14)):
        norm = gen.normalisation(spec)
        assert set(norm.levels) == {"arch"}
        assert torch.equal(norm.mean, gen.stats[spec.key].mean) and torch.equal(
            norm.std, gen.stats[spec.key].std
        )
        recs = [r for r in z.reg.search(arch=spec) if r.dataset]
        flat = [family.flatten(spec, z.reg.load_state_dict(r)) for r in recs]
        mean, std = pooled_stats([to_model_space(spec, f, LOG_KINDS) for f in flat])  # log running_var
        assert torch.allclose(norm.mean, mean, atol=1e-9) and torch.allclose(norm.std, std, rtol=1e-6)
    # a spec with the same layout (only input_size differs) is served with the same exact statistics
    twin = resnet(8, input_size=32)
    assert twin.key != resnet(8).key and gen.knows(twin)
    assert torch.equal(gen.normalisation(twin).std, gen.stats[resnet(8).key].std)
    # an unseen depth at a seen width pools the same-role, same-stage, same-shape slots of both depths
    levels = Counter(gen.normalisation(resnet(20)).levels)
    assert levels == {"shape": len(family.layout(resnet(20)).generated)}


def test_a_generator_of_another_family_refuses_and_names_what_to_train(zoo_of_two_depths) -> None:  # type: ignore[no-untyped-def]
    z = zoo_of_two_depths
    ds, arch = torch.zeros(z.cnn.prior.config.ds_dim), torch.zeros(z.cnn.prior.config.arch_dim)
    assert not z.cnn.knows(resnet(8)) and not IGPGKind().knows(z.cnn, resnet(20))
    with pytest.raises(
        zoo.GeneratorError, match=r"no architecture of family 'resnet'.*zoo train --family resnet"
    ):
        z.cnn.sample(resnet(20), ds, arch)
    # trained on one cnn architecture, it serves that one alone: nothing showed it what depth or width change
    assert z.cnn.knows(zoo.resolve_arch("cnn-tiny")) and not z.cnn.knows(zoo.resolve_arch("cnn-small"))
    with pytest.raises(
        zoo.GeneratorError, match=r"not trained on architecture cnn-small.*two or more.*--family cnn"
    ):
        z.cnn.sample(zoo.resolve_arch("cnn-small"), ds, arch)


def test_one_generator_across_families(zoo_of_two_depths) -> None:  # type: ignore[no-untyped-def]
    z = zoo_of_two_depths
    gen, rec = z.both, z.both_rec
    assert rec.families == ("cnn", "resnet") and len(rec.trained_on) == 6
    assert rec.config["scope"] == {"family": None, "arch": None}
    assert set(gen.vocab.roles) >= {
        "cnn/classifier.weight",
        "resnet/classifier.weight",
        "resnet/stem.conv.weight",
    }
    assert gen.knows(resnet(20)) and gen.knows(zoo.resolve_arch("cnn-tiny"))
    assert not gen.knows(zoo.resolve_arch("cnn-small"))  # one cnn architecture only
    _is_network_of(sample_for(z.reg, gen, resnet(20), "digits", seed=1)[0], resnet(20), z.digits.images[:3])
    cnn = zoo.resolve_arch("cnn-tiny")
    (net,) = sample_for(z.reg, gen, cnn, "digits", seed=1)
    assert net(torch.zeros(2, 1, 28, 28)).isfinite().all()


def test_the_generator_survives_a_round_trip(zoo_of_two_depths) -> None:  # type: ignore[no-untyped-def]
    z = zoo_of_two_depths
    blob = z.resnets.to_bytes()
    again = Generator.from_bytes(blob)
    assert again.to_bytes() == blob and again.vocab == z.resnets.vocab
    assert igpg.load_generator(z.reg, z.rec.ref).to_bytes() == blob
    for spec in (resnet(8), resnet(20), resnet(14, width=6)):
        mine, theirs = z.resnets.normalisation(spec), again.normalisation(spec)
        assert mine.levels == theirs.levels and torch.equal(mine.mean, theirs.mean)
        assert torch.equal(mine.std, theirs.std)
        a = sample_for(z.reg, z.resnets, spec, "digits", seed=3, sampling={"temperature": 0})[0].state_dict()
        b = sample_for(z.reg, again, spec, "digits", seed=3, sampling={"temperature": 0})[0].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def _as_stored_before_descriptors(blob: bytes) -> bytes:
    """The same layer-index generator as a version stored before descriptor coordinates existed."""
    from safetensors.torch import load, save

    n = int.from_bytes(blob[:8], "little")
    meta = json.loads(json.loads(blob[8 : 8 + n])["__metadata__"]["igpg"])
    for name in ("format", "vocab", "slot_stats"):
        meta.pop(name, None)
    for part in ("tokenizer", "prior"):
        for key in ("coords", "num_roles", "num_kinds", "role_dropout"):
            meta[part].pop(key)
    return save(load(blob), metadata={"igpg": json.dumps(meta)})


def test_the_layer_index_mode_still_trains_and_older_blobs_load(zoo_of_two_depths) -> None:  # type: ignore[no-untyped-def]
    z = zoo_of_two_depths
    recs = [r for r in z.reg.search(family="resnet") if r.dataset]
    torch.manual_seed(0)
    gen = igpg.train_generator(
        load_zoo(z.reg, recs, k=32, progress=False), tiny_config(coords="layer"), progress=False
    )
    assert gen.coords == "layer" and hasattr(gen.prior, "layer_emb") and gen.vocab is None
    assert gen.knows(resnet(8)) and gen.knows(resnet(14)) and not gen.knows(resnet(20))
    with pytest.raises(zoo.GeneratorError, match="absolute layer index.*zoo train"):
        gen.normalisation(resnet(20))
    old = Generator.from_bytes(_as_stored_before_descriptors(gen.to_bytes()))
    assert old.coords == "layer" and old.knows(resnet(14)) and not old.knows(resnet(20))
    a = sample_for(z.reg, gen, resnet(14), "digits", sampling={"temperature": 0})[0].state_dict()
    b = sample_for(z.reg, old, resnet(14), "digits", sampling={"temperature": 0})[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stored_blob_this_version_cannot_read_names_zoo_train(zoo_of_two_depths) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load, save

    blob = zoo_of_two_depths.resnets.to_bytes()
    n = int.from_bytes(blob[:8], "little")
    meta = json.loads(json.loads(blob[8 : 8 + n])["__metadata__"]["igpg"])
    no_vocab = {k: v for k, v in meta.items() if k != "vocab"}
    with pytest.raises(zoo.GeneratorError, match="zoo train"):
        Generator.from_bytes(save(load(blob), metadata={"igpg": json.dumps(no_vocab)}))
    wrong = {**meta, "tokenizer": {**meta["tokenizer"], "num_roles": meta["tokenizer"]["num_roles"] + 3}}
    with pytest.raises(zoo.GeneratorError, match="does not fit this version.*zoo train"):
        Generator.from_bytes(save(load(blob), metadata={"igpg": json.dumps(wrong)}))
    newer = {**meta, "format": 99}
    with pytest.raises(zoo.GeneratorError, match="newer"):
        Generator.from_bytes(save(load(blob), metadata={"igpg": json.dumps(newer)}))


def test_prior_windows_of_mixed_lengths_are_bucketed_without_padding() -> None:
    lengths = [40, 50, 90, 1000, 1200, 3000]
    windows = _Windows(lengths, block=64)
    g = torch.Generator().manual_seed(0)
    drawn = Counter()
    for _ in range(400):
        ex, starts, t = windows.draw(8, g)
        assert len(ex) == len(starts) == 8
        assert len({min(lengths[i], 64).bit_length() for i in ex}) == 1  # one length bucket per batch
        assert t == min(64, *(lengths[i] for i in ex))  # cropped to the shortest: nothing is padded
        assert all(0 <= s and s + t <= lengths[i] for i, s in zip(ex, starts))
        drawn.update(ex)
    share = {i: drawn[i] / sum(drawn.values()) for i in range(len(lengths))}
    # every chunk of a sequence is equally often in a window, the first ones (where sampling starts) too
    covered = torch.zeros(1000)
    for _ in range(4000):
        (i,), (s,), t = _Windows([1000], block=64).draw(1, g)
        covered[s : s + t] += 1
    assert float(covered[:8].mean()) == pytest.approx(float(covered[400:600].mean()), rel=0.15)
    assert share[5] > share[3] > share[0]  # networks are drawn in proportion to their length
    assert share[5] == pytest.approx(3000 / sum(lengths), abs=0.05)


def test_each_window_is_conditioned_on_its_own_architecture(zoo_of_two_depths, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from igpg import train as tr
    from igpg.prior import WeightPrior

    z = zoo_of_two_depths
    recs = [r for r in z.reg.search(family="resnet") if r.dataset]
    data = load_zoo(z.reg, recs, k=32, progress=False)
    assert not torch.equal(data.examples[0].arch_emb, data.examples[-1].arch_emb)  # resnet8 vs resnet14
    seen: list[tuple[list[int], torch.Tensor]] = []
    draw, forward = tr._Windows.draw, WeightPrior.forward

    def record_draw(self, n, g):  # type: ignore[no-untyped-def]
        out = draw(self, n, g)
        seen.append((out[0], torch.empty(0)))
        return out

    def record_forward(self, prev, coords, ds, arch, targets):  # type: ignore[no-untyped-def]
        seen[-1] = (seen[-1][0], arch.detach().clone())
        assert coords.layer.shape == prev.shape[:2]  # per-window coordinates (B, T)
        return forward(self, prev, coords, ds, arch, targets)

    monkeypatch.setattr(tr._Windows, "draw", record_draw)
    monkeypatch.setattr(WeightPrior, "forward", record_forward)
    cfg = tiny_config()
    tok, _ = tr.train_tokenizer(data, cfg, torch.device("cpu"), progress=False)
    tr.train_prior(data, tr.encode_zoo(tok, data), cfg, torch.device("cpu"), progress=False)
    assert len(seen) == cfg.prior_steps
    for ex, arch in seen:
        assert torch.equal(arch, torch.stack([data.examples[i].arch_emb for i in ex]))


def test_running_variances_are_modelled_in_log_space(zoo_of_two_depths) -> None:  # type: ignore[no-untyped-def]
    z = zoo_of_two_depths
    gen = z.resnets
    assert gen.log_kinds == LOG_KINDS == ("running_var",)
    recs = [r for r in z.reg.search(arch=resnet(14)) if r.dataset]
    data = load_zoo(z.reg, recs, k=32, progress=False)
    e = data.examples[0]
    names = [s.name for s in zoo.get_family("resnet").layout(resnet(14)).generated]
    true = z.reg.load_state_dict(e.checkpoint)
    raw = zoo.unchunk(e.chunks)
    var = names.index("layer2.1.bn1.running_var")
    assert torch.allclose(raw[var].double().exp(), true["layer2.1.bn1.running_var"].double(), rtol=1e-5)
    net = gen.reconstruct(resnet(14), e.chunks)  # through the tokenizer and back to a network
    _is_network_of(net, resnet(14), z.digits.images[:3])
