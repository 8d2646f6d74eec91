"""retrieve_or_generate and its companions on a real registry with a really trained (tiny) generator."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import load_file

import zoo
from zoo import provision
from zoo.cli import cli
from zoo.datasets import load_digits, rotate
from zoo.provision import gather, generation  # noqa: F401  (patched below)
from zoo.training import accuracy


def _digits() -> zoo.ImageDataset:
    """300 real digits (every class), upsampled to the 1x28x28 that cnn-tiny takes."""
    return (
        load_digits()
        .subset(range(300))
        .map_images(lambda x: F.interpolate(x, size=28, mode="bilinear", align_corners=False))
    )


def _noise(seed: int = 0) -> zoo.ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return zoo.as_dataset((torch.rand(100, 1, 28, 28, generator=g), torch.arange(100) % 10))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Two tasks with two cnn-tiny checkpoints each, and a promoted generator trained on them
    (a few steps)."""
    import igpg

    path = tmp_path_factory.mktemp("provision") / "registry.db"
    reg = zoo.Registry(path)
    spec = zoo.resolve_arch("cnn-tiny")
    family = zoo.get_family("cnn")
    digits = _digits()
    for task, data in (("digits", digits), ("digits-rot90", rotate(digits, 90))):
        reg.register_dataset(task, data, encoders=["pixels"])
        for seed in range(2):
            torch.manual_seed(seed)
            reg.add(family.build(spec), name=f"{task}-s{seed}", arch=spec, dataset=task)
    cfg = igpg.TrainConfig(
        tokenizer=igpg.TokenizerConfig(codebook_size=16, levels=1, hidden=32),
        prior=igpg.PriorConfig(block_size=32, n_layer=1, n_head=2, n_embd=32),
        tokenizer_steps=5,
        prior_steps=5,
        tokenizer_batch=64,
        prior_batch=2,
    )
    _, gen = igpg.train_on_registry(reg, arch="cnn-tiny", k=64, config=cfg, progress=False, promote=True)
    yield SimpleNamespace(reg=reg, path=path, spec=spec, digits=digits, gen=gen)
    reg.close()


def _works(module: torch.nn.Module, spec: zoo.ArchSpec) -> None:
    out = module(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert zoo.detect_arch(module.state_dict()) == spec


def test_an_identical_dataset_retrieves_its_checkpoint(served) -> None:  # type: ignore[no-untyped-def]
    p = zoo.retrieve_or_generate("cnn-tiny", "digits", registry=served.reg)
    assert p.source == "retrieved" and p.checkpoint is not None and p.checkpoint.dataset == "digits"
    assert p.similarity == pytest.approx(1.0, abs=1e-4) and p.min_similarity == zoo.DEFAULT_MIN_SIMILARITY
    assert p.generator is None and p.dataset == "digits" and p.ref == p.checkpoint.ref
    assert ">= 0.99" in p.reason and p.seconds > 0
    loaded = served.reg.load(p.checkpoint)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in p.module.state_dict().items())
    assert [c.source for c in p.candidates] == ["retrieved"] * 3 and sum(c.chosen for c in p.candidates) == 1
    json.dumps(p.to_dict())
    # the same task given as data (not a registered name) is recognised too
    q = zoo.retrieve("cnn-tiny", rotate(served.digits, 90), registry=served.reg)
    assert q.checkpoint.dataset == "digits-rot90" and q.similarity > 0.999 and q.dataset is None


def test_a_far_dataset_generates_with_the_promoted_generator(served) -> None:  # type: ignore[no-untyped-def]
    p = zoo.retrieve_or_generate("cnn-tiny", _noise(), registry=served.reg)
    assert p.source == "generated" and p.checkpoint is None
    assert p.generator is not None and p.generator.ref == served.gen.ref == "igpg:v1" and p.sample == 0
    assert (
        p.similarity is not None and p.similarity < 0.99
    )  # the nearest compatible checkpoint's, which was too far
    assert "< 0.99" in p.reason and "generated with igpg:v1" in p.reason and p.ref == "igpg:v1#0"
    assert "generate" in p.timings
    _works(p.module, served.spec)
    again = zoo.retrieve_or_generate(
        "cnn-tiny", _noise(), registry=served.reg
    )  # seed 0 by default: reproducible
    assert all(torch.equal(v, again.module.state_dict()[k]) for k, v in p.module.state_dict().items())
    # the threshold is the policy's: lowered, the same request retrieves
    low = zoo.retrieve_or_generate("cnn-tiny", _noise(), registry=served.reg, min_similarity=0.0)
    assert low.source == "retrieved" and low.min_similarity == 0.0
    with pytest.raises(zoo.NoWeightsError, match="min_similarity"):
        zoo.retrieve("cnn-tiny", _noise(), registry=served.reg)


def test_the_generator_gets_the_labelled_data_asked_about_for_its_class_head(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import igpg.plugin
    from igpg.heads import ClassHead

    seen: list[object] = []
    real = igpg.plugin.IGPGKind.sample

    def spy(self, generator, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("examples"))
        generator.class_head = ClassHead(choose=False)  # its zoo's data cannot be read again: none was fitted
        return real(self, generator, *args, **kwargs)

    monkeypatch.setattr(igpg.plugin.IGPGKind, "sample", spy)
    subset = served.digits.select_classes((4, 2))  # data, not a registered name
    p = zoo.generate("cnn-tiny", subset, registry=served.reg)
    assert "; its classifier was made from 58 examples of the dataset's 2 classes" in p.reason  # provenance
    assert int(p.module(subset.images).argmax(1).max()) < 2
    zoo.generate(
        "cnn-tiny", "digits-rot90", registry=served.reg
    )  # registered from memory: not readable again
    assert seen[0].fingerprint == subset.fingerprint  # type: ignore[attr-defined]
    assert seen[1] is None
    assert served.gen.config["class_head"] is True  # the stored training config asked for one


def test_a_registered_dataset_is_read_again_from_its_source_for_the_generator(tmp_path: Path) -> None:
    from zoo.generators import registered_data

    reg = zoo.Registry(tmp_path / "registry.db")
    data = load_digits().resize(28)  # keeps a source zoo can replay
    reg.register_dataset("d28", data, encoders=["pixels"])
    reg.register_dataset("mem", _digits(), encoders=["pixels"])  # made in memory: no source
    assert registered_data(reg, "d28").fingerprint == data.fingerprint
    assert registered_data(reg, "mem") is None
    reg.close()


def test_a_request_parses_its_architecture_once_at_the_door(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Resolved once (plus once to name it in messages) and passed down: retrieval, scoring, the generator
    and rebuilding never parse the name again."""
    family = zoo.get_family("cnn")
    calls: list[str] = []
    parse = family.parse

    def counted(name, **overrides):  # type: ignore[no-untyped-def]
        calls.append(name)
        return parse(name, **overrides)

    monkeypatch.setattr(family, "parse", counted)
    p = zoo.retrieve_or_generate("cnn-tiny", "digits", registry=served.reg, labelled=served.digits, samples=2)
    assert {c.source for c in p.candidates} == {"retrieved", "generated"}  # every stage ran
    assert calls == ["cnn-tiny", "cnn-tiny"]  # the door, and the label


def test_another_architecture_never_gets_a_cnn_tiny_checkpoint(served) -> None:  # type: ignore[no-untyped-def]
    for fn in (zoo.retrieve_or_generate, zoo.retrieve, zoo.generate):  # adapt=False: no Net2Net widening
        with pytest.raises(
            zoo.NoWeightsError, match=r"train_on_registry\(registry, arch='cnn-small'"
        ) as info:
            fn("cnn-small", "digits", registry=served.reg, min_similarity=-1.0, adapt=False)
        assert isinstance(info.value, zoo.GeneratorError) and isinstance(info.value, zoo.NotFoundError)
        assert "`zoo train --arch cnn-small --promote`" in str(info.value.for_cli())
    with pytest.raises(zoo.NoWeightsError, match="igpg:v1 \\(promoted\\) knows cnn-tiny"):
        zoo.retrieve_or_generate("cnn-small", "digits", registry=served.reg, adapt=False)
    # by default a cnn-tiny checkpoint is widened to cnn-small (the adapted source), never served as it is
    p = zoo.retrieve_or_generate("cnn-small", "digits", registry=served.reg)
    assert (
        p.source == "adapted" and p.checkpoint.arch == served.spec and p.arch == zoo.resolve_arch("cnn-small")
    )
    with pytest.raises(zoo.GeneratorError, match="not trained on cnn-small"):
        zoo.generate("cnn-small", "digits", registry=served.reg, generator="igpg:v1")
    with pytest.raises(zoo.UnknownFamilyError):
        zoo.retrieve_or_generate("no-such-net", "digits", registry=served.reg)


def test_best_of_n_scores_every_candidate_and_keeps_the_best(served) -> None:  # type: ignore[no-untyped-def]
    lab = served.digits.subset(range(100))
    p = zoo.retrieve_or_generate(
        "cnn-tiny", "digits", registry=served.reg, labelled=(lab.images, lab.labels), samples=3
    )
    # the registry holds 4 cnn-tiny checkpoints (<= score_pool): every one is scored, not just the 3 nearest
    assert [c.source for c in p.candidates] == ["retrieved"] * 4 + ["generated"] * 3
    assert all(c.score is not None for c in p.candidates) and len(p.scores) == 7
    assert p.score == max(p.scores.values()) == pytest.approx(accuracy(p.module, lab.images, lab.labels))
    chosen = [c for c in p.candidates if c.chosen]
    assert len(chosen) == 1 and chosen[0].ref == p.ref and chosen[0].score == p.score
    assert p.reason.startswith("scored 4 retrieved and 3 generated candidate(s) on 100 labelled samples")
    assert "score" in p.timings
    # without challenge, a similar-enough checkpoint is not challenged by generated samples
    q = zoo.retrieve_or_generate("cnn-tiny", "digits", registry=served.reg, labelled=lab, challenge=False)
    assert {c.source for c in q.candidates} == {"retrieved"} and q.source == "retrieved"


def test_a_generated_sample_that_outscores_the_checkpoints_wins_and_says_so(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sample = provision.generation.sample

    def tagged(*args, **kwargs):  # type: ignore[no-untyped-def]
        nets = sample(*args, **kwargs)
        for i, net in enumerate(nets):
            net.zoo_test_score = 0.5 + 0.1 * i  # type: ignore[assignment]
        return nets

    monkeypatch.setattr(provision.generation, "sample", tagged)
    monkeypatch.setattr(
        provision.gather, "score", lambda module, lab, device: getattr(module, "zoo_test_score", 0.2)
    )
    p = zoo.retrieve_or_generate("cnn-tiny", "digits", registry=served.reg, labelled=served.digits, samples=3)
    assert p.source == "generated" and p.sample == 2 and p.score == pytest.approx(0.7)
    assert "generated sample igpg:v1#2 scored 0.7000, beating the best retrieved checkpoint" in p.reason


def test_register_stores_generated_weights_with_their_generator(served) -> None:  # type: ignore[no-untyped-def]
    p = zoo.generate("cnn-tiny", "digits", registry=served.reg, register=True)
    rec = p.registered
    try:
        assert rec is not None and rec.origin == "generated" and rec.dataset == "digits"
        assert rec.name == "cnn-tiny-digits-generated" and rec.arch == served.spec
        assert rec.meta["generator"] == "igpg:v1" and rec.meta["generator_id"] == served.gen.id
        assert rec.meta["sample"] == 0 and rec.meta["sampling"]["seed"] == 0
        assert "generator.igpg.v1" in rec.tags and "registered as cnn-tiny-digits-generated:v1" in p.reason
        assert [r.id for r in served.reg.search(tags=["generator.igpg.v1"])] == [rec.id]
        stored = served.reg.load(rec).state_dict()
        assert all(torch.equal(v, stored[k]) for k, v in p.module.state_dict().items())
    finally:
        if rec is not None:
            served.reg.remove(rec.id)  # keep the shared registry as the other tests expect it


def test_without_a_generator_the_error_names_zoo_train(registry: zoo.Registry) -> None:
    digits = _digits()
    registry.register_dataset("digits", digits, encoders=["pixels"])
    with pytest.raises(zoo.NoWeightsError, match="no checkpoint of cnn-tiny.*arch='cnn-tiny', promote=True"):
        zoo.retrieve_or_generate("cnn-tiny", "digits", registry=registry)
    registry.register_dataset("digits-rot90", rotate(digits, 90), encoders=["pixels"])
    torch.manual_seed(0)
    far = registry.add(
        zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")), name="rot", dataset="digits-rot90"
    )
    small = registry.add(
        zoo.get_family("cnn").build(zoo.resolve_arch("cnn-small")), name="small", dataset="digits"
    )
    # not similar enough and nothing to generate with: the nearest compatible checkpoint, saying so
    p = zoo.retrieve_or_generate("cnn-tiny", "digits", registry=registry)
    assert p.source == "retrieved" and p.checkpoint.id == far.id and p.similarity < 0.99
    assert "fallback_to_nearest" in p.reason and "train_on_registry(registry, arch='cnn-tiny'" in p.reason
    assert "`zoo train --arch cnn-tiny --promote`" in p.reason_for_cli()
    with pytest.raises(zoo.NoWeightsError, match="no generator is trained for family 'cnn'"):
        zoo.retrieve_or_generate("cnn-tiny", "digits", registry=registry, fallback_to_nearest=False)
    with pytest.raises(zoo.NoWeightsError, match="train_on_registry"):
        zoo.generate("cnn-tiny", "digits", registry=registry)
    # a cnn-small request gets the cnn-small checkpoint, never the (identical-dataset) cnn-tiny one
    for arch, want in (("cnn-small", small.id), ("cnn-tiny", far.id)):
        q = zoo.retrieve(
            "cnn-tiny" if arch == "cnn-tiny" else arch, "digits", registry=registry, min_similarity=0.0
        )
        assert q.checkpoint.id == want and q.arch == zoo.resolve_arch(arch)


# ---------------------------------------------------------------------------------------------------
# which checkpoints are scored, and how ties are broken (issue 13)
# ---------------------------------------------------------------------------------------------------
def _constant(label: int, margin: float = 1.0) -> torch.nn.Module:
    """A cnn-tiny that predicts ``label`` for every image: all weights zero, the classifier's bias alone
    decides. Its accuracy on labelled samples is the share of ``label`` among their labels, by
    construction."""
    net = zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        bias = [p for name, p in net.named_parameters() if name.endswith("bias")][-1]
        bias[label] = margin
    return net


def _query_task() -> zoo.ImageDataset:
    """Digits 0-4 relabelled 0..4 (like the reported MNIST 0-4 request), 28x28."""
    return _digits().select_classes(range(5))


def test_labels_score_the_best_checkpoint_even_when_three_others_are_nearer(registry: zoo.Registry) -> None:
    """The reported case: the 3 nearest by dataset embedding are bad on the labels, the 4th is good."""
    query = _query_task()
    lab = query.subset(range(100))
    registry.register_dataset("near", query, encoders=["pixels"])  # the very same data: similarity 1.0
    registry.register_dataset("far", rotate(_digits(), 90), encoders=["pixels"])
    bad = [registry.add(_constant(9, 1.0 + i / 10), name=f"near-s{i}", dataset="near") for i in range(3)]
    good = registry.add(
        _constant(0), name="far-s0", dataset="far"
    )  # predicts 0: right on every 0 of the labels
    want = float((lab.labels == 0).float().mean())
    assert want > 0.1 and all(int(y) != 9 for y in lab.labels)  # the bad ones score 0.0 by construction
    nearest3 = registry.nearest("cnn-tiny", query, k=3)
    assert {n.checkpoint.id for n in nearest3} == {b.id for b in bad}  # the premise: the good one ranks 4th

    p = zoo.retrieve_or_generate("cnn-tiny", query, registry=registry, labelled=lab)
    assert p.source == "retrieved" and p.checkpoint.id == good.id and p.score == pytest.approx(want)
    assert p.scores == {
        **{b.ref: 0.0 for b in bad},
        good.ref: pytest.approx(want),
    }  # every scored one is listed
    assert [c.ref for c in p.candidates] == [*(b.ref for b in reversed(bad)), good.ref]  # most similar first
    assert "scored 4 retrieved and 0 generated" in p.reason and "below the threshold 0.99" in p.reason
    assert p.similarity is not None and p.similarity < 0.99
    # zoo.retrieve only serves similar-enough checkpoints: the labels then pick among those
    q = zoo.retrieve("cnn-tiny", query, registry=registry, labelled=lab)
    assert q.checkpoint.id in {b.id for b in bad} and [c.ref for c in q.candidates] == [
        b.ref for b in reversed(bad)
    ]


def test_a_compatible_checkpoint_without_a_dataset_is_scored_too(
    registry: zoo.Registry, tmp_path: Path
) -> None:
    """The same kind of miss: checkpoints registered without a dataset have no similarity, so retrieval never
    ranked them; with labels their score is all that counts."""
    query = _query_task()
    lab = query.subset(range(100))
    registry.register_dataset("near", query, encoders=["pixels"])
    bad = registry.add(_constant(9), name="near-s0", dataset="near")
    plain = registry.add(_constant(0), name="imported")  # e.g. `zoo add resnet20.th` without --dataset
    p = zoo.retrieve_or_generate("cnn-tiny", query, registry=registry, labelled=lab)
    assert p.checkpoint.id == plain.id and p.similarity is None and p.score > 0
    assert [(c.ref, c.similarity is None) for c in p.candidates] == [(bad.ref, False), (plain.ref, True)]
    assert "no dataset vector to compare" in p.reason
    # without labels nothing says it is any good: the nearest checkpoint with a dataset is served
    assert zoo.retrieve_or_generate("cnn-tiny", query, registry=registry).checkpoint.id == bad.id
    # only checkpoints without a dataset, no generator, labels given: the best-scoring one, saying why
    with zoo.Registry(tmp_path / "other.db") as other:
        other.register_dataset("near", query, encoders=["pixels"])
        only = other.add(_constant(0), name="imported")
        r = zoo.retrieve_or_generate("cnn-tiny", query, registry=other, labelled=lab)
        assert (
            r.checkpoint.id == only.id and "served the best-scoring compatible checkpoint anyway" in r.reason
        )
        with pytest.raises(
            zoo.NoWeightsError, match="checkpoints of cnn-tiny are registered, but none with a dataset"
        ):
            zoo.retrieve_or_generate("cnn-tiny", query, registry=other)  # nothing to rank without labels


def test_above_score_pool_the_pool_draws_on_several_rankings(registry: zoo.Registry) -> None:
    query = _query_task()
    lab = query.subset(range(100))
    registry.register_dataset("near", query, encoders=["pixels"])
    registry.register_dataset("far", rotate(_digits(), 90), encoders=["pixels"])
    good = registry.add(_constant(0), name="far-s0", dataset="far")  # the oldest, no metrics, far
    bad = [registry.add(_constant(9, 1.0 + i / 10), name=f"near-s{i}", dataset="near") for i in range(6)]
    # 7 compatible > score_pool 4: the nearest (ties: the newest), then in turn nearest / best of each dataset
    # / best by recorded metric (nobody records one: nothing) / newest
    p = zoo.retrieve_or_generate(
        "cnn-tiny", query, registry=registry, labelled=lab, score_pool=4, candidates=1
    )
    assert set(p.scores) == {bad[5].ref, bad[4].ref, good.ref, bad[3].ref}
    assert (
        p.checkpoint.id == good.id and [c.ref for c in p.candidates][-1] == good.ref
    )  # listed most similar first
    # a recorded metric brings a checkpoint into the pool however far its dataset
    registry.register_dataset("noise", _noise(), encoders=["pixels"])
    best = registry.add(_constant(0, 2.0), name="noise-best", dataset="noise", metrics={"accuracy": 0.99})
    sims = {n.dataset: n.similarity for n in registry.nearest("cnn-tiny", query, k=8)}
    assert sims["near"] > sims["far"] > sims["noise"]  # the premise: noise is the farthest dataset
    q = zoo.retrieve_or_generate(
        "cnn-tiny", query, registry=registry, labelled=lab, score_pool=4, candidates=1
    )
    assert set(q.scores) == {bad[5].ref, bad[4].ref, good.ref, best.ref}
    assert q.checkpoint.id == good.id  # good and best both score best: the tie goes to the more similar
    with pytest.raises(zoo.ConfigError, match="score_pool"):
        zoo.RetrievalPolicy(score_pool=0)


def test_equally_similar_checkpoints_rank_by_their_recorded_metrics_not_by_insertion(
    registry: zoo.Registry,
) -> None:
    digits = _digits()
    registry.register_dataset("digits", digits, encoders=["pixels"])
    registry.register_dataset("digits-copy", digits, encoders=["pixels"])  # the same data: an exact tie too
    accs = {"s0": 0.7, "s1": 0.95, "s2": 0.8, "s3": 0.9}  # the best neither first nor last registered
    recs = {}
    for i, (seed, acc) in enumerate(accs.items()):
        torch.manual_seed(i)
        recs[seed] = registry.add(
            zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")),
            name=f"digits-{seed}",
            dataset="digits-copy" if seed == "s3" else "digits",
            metrics={"accuracy": acc, "loss": 1 - acc},
        )
    by_acc = [recs[s].id for s in ("s1", "s3", "s2", "s0")]
    assert [n.checkpoint.id for n in registry.nearest("cnn-tiny", "digits", k=4)] == by_acc
    assert [n.checkpoint.id for n in registry.nearest("cnn-tiny", "digits", k=1)] == by_acc[
        :1
    ]  # tie beyond k
    assert [
        n.checkpoint.id for n in registry.nearest("cnn-tiny", digits, k=2, method="exact", arch_weight=0.0)
    ] == by_acc[:2]
    # a named metric; a loss-like one ranks lower first
    assert [n.checkpoint.id for n in registry.nearest("cnn-tiny", "digits", k=4, metric="loss")] == by_acc
    # the unlabelled path serves the best of the tied checkpoints and lists them in that order
    p = zoo.retrieve_or_generate("cnn-tiny", "digits", registry=registry)
    assert p.checkpoint.id == recs["s1"].id and [c.ref for c in p.candidates] == [
        recs[s].ref for s in ("s1", "s3", "s2")
    ]
    # a checkpoint without the metric goes after those that record it; among equals the newest goes first
    plain = registry.add(_constant(3), name="digits-plain", dataset="digits")
    same = registry.add(_constant(4), name="digits-same", dataset="digits", metrics={"accuracy": 0.95})
    ranked = [n.checkpoint.id for n in registry.nearest("cnn-tiny", "digits", k=6)]
    assert ranked == [same.id, recs["s1"].id, recs["s3"].id, recs["s2"].id, recs["s0"].id, plain.id]
    q = zoo.retrieve("cnn-tiny", "digits", registry=registry, metric="loss")
    assert q.checkpoint.id == recs["s1"].id  # `same` records no loss: it goes after those that do
    assert [n.checkpoint.id for n in registry.nearest("cnn-tiny", "digits", k=6, method="ann")] == ranked


def test_policy_and_inputs_are_checked(served) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(zoo.ConfigError, match="min_similarity"):
        zoo.RetrievalPolicy(min_similarity=1.5)
    with pytest.raises(zoo.ConfigError, match="choose from"):
        zoo.retrieve_or_generate("cnn-tiny", "digits", registry=served.reg, threshold=0.5)
    with pytest.raises(zoo.DatasetError, match="1x8x8 images but cnn-tiny takes 1x28x28"):
        zoo.retrieve_or_generate("cnn-tiny", "digits", registry=served.reg, labelled=load_digits())
    with pytest.raises(zoo.DatasetError, match="cannot read the data of dataset 'digits-rot90' again"):
        zoo.retrieve_or_generate("cnn-tiny", "digits", registry=served.reg, labelled="digits-rot90")


def test_fine_tune_module_trains_a_copy_with_a_curve(served) -> None:  # type: ignore[no-untyped-def]
    p = zoo.retrieve("cnn-tiny", "digits", registry=served.reg)
    before = {k: v.clone() for k, v in p.module.state_dict().items()}
    train, held = served.digits.split(0.8)
    tuned, curve = zoo.fine_tune_module(
        p.module, train, epochs=2, batch_size=64, eval_data=held, progress=False
    )
    per_epoch = train.num_samples // 64
    assert curve.steps == (0, per_epoch, 2 * per_epoch) and len(curve.accuracy) == 3
    assert curve.accuracy[0] == pytest.approx(accuracy(p.module, held.images, held.labels))
    assert curve.accuracy[-1] == pytest.approx(accuracy(tuned, held.images, held.labels))
    assert all(
        torch.equal(v, p.module.state_dict()[k]) for k, v in before.items()
    )  # the original is untouched
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in before.items())


# ---------------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------------
def _get(served, *args: str):  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(cli, ["--registry", str(served.path), "get", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_cli_get_prints_provenance_and_saves_the_weights(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "w.safetensors"
    data = json.loads(_get(served, "cnn-tiny", "--dataset", "digits", "--out", str(out), "--json").output)
    assert data["source"] == "retrieved" and data["saved"] == str(out) and data["similarity"] > 0.999
    rec = served.reg.get(data["checkpoint"])
    saved = load_file(out)
    assert saved.keys() == served.reg.load_state_dict(rec).keys()
    assert all(torch.equal(saved[k], v) for k, v in served.reg.load_state_dict(rec).items())
    assert zoo.detect_arch(saved) == served.spec
    human = _get(
        served, "cnn-tiny", "--dataset", "digits", "--out", str(out), "--force", "--generate", "--seed", "1"
    ).output
    assert (
        "source: generated" in human
        and "ref: igpg:v1#0" in human
        and "reason: generated with igpg:v1" in human
    )
    res = CliRunner().invoke(
        cli,
        [
            "--registry",
            str(served.path),
            "get",
            "cnn-tiny",
            "--dataset",
            "digits",
            "--generate",
            "--retrieve-only",
        ],
    )
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_cli_get_errors_are_one_line_with_exit_code_1(served, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from zoo.cli import main

    argv = ["zoo", "--registry", str(served.path), "get", "cnn-small", "--dataset", "digits", "--no-adapt"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.startswith("Error: no weights for cnn-small") and "zoo train" in err
    assert "Traceback" not in err


def test_serving_from_a_missing_registry_path_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "registry.db"
    for serve in (zoo.retrieve_or_generate, zoo.retrieve, zoo.generate):
        with pytest.raises(zoo.RegistryMissingError, match="typo"):
            serve("cnn-tiny", "digits", registry=missing)
    assert not (tmp_path / "typo").exists()


def _damage(reg: zoo.Registry, rec: zoo.CheckpointRecord, how: str) -> None:
    blob = next(reg.blobs.root.rglob(f"{rec.sha256}*"))
    if how == "missing":
        blob.unlink()
    else:
        blob.write_bytes(blob.read_bytes()[:-4] + b"\x00\x00\x00\x01")


@pytest.mark.parametrize("how", ["missing", "corrupt"])
def test_a_damaged_checkpoint_is_skipped_and_marked_not_fatal(registry: zoo.Registry, how: str) -> None:
    """One damaged blob must not break every request of its architecture: the labelled best and the unlabelled
    nearest are skipped (marked with the error in candidates) and the best of the rest is served."""
    query = _query_task()
    lab = query.subset(range(100))
    registry.register_dataset("near", query, encoders=["pixels"])
    good = registry.add(_constant(0), name="good", dataset="near", metrics={"accuracy": 0.9})
    fine = registry.add(_constant(1), name="fine", dataset="near", metrics={"accuracy": 0.8})
    want = float((lab.labels == 1).float().mean())
    _damage(registry, good, how)

    p = zoo.retrieve_or_generate("cnn-tiny", query, registry=registry, labelled=lab)
    assert p.checkpoint.id == fine.id and p.score == pytest.approx(want)
    marked = {c.ref: c for c in p.candidates}
    assert marked[good.ref].error and "blob" in marked[good.ref].error and marked[good.ref].score is None
    assert f"skipped {good.ref}" in p.reason
    # without labels the nearest (the tie goes to the higher recorded accuracy: the damaged one)
    # is skipped too
    q = zoo.retrieve("cnn-tiny", "near", registry=registry)
    assert q.checkpoint.id == fine.id and f"skipped {good.ref}" in q.reason
    registry.remove(fine.ref)
    with pytest.raises(zoo.NoWeightsError, match=r"damaged.*registry.verify\(\)"):
        zoo.retrieve("cnn-tiny", "near", registry=registry)


@pytest.mark.parametrize("loss_name", ["val loss", "top-1 error (%)", "loss@1", "valLoss", "val_loss"])
def test_a_loss_like_tie_metric_ranks_lower_first_whatever_its_spelling(
    registry: zoo.Registry, loss_name: str
) -> None:
    """Metric names may hold spaces and symbols (add accepts them): a loss among them is still a loss."""
    registry.register_dataset("digits", _digits(), encoders=["pixels"])
    bad = registry.add(_constant(1), name="bad", dataset="digits", metrics={loss_name: 0.9})
    good = registry.add(_constant(2), name="good", dataset="digits", metrics={loss_name: 0.1})
    assert [n.checkpoint.id for n in registry.nearest("cnn-tiny", "digits", k=2, metric=loss_name)] == [
        good.id,
        bad.id,
    ]
    assert zoo.retrieve("cnn-tiny", "digits", registry=registry, metric=loss_name).checkpoint.id == good.id


def test_acc_at_1_breaks_ties_without_being_named(registry: zoo.Registry) -> None:
    registry.register_dataset("digits", _digits(), encoders=["pixels"])
    best = registry.add(_constant(1), name="best", dataset="digits", metrics={"acc@1": 0.99})
    registry.add(_constant(2), name="newer", dataset="digits", metrics={"acc@1": 0.5})
    assert zoo.retrieve("cnn-tiny", "digits", registry=registry).checkpoint.id == best.id


# ----------------------------------------------------------------------------------------------------
# layering: zoo talks to generators through zoo.generators only; igpg is a plugin above it
# ----------------------------------------------------------------------------------------------------
_RETRIEVE = """
import json, sys, torch, zoo
reg = zoo.Registry(sys.argv[1])
data = zoo.as_dataset(
    (torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 10)
)
reg.register_dataset("d", data, encoders=["pixels"])
spec = zoo.resolve_arch("cnn-tiny")
reg.add(zoo.get_family("cnn").build(spec), name="d-s0", arch=spec, dataset="d")
p = zoo.retrieve_or_generate("cnn-tiny", data, registry=reg)
assert p.source == "retrieved", p.reason
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("igpg", "zoo_demo"))))
"""


@pytest.mark.parametrize("autoload", [True, False])
def test_a_retrieval_never_imports_the_generator(tmp_path: Path, autoload: bool) -> None:
    import os
    import subprocess

    env = {**os.environ, "ZOO_DISABLE_PLUGIN_AUTOLOAD": "" if autoload else "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _RETRIEVE, str(tmp_path / "registry.db")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    # with autoload, only the plugins' registration modules (they import zoo's public API only);
    # without, nothing
    assert loaded == (["igpg", "igpg.plugin", "zoo_demo", "zoo_demo.plugin"] if autoload else [])


def test_no_zoo_module_imports_igpg_or_the_demo_package() -> None:
    import ast

    root = Path(zoo.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            offenders += [
                f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in ("igpg", "zoo_demo")
            ]
    assert offenders == []
