"""zoo.adaptation: Net2Net widening and deepening keep a network's function, and unsupported pairs are
refused naming both architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.adaptation import Adapted, adapt
from zoo.errors import AdaptationError, ArchitectureMismatchError, ConfigError
from zoo.plugins import get_family, resolve_arch
from zoo.records import ArchSpec

TOL = 1e-5  # largest output difference allowed, relative to the largest output magnitude


def resnet(depth: int, width: int = 8, **kw: object) -> ArchSpec:
    return resolve_arch(f"resnet{depth}", in_chans=1, width=width, **kw)


def trained(spec: ArchSpec, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A module of ``spec`` with random weights, random BatchNorm affine parameters and running statistics
    from a few train-mode passes: something that only a faithful adaptation reproduces."""
    torch.manual_seed(seed)
    family = get_family(spec.family)
    model = family.build(spec).to(dtype)
    shape = family.input_shape(spec)
    assert shape is not None
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.3)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.normal_(0.0, 0.1)
        model.train()
        for _ in range(3):
            model(torch.randn(16, *shape, dtype=dtype) * 2 + 0.5)
    return model.eval()


def outputs(
    spec: ArchSpec, model: nn.Module, seed: int = 1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    shape = get_family(spec.family).input_shape(spec)
    assert shape is not None
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    with torch.no_grad():
        return model(x)


def adapted_module(result: Adapted) -> nn.Module:
    """The target built by its family and loaded strictly: keys and shapes must be exactly the target's."""
    module = (
        get_family(result.target.family).build(result.target).to(next(iter(result.state_dict.values())).dtype)
    )
    module.load_state_dict(result.state_dict, strict=True)
    return module.eval()


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


PAIRS = [  # (source, target, adapt keywords)
    pytest.param(resnet(8), resnet(14), {}, id="resnet8-resnet14"),
    pytest.param(resnet(8), resnet(20), {}, id="resnet8-resnet20"),
    pytest.param(resnet(14), resnet(32), {"placement": "spread"}, id="resnet14-resnet32-spread"),
    pytest.param(resnet(14), resnet(14, width=16), {}, id="resnet14-w8-w16"),
    pytest.param(resnet(14), resnet(14, width=12), {"seed": 3}, id="resnet14-w8-w12"),
    pytest.param(resnet(8), resnet(20, width=16), {}, id="resnet8w8-resnet20w16"),
    pytest.param(resnet(14), resnet(14), {}, id="resnet14-identity"),
    pytest.param(resnet(8), resnet(8, input_size=64), {}, id="resnet8-input-size"),
    pytest.param(
        resolve_arch("cnn-tiny"),
        resolve_arch("cnn", channels=[12, 8, 7], kernels=[5, 5, 2], hidden=33),
        {},
        id="cnn-tiny-wider",
    ),
    pytest.param(resolve_arch("cnn-tiny"), resolve_arch("cnn-tiny"), {}, id="cnn-tiny-identity"),
]


@pytest.mark.parametrize("source, target, kw", PAIRS)
def test_the_adapted_network_computes_the_source_function(
    source: ArchSpec, target: ArchSpec, kw: dict[str, object]
) -> None:
    model = trained(source)
    result = adapt(model.state_dict(), source, target, **kw)
    assert result.exact and result.source == source and result.target == target
    assert str(source) in result.provenance and str(target) in result.provenance
    new = adapted_module(result)
    diff = max_rel_diff(outputs(source, model), outputs(source, new))
    assert diff <= TOL, f"{source} -> {target}: relative output difference {diff:.2e}"
    # a train-mode forward (batch statistics) is preserved too: replicas have their source's statistics and
    # new blocks' bn2 outputs zero whatever its input
    model.train(), new.train()
    diff_train = max_rel_diff(outputs(source, model, seed=2), outputs(source, new, seed=2))
    assert diff_train <= TOL, f"{source} -> {target}: train-mode relative difference {diff_train:.2e}"


def test_exact_in_float64_and_the_dtype_is_kept() -> None:
    source, target = resnet(8), resnet(20, width=12)
    model = trained(source, dtype=torch.float64)
    result = adapt(model.state_dict(), source, target)
    assert all(t.dtype == torch.float64 for t in result.state_dict.values() if t.is_floating_point())
    new = adapted_module(result)
    x64 = torch.float64
    assert max_rel_diff(outputs(source, model, dtype=x64), outputs(source, new, dtype=x64)) < 1e-12


def test_widening_copies_source_channels_and_splits_outgoing_weights() -> None:
    source, target = resnet(8), resnet(8, width=16)
    sd = trained(source).state_dict()
    out = adapt(sd, source, target).state_dict
    assert torch.equal(out["conv1.weight"][:8], sd["conv1.weight"])  # the source's channels first
    for j in range(8, 16):  # each new stem channel copies one source channel, with its BatchNorm
        k = next(i for i in range(8) if torch.equal(out["conv1.weight"][j], sd["conv1.weight"][i]))
        for t in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(out[f"bn1.{t}"][j], sd[f"bn1.{t}"][k])
    # the classifier's input columns of a replicated channel sum to the source's column
    assert torch.allclose(out["linear.weight"].sum(1), sd["linear.weight"].sum(1), atol=1e-6)


def test_new_blocks_are_identities_with_learnable_convolutions() -> None:
    source, target = resnet(8), resnet(20)
    out = adapt(trained(source).state_dict(), source, target).state_dict
    for s in (1, 2, 3):
        for j in (1, 2):
            p = f"layer{s}.{j}"
            assert not out[f"{p}.bn2.weight"].any() and not out[f"{p}.bn2.bias"].any()
            assert out[f"{p}.conv1.weight"].std() > 0 and out[f"{p}.conv2.weight"].std() > 0


def test_spread_placement_interleaves_the_source_blocks() -> None:
    source, target = resnet(14), resnet(32)  # 2 -> 5 blocks per stage: source blocks at 0 and 2
    sd = trained(source).state_dict()
    out = adapt(sd, source, target, placement="spread").state_dict
    assert torch.equal(out["layer2.2.conv1.weight"], sd["layer2.1.conv1.weight"])
    assert not out["layer2.1.bn2.weight"].any() and not out["layer2.4.bn2.weight"].any()


def test_noise_changes_the_weights_but_keeps_the_outputs_close() -> None:
    source, target = resnet(8), resnet(14, width=16)
    model = trained(source)
    clean = adapt(model.state_dict(), source, target)
    noisy = adapt(model.state_dict(), source, target, noise=0.01)
    assert not noisy.exact and "noise" in noisy.provenance and "approximate" in noisy.provenance
    assert not torch.equal(
        clean.state_dict["layer1.0.conv1.weight"], noisy.state_dict["layer1.0.conv1.weight"]
    )
    assert torch.equal(
        clean.state_dict["bn1.running_var"], noisy.state_dict["bn1.running_var"]
    )  # BN untouched
    diff = max_rel_diff(outputs(source, model), outputs(source, adapted_module(noisy)))
    assert 0 < diff < 0.1, diff
    # on an unchanged architecture: the "checkpoint plus noise" baseline
    same = adapt(model.state_dict(), source, source, noise=0.01)
    assert not same.exact and not torch.equal(
        same.state_dict["conv1.weight"], model.state_dict()["conv1.weight"]
    )


def test_deterministic_by_seed() -> None:
    source, target = resnet(8), resnet(20, width=12)
    sd = trained(source).state_dict()
    a, b = adapt(sd, source, target, seed=5, noise=0.01), adapt(sd, source, target, seed=5, noise=0.01)
    c = adapt(sd, source, target, seed=6, noise=0.01)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert any(not torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)
    assert a.provenance == b.provenance


def test_the_result_never_shares_memory_with_the_input() -> None:
    source = resnet(8)
    sd = trained(source).state_dict()
    out = adapt(sd, source, source).state_dict
    out["conv1.weight"].zero_()
    assert sd["conv1.weight"].any()


def test_shallower_is_refused_unless_allowed_then_approximate() -> None:
    source, target = resnet(20), resnet(14)
    sd = trained(source).state_dict()
    with pytest.raises(AdaptationError) as exc:
        adapt(sd, source, target)
    assert str(source) in str(exc.value) and str(target) in str(exc.value)
    assert "allow_shallower=True" in str(exc.value)
    result = adapt(sd, source, target, allow_shallower=True)
    assert not result.exact and "dropping blocks [2]" in result.provenance
    adapted_module(result)  # loads strictly
    assert torch.equal(result.state_dict["layer3.1.conv2.weight"], sd["layer3.1.conv2.weight"])


REFUSED = [  # (source, target, words the message must hold)
    pytest.param(resnet(8), resolve_arch("cnn-tiny"), "different families", id="family"),
    pytest.param(resnet(8), resnet(14, num_classes=100), "num_classes", id="classes"),
    pytest.param(resnet(8), resolve_arch("resnet14", in_chans=3, width=8), "in_chans", id="in-chans"),
    pytest.param(
        resolve_arch("resnet18", in_chans=1, num_classes=10),
        resnet(20, num_classes=10),
        "ImageNet",
        id="imagenet",
    ),
    pytest.param(resnet(8, width=16), resnet(8, width=8), "narrower", id="narrower"),
    pytest.param(resnet(8, width=8), resnet(8, width=9), "odd", id="odd-width"),
    pytest.param(
        resolve_arch("vit_tiny_patch16_224"), resolve_arch("vit_small_patch16_224"), "supports", id="vit"
    ),
    pytest.param(
        resolve_arch("cnn-tiny"),
        resolve_arch("cnn", channels=[8, 6, 4, 4], kernels=[5, 5, 2, 1], hidden=20, input_size=64),
        "never deepened",
        id="cnn-deeper",
    ),
    pytest.param(resolve_arch("cnn-small"), resolve_arch("cnn-tiny"), "narrower", id="cnn-narrower"),
    pytest.param(
        resolve_arch("cnn-tiny"), resolve_arch("cnn-tiny", activation="tanh"), "activation", id="act"
    ),
]


@pytest.mark.parametrize("source, target, words", REFUSED)
def test_unsupported_pairs_are_refused_naming_both_specs(
    source: ArchSpec, target: ArchSpec, words: str
) -> None:
    with pytest.raises(AdaptationError) as exc:
        adapt({}, source, target)  # refused before the weights are read
    msg = str(exc.value)
    assert str(source) in msg and str(target) in msg and words in msg and "Fix:" in msg


def test_weights_that_do_not_fit_the_source_are_refused() -> None:
    sd = trained(resnet(8)).state_dict()
    with pytest.raises(ArchitectureMismatchError):
        adapt(sd, resnet(14), resnet(20))


@pytest.mark.parametrize("kw", [{"noise": -0.1}, {"placement": "middle"}])
def test_bad_settings_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        adapt({}, resnet(8), resnet(14), **kw)  # type: ignore[arg-type]
