"""The generator end to end on a tiny real zoo: registry -> chunks -> tokenizer -> prior -> networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo
from igpg.data import load_zoo
from igpg.generator import Generator
from igpg.prior import PriorConfig
from igpg.tokenizer import TokenizerConfig
from igpg.train import TrainConfig, train_generator
from zoo.datasets import load_digits, rotate
from zoo.embeddings import embed_arch, get_embedding
from zoo.training import train


def _smallest(steps: int) -> TrainConfig:
    """The smallest generator that trains: what tests of storage and bookkeeping need."""
    return TrainConfig(
        tokenizer=TokenizerConfig(codebook_size=16, levels=1, hidden=32),
        prior=PriorConfig(block_size=32, n_layer=1, n_head=2, n_embd=32),
        tokenizer_steps=steps,
        prior_steps=steps,
        tokenizer_batch=64,
        prior_batch=2,
    )


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    reg = zoo.Registry(tmp_path_factory.mktemp("gen") / "registry.db")
    spec = zoo.resolve_arch("cnn-tiny")
    fam = zoo.get_family("cnn")
    digits = load_digits().map_images(
        lambda x: F.interpolate(x, size=28, mode="bilinear", align_corners=False)
    )
    recs = []
    for task, data in (("digits", digits), ("digits-rot90", rotate(digits, 90))):
        reg.register_dataset(task, data)
        for seed in range(2):
            torch.manual_seed(seed)
            model = train(fam.build(spec), data.images[:300], data.labels[:300], epochs=1, seed=seed)
            recs.append(reg.add(model, name=f"{task}-s{seed}", arch=spec, dataset=task))
    cfg = TrainConfig(
        tokenizer=TokenizerConfig(codebook_size=32, levels=2, hidden=64),
        prior=PriorConfig(block_size=64, n_layer=1, n_head=2, n_embd=32),
        tokenizer_steps=30,
        prior_steps=20,
        tokenizer_batch=256,
        prior_batch=4,
    )
    gen = train_generator(load_zoo(reg, recs, k=64, progress=False), cfg, progress=False)
    yield reg, spec, gen
    reg.close()


def test_generator_samples_working_networks_and_survives_a_round_trip(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    reg, spec, gen = tiny_zoo
    assert gen.info["tokenizer_live_codes"] > 1 and len(gen.info["checkpoints"]) == 4
    ds = torch.tensor(get_embedding(reg, "dataset", "digits", gen.dataset_encoder).vector)
    arch = torch.tensor(embed_arch(reg, spec).vector)
    nets = gen.sample(spec, ds, arch, n=2, temperature=1.0, top_k=8, seed=0)
    assert len(nets) == 2
    for net in nets:
        out = net(torch.zeros(3, 1, 28, 28))
        assert out.shape == (3, 10) and torch.isfinite(out).all()
        assert zoo.detect_arch(net.state_dict()) == spec
    again = Generator.from_bytes(gen.to_bytes())
    a = gen.sample(spec, ds, arch, n=1, temperature=0)[0].state_dict()
    b = again.sample(spec, ds, arch, n=1, temperature=0)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_examples_give_samples_a_class_head_for_the_classes_they_have(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from igpg.heads import ClassHead

    reg, spec, gen = tiny_zoo
    ds = torch.tensor(get_embedding(reg, "dataset", "digits", gen.dataset_encoder).vector)
    arch = torch.tensor(embed_arch(reg, spec).vector)
    subset = load_digits().resize(28).select_classes((7, 3, 1))  # 3 classes in an order no network saw
    plain = gen.sample(spec, ds, arch, n=2, seed=0, examples=subset)  # no class head: examples change nothing
    again = gen.sample(spec, ds, arch, n=2, seed=0)
    assert all(
        torch.equal(a.state_dict()[k], b.state_dict()[k])
        for a, b in zip(plain, again)
        for k in a.state_dict()
    )
    headed = dataclasses.replace(gen, class_head=ClassHead(choose=False))
    for net in headed.sample(spec, ds, arch, n=2, seed=0, examples=subset):
        assert torch.all(net.classifier[-1].weight[3:] == 0)
        assert int(net(subset.images[:50]).argmax(1).max()) < 3


def test_condition_vectors_of_another_size_are_refused_with_the_fix(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    reg, spec, gen = tiny_zoo
    arch = torch.tensor(embed_arch(reg, spec).vector)
    longer = torch.zeros(gen.prior.config.ds_dim + 7)  # what a newer encoder version would make
    with pytest.raises(zoo.GeneratorError, match="train the generator again") as err:
        gen.sample(spec, longer, arch, n=1, seed=0)
    assert "`zoo train`" in str(err.value.for_cli())


def test_generator_refuses_an_architecture_it_never_saw(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    reg, _, gen = tiny_zoo
    other = zoo.resolve_arch("cnn-small")
    with pytest.raises(zoo.GeneratorError, match="not trained on architecture"):
        gen.sample(other, torch.zeros(gen.prior.config.ds_dim), torch.zeros(gen.prior.config.arch_dim))


def test_checkpoints_without_a_dataset_cannot_train_a_generator(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    reg, spec, _ = tiny_zoo
    rec = reg.add(zoo.get_family("cnn").build(spec), name="no-dataset")
    with pytest.raises(zoo.GeneratorError, match="dataset="):
        load_zoo(reg, [rec], k=64, progress=False)


def test_the_zoo_streams_from_the_registry_one_checkpoint_at_a_time(tiny_zoo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from igpg.data import ZooStream, pooled_stats

    reg, spec, _ = tiny_zoo
    recs = [r for r in reg.search(arch=spec) if r.dataset]
    stream = ZooStream(reg, recs, k=64)
    fam = zoo.get_family("cnn")
    mean, std = pooled_stats([fam.flatten(spec, reg.load_state_dict(r)) for r in recs])
    s_mean, s_std = stream.stats[spec.key]
    assert torch.allclose(s_mean, mean, atol=1e-9) and torch.allclose(s_std, std, rtol=1e-6)
    in_memory = load_zoo(reg, recs, k=64, progress=False)
    streamed = list(stream)
    assert [e.checkpoint.id for e in streamed] == [e.checkpoint.id for e in in_memory.examples]
    assert all(torch.equal(a.chunks.data, b.chunks.data) for a, b in zip(streamed, in_memory.examples))
    shares = []
    for worker in range(2):  # as DataLoader worker `worker` of 2 sees it: its own share, together all of them
        info = type("WorkerInfo", (), {"id": worker, "num_workers": 2})()
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        shares.append([e.checkpoint.id for e in stream])
    assert shares[0] and shares[1] and not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(r.id for r in recs)


def test_generators_are_stored_as_versions_in_the_registry(tiny_zoo) -> None:  # type: ignore[no-untyped-def]
    import igpg

    reg, spec, _ = tiny_zoo
    cfg = _smallest(steps=5)
    gen, rec = igpg.train_on_registry(reg, arch="cnn-tiny", k=64, config=cfg, progress=False)
    assert rec.ref == "igpg:v1" and rec.families == ("cnn",) and rec.status == "candidate"
    trained = {r.id for r in reg.search(arch=spec) if r.dataset}
    assert set(rec.trained_on) == trained and rec.watermark == max(trained)
    assert reg.set_generator_status(rec.ref, "promoted").status == "promoted"
    assert reg.get_generator("igpg@promoted").id == rec.id
    assert [g.ref for g in reg.generators(family="cnn")] == ["igpg:v1"] and reg.generators(family="vit") == []
    loaded = igpg.load_generator(reg, "igpg:v1")
    assert loaded.to_bytes() == gen.to_bytes()
    readable = bool(reg.get_dataset("digits").meta.get("source"))  # the class head fits on data zoo can read
    assert (gen.class_head is not None) == readable and loaded.class_head == gen.class_head
    assert reg.verify().clean
    with pytest.raises(zoo.NotFoundError, match="train_on_registry") as missing:
        reg.get_generator("igpg:v9")
    assert "`zoo train`" in str(missing.value.for_cli())  # the command line names the command


@pytest.mark.parametrize("stage", ["tokenizer", "prior"])
def test_training_resumes_exactly_after_an_interruption(tiny_zoo, tmp_path, monkeypatch, stage) -> None:  # type: ignore[no-untyped-def]
    from igpg import train as tr

    reg, spec, _ = tiny_zoo
    data = load_zoo(reg, [r for r in reg.search(arch=spec) if r.dataset], k=64, progress=False)

    def cfg(directory):  # type: ignore[no-untyped-def]
        return TrainConfig(
            tokenizer=TokenizerConfig(codebook_size=16, levels=2, hidden=32),
            prior=PriorConfig(block_size=32, n_layer=1, n_head=2, n_embd=32),
            tokenizer_steps=10,
            prior_steps=10,
            tokenizer_batch=64,
            prior_batch=2,
            checkpoint_dir=str(directory),
            checkpoint_every=5,
        )

    cpu = torch.device("cpu")

    def run(c):  # type: ignore[no-untyped-def]
        tok, _ = tr.train_tokenizer(data, c, cpu, progress=False)
        if stage == "tokenizer":
            return tok
        return tr.train_prior(data, tr.encode_zoo(tok, data), c, cpu, progress=False)[0]

    straight = run(cfg(tmp_path / "a")).state_dict()
    original = tr._Resume.save
    target = "stage1" if stage == "tokenizer" else "stage2"

    def crash(self, step, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, step, *args, **kwargs)
        if step == 5 and target in self.path.name:
            raise KeyboardInterrupt  # the process dies right after a save

    monkeypatch.setattr(tr._Resume, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        run(cfg(tmp_path / "b"))
    monkeypatch.undo()
    steps: list[int] = []

    def record(self, step, *args, **kwargs):  # type: ignore[no-untyped-def]
        if target in self.path.name:
            steps.append(step)
        original(self, step, *args, **kwargs)

    monkeypatch.setattr(tr._Resume, "save", record)
    resumed = run(cfg(tmp_path / "b")).state_dict()
    assert steps == [6, 7, 8, 9, 10]  # it went on from the saved step instead of starting over
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_training_recomputes_dataset_vectors_of_an_older_encoder_version(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import igpg
    from zoo.encoders.offline import PixelStatsEncoder

    reg = zoo.Registry(tmp_path / "registry.db")
    spec = zoo.resolve_arch("cnn-tiny")
    reg.register_dataset("readable", load_digits().resize(28), encoders=["pixels"])  # zoo can read it again
    reg.register_dataset(
        "memory", load_digits().resize(28).map_images(lambda x: x * 0.5), encoders=["pixels"]
    )
    for name in ("readable", "memory"):
        torch.manual_seed(0)
        reg.add(zoo.get_family("cnn").build(spec), name=f"{name}-net", arch=spec, dataset=name)
    monkeypatch.setattr(PixelStatsEncoder, "version", "newer")  # every stored vector is now stale
    cfg = _smallest(steps=2)
    gen, rec = igpg.train_on_registry(reg, arch="cnn-tiny", k=64, config=cfg, progress=False)
    assert get_embedding(reg, "dataset", "readable", "pixels").encoder_version == "newer"  # recomputed
    trained = [r.name for r in reg.get_many(rec.trained_on)]
    assert trained == ["readable-net"]  # the stale one, which zoo cannot recompute, is left out
    reg.close()
