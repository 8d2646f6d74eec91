"""retrieve_or_generate's third source: checkpoints of another architecture of the family adapted (Net2Net) to
the requested one, and generators asked whether they know an architecture they were not trained on.

Small CIFAR ResNets (width 4, one input channel, 28x28 inputs) with random or constant weights: fast,
deterministic, CPU only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import zoo
from zoo.cli import cli
from zoo.datasets import load_digits, rotate
from zoo.encoders import get_dataset_encoder
from zoo.provision import generation
from zoo.provision.request import fix_hint

FAMILY = zoo.get_family("resnet")


def resnet(depth: int, width: int = 4) -> zoo.ArchSpec:
    """A CIFAR ResNet taking 1x28x28 digits."""
    return zoo.resolve_arch(f"resnet{depth}", in_chans=1, width=width, input_size=28, num_classes=10)


@functools.lru_cache(maxsize=1)
def digits() -> zoo.ImageDataset:
    """200 real digits (every class), upsampled to 28x28."""
    return (
        load_digits()
        .subset(range(200))
        .map_images(lambda x: F.interpolate(x, size=28, mode="bilinear", align_corners=False))
    )


def random_net(spec: zoo.ArchSpec, seed: int) -> nn.Module:
    """Seeded random weights, BatchNorm statistics included (so that an adaptation has something to keep)."""
    torch.manual_seed(seed)
    net = FAMILY.build(spec)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def constant_net(spec: zoo.ArchSpec, label: int) -> nn.Module:
    """Predicts ``label`` for every image (all weights zero, the classifier's bias decides): its accuracy on
    labelled samples is the share of ``label`` among them, and so is that of any exact adaptation of it."""
    net = FAMILY.build(spec)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.linear.bias[label] = 1.0
    return net.eval()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry folder with the digits and their 90-degree rotation registered (pixels vectors), closed."""
    folder = tmp_path_factory.mktemp("template")
    with zoo.Registry(folder / "registry.db") as registry:
        registry.register_dataset("digits", digits(), encoders=["pixels"])
        registry.register_dataset("digits-rot90", rotate(digits(), 90), encoders=["pixels"])
    return folder


@pytest.fixture
def reg(template: Path, tmp_path: Path) -> Iterator[zoo.Registry]:
    """A fresh copy of the template registry, in ``tmp_path``."""
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    registry = zoo.Registry(tmp_path / "registry.db")
    try:
        yield registry
    finally:
        registry.close()


def add(reg: zoo.Registry, net: nn.Module, spec: zoo.ArchSpec, name: str, dataset: str, **kw: Any):  # type: ignore[no-untyped-def]
    return reg.add(net, name=name, arch=spec, dataset=dataset, **kw)


def same_outputs(a: nn.Module, b: nn.Module) -> bool:
    x = digits().images[:16]
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# without labels
# ---------------------------------------------------------------------------------------------------------
def test_an_unseen_depth_is_adapted_from_the_nearest_checkpoint(reg: zoo.Registry, tmp_path: Path) -> None:
    weak = add(reg, random_net(resnet(8), 0), resnet(8), "r8-a", "digits", metrics={"accuracy": 0.6})
    best = add(reg, random_net(resnet(8), 1), resnet(8), "r8-b", "digits", metrics={"accuracy": 0.8})
    far = add(reg, random_net(resnet(8), 2), resnet(8), "r8-rot", "digits-rot90", metrics={"accuracy": 0.9})
    target = resnet(14)
    p = zoo.retrieve_or_generate(target, "digits", registry=reg)

    # the most similar dataset first; equally similar ones by recorded accuracy: the adapted source is `best`
    assert p.source == "adapted" and p.arch == target and p.checkpoint is not None
    assert p.checkpoint.id == best.id and p.ref == f"{best.ref}->resnet14" and p.generator is None
    assert p.similarity == pytest.approx(1.0, abs=1e-4)
    assert [(c.source, c.ref) for c in p.candidates] == [
        ("adapted", f"{r.ref}->resnet14") for r in (best, weak, far)
    ]
    assert [c.chosen for c in p.candidates] == [True, False, False]
    assert f"adapted checkpoint {best.ref}" in p.reason and ">= 0.99" in p.reason
    assert "function-preserving" in p.reason and "no checkpoint of" in p.reason
    assert p.adaptation is not None and "Net2Net" in p.adaptation and "deepened 1 -> 2 blocks" in p.adaptation
    assert str(resnet(8)) in p.adaptation and "exact" in p.adaptation
    # function-preserving: the served resnet14 computes exactly what its resnet8 source computes
    assert zoo.detect_arch(p.module.state_dict()).config["depth"] == 14
    assert same_outputs(p.module, reg.load(best))
    data = p.to_dict()
    assert (
        data["source"] == "adapted" and data["checkpoint"] == best.ref and data["adaptation"] == p.adaptation
    )
    json.dumps(data)
    saved = p.save(tmp_path / "r14.safetensors")
    assert json.loads(_metadata(saved)["zoo.provenance"])["adaptation"] == p.adaptation
    # the same request gives the same weights (the adaptation is seeded by the policy's seed)
    again = zoo.retrieve_or_generate(target, "digits", registry=reg)
    assert all(torch.equal(v, again.module.state_dict()[k]) for k, v in p.module.state_dict().items())


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return dict(f.metadata())


def test_register_stores_adapted_weights_with_their_source_as_parent(reg: zoo.Registry) -> None:
    src = add(reg, random_net(resnet(8), 0), resnet(8), "r8", "digits", metrics={"accuracy": 0.7})
    p = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg, register=True)
    rec = p.registered
    assert rec is not None and p.source == "adapted"
    assert rec.ref == "resnet14-digits-adapted:v1" and f"registered as {rec.ref}" in p.reason
    assert rec.origin == "adapted" and rec.parent_id == src.id and rec.dataset == "digits"
    assert rec.arch == resnet(14) and "adapted" in rec.tags
    assert [r.id for r in reg.lineage(rec.id)] == [rec.id, src.id]
    assert rec.meta["adapted_from"] == src.ref and rec.meta["adaptation"] == p.adaptation
    assert rec.meta["exact"] is True and rec.meta["source_metrics"] == {"accuracy": 0.7}
    assert same_outputs(reg.load(rec), reg.load(src))
    # now resnet14 has a checkpoint of its own: it is retrieved, not adapted again
    q = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg)
    assert q.source == "retrieved" and q.checkpoint.id == rec.id
    assert [r.id for r in reg.search(origin="adapted")] == [rec.id]
    # a generator never trains on weights zoo made from other weights
    assert [r.id for r in zoo.training_checkpoints(reg, family="resnet")] == [src.id]


def test_without_adaptation_the_old_error_is_raised_unchanged(reg: zoo.Registry) -> None:
    add(reg, random_net(resnet(8), 0), resnet(8), "r8", "digits")
    target = resnet(14)
    label = zoo.get_family("resnet").label(target)
    with pytest.raises(zoo.NoWeightsError) as info:
        zoo.retrieve_or_generate(target, "digits", registry=reg, adapt=False)
    assert str(info.value) == (
        f"no weights for {label} on dataset 'digits': no checkpoint of {label} is registered, "
        f"and no generator is trained for family 'resnet'. {fix_hint(target)}"
    )
    # zoo.retrieve and zoo.generate never adapt
    with pytest.raises(zoo.NoWeightsError):
        zoo.retrieve(target, "digits", registry=reg, min_similarity=-1.0)
    with pytest.raises(zoo.NoWeightsError):
        zoo.generate(target, "digits", registry=reg)


def test_a_wider_request_is_adapted_a_narrower_one_is_not_and_says_why(reg: zoo.Registry) -> None:
    src = add(reg, random_net(resnet(8, 4), 0), resnet(8, 4), "r8-w4", "digits")
    wide = zoo.retrieve_or_generate(resnet(8, 8), "digits", registry=reg)
    assert wide.source == "adapted" and wide.checkpoint.id == src.id and wide.arch == resnet(8, 8)
    assert "widened width 4 -> 8" in (wide.adaptation or "")
    assert same_outputs(wide.module, reg.load(src))
    both = zoo.retrieve_or_generate(resnet(20, 8), "digits", registry=reg)  # deeper and wider at once
    assert both.source == "adapted" and same_outputs(both.module, reg.load(src))

    with pytest.raises(zoo.NoWeightsError) as info:
        zoo.retrieve_or_generate(resnet(8, 2), "digits", registry=reg)
    msg = str(info.value)
    assert "no checkpoint of family 'resnet' can be adapted to it" in msg
    assert "narrower (width 4 -> 2)" in msg and "not function-preserving" in msg


def test_a_shallower_request_is_adapted_only_when_the_policy_allows_and_then_approximately(
    reg: zoo.Registry,
) -> None:
    src = add(reg, random_net(resnet(14), 0), resnet(14), "r14", "digits")
    with pytest.raises(zoo.NoWeightsError, match=r"shallower \(2 -> 1 blocks per stage\)"):
        zoo.retrieve_or_generate(resnet(8), "digits", registry=reg)
    p = zoo.retrieve_or_generate(resnet(8), "digits", registry=reg, adapt_shallower=True)
    assert p.source == "adapted" and p.checkpoint.id == src.id and p.arch == resnet(8)
    assert "approximate" in p.reason and "dropping blocks [1]" in (p.adaptation or "")


def test_an_exact_source_ranks_before_an_approximate_one(reg: zoo.Registry) -> None:
    deeper = add(reg, random_net(resnet(20), 0), resnet(20), "r20", "digits", metrics={"accuracy": 0.99})
    shallower = add(reg, random_net(resnet(8), 0), resnet(8), "r8", "digits", metrics={"accuracy": 0.5})
    p = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg, adapt_shallower=True)
    assert p.checkpoint.id == shallower.id and "function-preserving" in p.reason
    assert [c.ref.split("->")[0] for c in p.candidates] == [shallower.ref, deeper.ref]


def test_a_dissimilar_source_is_a_fallback_after_the_generator(reg: zoo.Registry) -> None:
    src = add(reg, random_net(resnet(8), 0), resnet(8), "r8-rot", "digits-rot90")
    p = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg)
    assert p.source == "adapted" and p.checkpoint.id == src.id and p.similarity < 0.99
    assert "served the nearest compatible or adapted checkpoint anyway (fallback_to_nearest)" in p.reason
    assert f"the nearest adaptable checkpoint {src.ref}" in p.reason and "< 0.99" in p.reason
    with pytest.raises(zoo.NoWeightsError, match=f"the nearest adaptable checkpoint {src.ref}"):
        zoo.retrieve_or_generate(resnet(14), "digits", registry=reg, fallback_to_nearest=False)
    with fake_generators(reg, [("fake", "promoted", [8, 14])], trained_on=[src.id]):
        g = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg)
        assert g.source == "generated" and g.generator.ref == "fake:v1"  # type: ignore[union-attr]
        assert "the nearest adaptable checkpoint" in g.reason and "generated with fake:v1" in g.reason


# ---------------------------------------------------------------------------------------------------------
# with labels
# ---------------------------------------------------------------------------------------------------------
def _labels() -> tuple[torch.Tensor, torch.Tensor]:
    """100 digit images labelled 50% 3, 25% 0, 4% 9 and 3% each other class (labels need not be true: a
    constant network's score is then known exactly)."""
    labels = torch.tensor(
        [3] * 50 + [0] * 25 + [9] * 4 + [c for c in (1, 2, 4, 5, 6, 7, 8) for _ in range(3)]
    )
    return digits().images[:100], labels


def test_with_labels_adapted_candidates_are_scored_with_the_others(reg: zoo.Registry) -> None:
    exact = add(reg, constant_net(resnet(14), 9), resnet(14), "r14-rot", "digits-rot90")  # scores 0.04
    zero = add(reg, constant_net(resnet(8), 0), resnet(8), "r8-zero", "digits")  # adapted: 0.25
    three = add(reg, constant_net(resnet(8), 3), resnet(8), "r8-three", "digits-rot90")  # adapted: 0.5
    p = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg, labelled=_labels())
    assert p.source == "adapted" and p.checkpoint.id == three.id and p.score == pytest.approx(0.5)
    assert p.scores == {
        exact.ref: pytest.approx(0.04),
        f"{zero.ref}->resnet14": pytest.approx(0.25),
        f"{three.ref}->resnet14": pytest.approx(0.5),
    }
    assert [c.source for c in p.candidates] == ["retrieved", "adapted", "adapted"]
    assert p.reason.startswith("scored 1 retrieved, 2 adapted and 0 generated candidate(s) on 100 labelled")
    assert f"adapted {three.ref}->resnet14 scored best (0.5000" in p.reason
    assert f"the best retrieved checkpoint {exact.ref} scored 0.0400" in p.reason
    # adapt_candidates bounds how many are adapted and scored (the most similar first)
    one = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg, labelled=_labels(), adapt_candidates=1)
    assert [c.ref for c in one.candidates if c.source == "adapted"] == [f"{zero.ref}->resnet14"]
    assert one.score == pytest.approx(0.25) and one.source == "adapted"
    # a retrieved checkpoint wins a tie with an adapted one
    add(reg, constant_net(resnet(14), 3), resnet(14), "r14-three", "digits-rot90")
    tie = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg, labelled=_labels())
    assert tie.source == "retrieved" and tie.score == pytest.approx(0.5)
    assert f"the best adapted checkpoint {three.ref}->resnet14 scored 0.5000" in tie.reason


def test_adapted_and_generated_candidates_compete_on_labels(reg: zoo.Registry) -> None:
    src = add(reg, constant_net(resnet(8), 3), resnet(8), "r8-three", "digits")
    with fake_generators(reg, [("fake", "promoted", [8, 14])], trained_on=[src.id], label=0):
        p = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg, labelled=_labels(), samples=2)
    # the adapted source is similar enough, the generator is challenged anyway (challenge=True): 0.5 vs 0.25
    assert p.source == "adapted" and p.score == pytest.approx(0.5)
    assert [c.source for c in p.candidates] == ["adapted", "generated", "generated"]
    assert "the best generated sample fake:v1#0 scored 0.2500" in p.reason


# ---------------------------------------------------------------------------------------------------------
# generators asked whether they know an architecture they were not trained on
# ---------------------------------------------------------------------------------------------------------
class FakeKind(zoo.GeneratorKind):
    """A generator kind whose generators know the CIFAR ResNet depths listed in their bytes, whatever they
    were trained on (as a kind that generalises across depths would), and sample constant networks."""

    name = "fake"
    description = "test double: knows the depths it lists"
    loads: list[bytes] = []  # every load, in order

    def load(self, data: bytes, device: Any = "cpu") -> dict[str, Any]:
        FakeKind.loads.append(data)
        return json.loads(data)

    def dump(self, generator: dict[str, Any]) -> bytes:
        return json.dumps(generator, sort_keys=True).encode()

    def knows(self, generator: dict[str, Any], spec: zoo.ArchSpec) -> bool:
        return spec.family == "resnet" and spec.config.get("depth") in generator["depths"]

    def encoders(self, generator: dict[str, Any]) -> tuple[str, str]:
        return get_dataset_encoder(None).id, OnesText.id

    def sample(self, generator, spec, dataset_vector, arch_vector, n, *, seed=0, **sampling):  # type: ignore[no-untyped-def,override]
        return [constant_net(spec, generator["label"]) for _ in range(n)]

    def train(self, registry, **kw):  # type: ignore[no-untyped-def,override]
        raise NotImplementedError


class OnesText(zoo.TextEncoder):
    """The same unit vector for every text: the fake kind ignores it (the real text encoder loads a model)."""

    id = "fake-ones"
    version = "1"

    @property
    def dim(self) -> int:
        return 4

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.full((len(texts), 4), 0.5, dtype=np.float32)


class _Plugin:
    @zoo.hookimpl
    def zoo_register_generators(self, register: Any) -> None:
        register(FakeKind())

    @zoo.hookimpl
    def zoo_register_text_encoders(self, register: Any) -> None:
        register(OnesText())


def store_fake(
    reg: zoo.Registry, name: str, status: str, depths: list[int], trained_on: list[int], label: int, i: int
) -> zoo.GeneratorRecord:
    """Store a fake generator version (``i`` tells versions apart in :attr:`FakeKind.loads`)."""
    return zoo.get_generator_kind("fake").store(
        reg,
        {"depths": depths, "label": label, "i": i},
        name=name,
        families=["resnet"],
        config={"scope": {"family": "resnet", "arch": None}, "meta": {}},
        metrics={},
        trained_on=trained_on,
        promote=status == "promoted",
    )


@contextlib.contextmanager
def fake_generators(
    reg: zoo.Registry, versions: list[tuple[str, str, list[int]]], trained_on: list[int], label: int = 0
) -> Iterator[list[zoo.GeneratorRecord]]:
    """Register the fake kind and store one version per ``(name, status, depths)``, oldest first (their
    records); unregister it on exit. The loaded-generator cache and the load log start empty."""
    generation._generators.clear()
    FakeKind.loads.clear()
    plugin = zoo.register_plugin(_Plugin(), name="fake-generators")
    try:
        yield [
            store_fake(reg, name, status, depths, trained_on, label, i)
            for i, (name, status, depths) in enumerate(versions)
        ]
    finally:
        zoo.unregister_plugin(plugin)
        generation._generators.clear()


def test_a_family_generator_that_knows_an_unseen_depth_serves_it(reg: zoo.Registry) -> None:
    r8 = add(reg, random_net(resnet(8), 0), resnet(8), "r8", "digits-rot90")
    with fake_generators(reg, [("fake", "promoted", [8, 14, 20])], trained_on=[r8.id]) as (fake,):
        p = zoo.generate(resnet(20), "digits", registry=reg)  # trained on resnet8 only, knows resnet20
        assert p.source == "generated" and p.generator.id == fake.id  # type: ignore[union-attr]
        assert p.arch == resnet(20) and p.ref == "fake:v1#0"
        with pytest.raises(zoo.NoWeightsError) as info:
            zoo.generate(resnet(32), "digits", registry=reg)
    msg = str(info.value)
    assert "no generator knows" in msg and "fake:v1 (promoted) knows resnet8" in msg
    assert "train_on_registry(registry, family='resnet'" in msg
    assert "`zoo train --family resnet --promote`" in str(info.value.for_cli())


def test_generators_trained_on_the_spec_go_first_then_the_family_one_at_a_time(reg: zoo.Registry) -> None:
    r8 = add(reg, random_net(resnet(8), 0), resnet(8), "r8", "digits-rot90")
    r14 = add(reg, random_net(resnet(14), 0), resnet(14), "r14", "digits-rot90")
    versions = [
        ("old", "promoted", [8, 14, 20]),  # knows 20, promoted, older
        ("new", "promoted", [8]),  # promoted, newest: asked first among the family, does not know 20
        ("cand", "candidate", [8, 20]),  # knows 20 but a candidate: never loaded for 20
    ]
    with fake_generators(reg, versions, trained_on=[r8.id]) as (old, new, cand):
        p = zoo.generate(resnet(20), "digits", registry=reg)
        assert p.generator.id == old.id  # type: ignore[union-attr]
        assert [json.loads(b)["i"] for b in FakeKind.loads] == [1, 0]  # new, then old; cand never loaded
        # a generator trained on exactly the spec goes first, even a candidate before promoted ones
        own = store_fake(reg, "own", "candidate", [14], trained_on=[r14.id], label=0, i=9)
        FakeKind.loads.clear()
        q = zoo.generate(resnet(14), "digits", registry=reg)
        assert q.generator.id == own.id and [json.loads(b)["i"] for b in FakeKind.loads] == [9]  # type: ignore[union-attr]
        assert new.status == "promoted" and cand.status == "candidate"


def test_a_similar_enough_adapted_source_needs_no_generator_without_labels(reg: zoo.Registry) -> None:
    src = add(reg, random_net(resnet(8), 0), resnet(8), "r8", "digits")
    with fake_generators(reg, [("fake", "promoted", [8, 14])], trained_on=[src.id]):
        p = zoo.retrieve_or_generate(resnet(14), "digits", registry=reg)
        assert p.source == "adapted" and FakeKind.loads == []  # no generator was even loaded


# ---------------------------------------------------------------------------------------------------------
# the command line and the error
# ---------------------------------------------------------------------------------------------------------
def test_cli_get_prints_the_adapted_source_and_honours_no_adapt(
    reg: zoo.Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = add(reg, random_net(resnet(8), 0), resnet(8), "r8", "digits")
    arch = resnet(14).to_json()
    base = ["--registry", str(tmp_path / "registry.db"), "get", arch, "--dataset", "digits"]
    out = tmp_path / "w.safetensors"
    res = CliRunner().invoke(cli, [*base, "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "source: adapted" in res.output and f"ref: {src.ref}->resnet14" in res.output
    assert f"from: {src.ref} ({resnet(8)})" in res.output and "adaptation: Net2Net" in res.output
    assert zoo.detect_arch(_state(out)).config["depth"] == 14
    data = json.loads(CliRunner().invoke(cli, [*base, "--out", str(out), "--force", "--json"]).output)
    assert data["source"] == "adapted" and data["checkpoint"] == src.ref and "Net2Net" in data["adaptation"]
    res = CliRunner().invoke(cli, [*base, "--out", str(out), "--force", "--no-adapt"])
    assert res.exit_code == 1 and "no weights for" in res.output
    res = CliRunner().invoke(
        cli, [*base, "--out", str(out), "--force", "--register", "--name", "r14-from-r8"]
    )
    assert res.exit_code == 0 and "registered: r14-from-r8:v1" in res.output
    assert reg.get("r14-from-r8").parent_id == src.id and reg.get("r14-from-r8").origin == "adapted"
    monkeypatch.chdir(tmp_path)  # saved under the variant's name (not the JSON) in the working directory
    default = CliRunner().invoke(cli, base, catch_exceptions=False)
    assert default.exit_code == 0 and (tmp_path / "resnet14.safetensors").is_file()


def _state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_adaptation_error_carries_the_pair_reason_and_fix() -> None:
    with pytest.raises(zoo.AdaptationError) as info:
        zoo.adapt({}, resnet(8, 8), resnet(8, 4))
    err = info.value
    assert isinstance(err, zoo.ZooError) and err.source == resnet(8, 8) and err.target == resnet(8, 4)
    assert "narrower" in err.reason and "width <= 4" in err.fix
    assert str(err) == f"cannot adapt {resnet(8, 8)} to {resnet(8, 4)}: {err.reason}. Fix: {err.fix}"
    assert {"adapt", "Adapted", "AdaptationError"} <= set(zoo.__all__)


def test_policy_checks_adapt_candidates() -> None:
    with pytest.raises(zoo.ConfigError, match="adapt_candidates"):
        zoo.RetrievalPolicy(adapt_candidates=0)
