"""A third-party family installed for real through the ``zoo.plugins`` entry-point group, used end to end.

The plugin is the example of docs/writing-a-plugin.md, so the guide's code is tested as written.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import zoo
from tests.zoo_families.helpers import same_bits
from zoo import hookspecs
from zoo.plugins import ENV_DISABLE_AUTOLOAD, ENV_ONLY, reset_plugins

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"


def guide_example() -> str:
    """The plugin module printed in the guide (the python block after ``<!-- example: zoo_mlp.py -->``)."""
    text = GUIDE.read_text()
    m = re.search(r"<!-- example: zoo_mlp\.py -->\s*```python\n(.*?)\n```", text, re.S)
    assert m, "the guide must hold the zoo_mlp.py example"
    return m.group(1) + "\n"


@pytest.fixture
def installed_mlp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``zoo_mlp`` installed like a wheel would: the module plus a dist-info with its entry point."""
    monkeypatch.delenv(ENV_DISABLE_AUTOLOAD, raising=False)
    monkeypatch.delenv(ENV_ONLY, raising=False)
    site = tmp_path / "site-packages"
    dist = site / "zoo_mlp-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "zoo_mlp.py").write_text(guide_example())
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: zoo-mlp\nVersion: 0.1.0\nRequires-Dist: zoo\n"
    )
    (dist / "entry_points.txt").write_text("[zoo.plugins]\nmlp = zoo_mlp\n")
    (dist / "RECORD").write_text("")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    reset_plugins()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("zoo_mlp", None)
        importlib.invalidate_caches()
        reset_plugins()


def test_plugin_from_the_entry_point_group_works_end_to_end(installed_mlp: Path, tmp_path: Path) -> None:
    assert "mlp" in zoo.list_families()
    info = next(p for p in zoo.list_plugins() if p.name == "mlp")
    assert (info.source, info.module, info.error) == ("entry-point", "zoo_mlp", "")
    assert "zoo_register_families" in info.hooks
    assert zoo.list_architectures("mlp/*") == ["mlp/mlp-64", "mlp/mlp-128x64"]

    spec = zoo.resolve_arch("mlp-128x64", num_classes=10)
    family = zoo.get_family("mlp")
    assert type(family).__module__ == "zoo_mlp"
    torch.manual_seed(0)
    model = family.build(spec)
    assert family.layout(spec).num_params == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10

    registry = zoo.Registry(tmp_path / "registry.db")
    try:
        rec = registry.add(model, name="digits-mlp", dataset="digits", metrics={"accuracy": 0.5})
        assert rec.arch == spec and rec.family == "mlp" and "128->64->10" in rec.arch_text
        loaded = registry.load(rec.ref)
        assert type(loaded).__module__ == "zoo_mlp"
        assert all(same_bits(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
        x = torch.randn(5, 64)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
        assert [r.ref for r in registry.search(family="mlp")] == ["digits-mlp:v1"]
    finally:
        registry.close()

    tensors = family.flatten(spec, model.state_dict())
    clone = family.rebuild(
        spec, zoo.get_family("mlp").unchunk(spec, family.chunk(spec, tensors, 32, normalize=False))
    )
    assert all(same_bits(clone.state_dict()[k], v) for k, v in model.state_dict().items())

    with pytest.raises(zoo.UnknownFamilyError) as info:
        zoo.resolve_arch("transformer-xl")
    assert {"cnn", "lora", "mlp", "resnet", "vit"} <= set(info.value.installed)
    assert "mlp, resnet" in str(info.value)


def test_environment_variables_restrict_autoload(
    installed_mlp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, "1")
    reset_plugins()
    assert "mlp" not in zoo.list_families() and "resnet" in zoo.list_families()
    monkeypatch.delenv(ENV_DISABLE_AUTOLOAD)
    monkeypatch.setenv(ENV_ONLY, "cnn,mlp")
    reset_plugins()
    assert zoo.list_families() == ["cnn", "mlp"]
    with pytest.raises(zoo.UnknownFamilyError, match="installed families: cnn, mlp"):
        zoo.resolve_arch("resnet20")


def test_uninstalled_plugin_is_gone() -> None:
    reset_plugins()
    assert "mlp" not in zoo.list_families()
    with pytest.raises(zoo.UnknownPluginError) as info:
        zoo.get_family("mlp")
    assert "mlp" not in info.value.installed and {"cnn", "lora", "resnet", "vit"} <= set(info.value.installed)
    assert "installed: cnn, lora" in str(info.value)


def test_a_throwaway_plugin_registered_at_run_time() -> None:
    namespace: dict[str, object] = {}
    exec(compile(guide_example(), "zoo_mlp_runtime", "exec"), namespace)  # the guide's module, not installed

    class Plugin:
        @zoo.hookimpl
        def zoo_register_families(self, register) -> None:  # type: ignore[no-untyped-def]
            register(namespace["MLPFamily"]())

    name = zoo.register_plugin(Plugin(), name="mlp-runtime")
    try:
        assert zoo.resolve_arch("mlp-64").family == "mlp"
    finally:
        zoo.unregister_plugin(name)
    assert "mlp" not in zoo.list_families()


def test_every_hook_is_documented_in_the_guide() -> None:
    text = GUIDE.read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("zoo_") and callable(getattr(hookspecs, n))]
    assert hooks and all(f"`{h}(" in text for h in hooks), [h for h in hooks if f"`{h}(" not in text]


# ----------------------------------------------------------------------------------------------------
# a generator kind: the guide's zoo_meanweights, registered at run time, served through the contract
# ----------------------------------------------------------------------------------------------------
def guide_generator_example() -> str:
    """The generator-kind module printed in the guide (after ``<!-- example: zoo_meanweights.py -->``)."""
    m = re.search(r"<!-- example: zoo_meanweights\.py -->\s*```python\n(.*?)\n```", GUIDE.read_text(), re.S)
    assert m, "the guide must hold the zoo_meanweights.py example"
    return m.group(1) + "\n"


@pytest.fixture
def meanweights() -> Iterator[object]:
    """The guide's module, importable as ``zoo_meanweights`` and registered as a plugin; removed
    afterwards."""
    module = type(sys)("zoo_meanweights")
    sys.modules["zoo_meanweights"] = module
    exec(compile(guide_generator_example(), "zoo_meanweights.py", "exec"), module.__dict__)
    name = zoo.register_plugin(module, name="meanweights")
    try:
        yield module
    finally:
        zoo.unregister_plugin(name)
        sys.modules.pop("zoo_meanweights", None)


def test_a_generator_kind_from_a_plugin_serves_requests(meanweights, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from zoo.generators import kind_of

    assert "meanweights" in zoo.list_generator_kinds() and "igpg" in zoo.list_generator_kinds()
    kind = zoo.get_generator_kind("meanweights")
    spec = zoo.resolve_arch("cnn-tiny")
    family = zoo.get_family("cnn")
    g = torch.Generator().manual_seed(0)
    data = zoo.as_dataset((torch.rand(60, 1, 28, 28, generator=g), torch.arange(60) % 10))
    far = zoo.as_dataset((torch.rand(60, 1, 28, 28, generator=g).round(), torch.arange(60) % 10))
    registry = zoo.Registry(tmp_path / "registry.db")
    try:
        registry.register_dataset("noise", data, encoders=["pixels"])
        states = []
        for seed in range(2):
            torch.manual_seed(seed)
            net = family.build(spec)
            states.append(net.state_dict())
            registry.add(net, name=f"noise-s{seed}", arch=spec, dataset="noise")
        gen, rec = kind.train(registry, arch="cnn-tiny", promote=True, config={"noise": 0.0})
        assert rec.ref == "meanweights:v1" and rec.config["kind"] == "meanweights" and kind_of(rec) is kind
        assert kind.owns(gen) and not zoo.get_generator_kind("igpg").owns(gen)

        p = zoo.generate("cnn-tiny", "noise", registry=registry)  # provision knows only the contract
        assert p.source == "generated" and p.generator is not None and p.generator.ref == "meanweights:v1"
        assert p.ref == "meanweights:v1#0" and "generated with meanweights:v1" in p.reason
        mean = {k: (states[0][k] + states[1][k]) / 2 for k in states[0]}
        assert all(torch.allclose(v, mean[k]) for k, v in p.module.state_dict().items())
        q = zoo.retrieve_or_generate("cnn-tiny", far, registry=registry, min_similarity=0.9999)
        assert q.source == "generated" and q.generator.ref == "meanweights:v1"  # type: ignore[union-attr]
        r = zoo.retrieve_or_generate("cnn-tiny", "noise", registry=registry)
        assert r.source == "retrieved"

        again = kind.load_record(registry, rec)  # bytes -> object -> bytes
        assert kind.dump(again) == kind.dump(gen)
    finally:
        registry.close()


def test_a_version_whose_kind_is_not_installed_is_named_not_used(meanweights, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = zoo.resolve_arch("cnn-tiny")
    registry = zoo.Registry(tmp_path / "registry.db")
    try:
        registry.register_dataset(
            "d", zoo.as_dataset((torch.rand(20, 1, 28, 28), torch.arange(20) % 10)), encoders=["pixels"]
        )
        torch.manual_seed(0)
        registry.add(zoo.get_family("cnn").build(spec), name="d-s0", arch=spec, dataset="d")
        zoo.get_generator_kind("meanweights").train(registry, arch="cnn-tiny", promote=True)
        zoo.unregister_plugin("meanweights")
        try:
            with pytest.raises(
                zoo.NoWeightsError, match="meanweights:v1 \\(promoted\\) cannot be used.*meanweights"
            ):
                zoo.generate("cnn-tiny", "d", registry=registry)
        finally:
            zoo.register_plugin(meanweights, name="meanweights")
    finally:
        registry.close()


def test_reindexing_retrains_and_judges_a_plugin_kind_through_the_contract(
    meanweights, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    spec = zoo.resolve_arch("cnn-tiny")
    registry = zoo.Registry(tmp_path / "registry.db")
    try:
        registry.register_dataset(
            "d", zoo.as_dataset((torch.rand(20, 1, 28, 28), torch.arange(20) % 10)), encoders=["pixels"]
        )

        def add(seed: int) -> None:
            torch.manual_seed(seed)
            registry.add(zoo.get_family("cnn").build(spec), name=f"d-s{seed}", arch=spec, dataset="d")

        add(0)
        kind = zoo.get_generator_kind("meanweights")
        kind.train(registry, arch="cnn-tiny", promote=True)
        add(1)
        add(2)
        opts = {"retrain_min": 2, "embeddings": False, "verify": False}
        with pytest.raises(zoo.ZooError, match="'meanweights' has no default evaluator"):
            zoo.reindex(registry, **opts)  # this kind implements no score(): its candidate cannot be judged
        seen = []

        def evaluator(reg, gen, checkpoints, seed):  # type: ignore[no-untyped-def]
            seen.append((kind.owns(gen), len(checkpoints)))
            return float(len(next(iter(gen.means.values()))))  # the same for both versions: a tie promotes

        report = zoo.reindex(registry, evaluator=evaluator, **opts)
        d = report.generators[0]
        assert (d.current, d.candidate, d.outcome) == ("meanweights:v1", "meanweights:v2", "promoted")
        assert report.counts.get("generators_trained", 0) == 0  # the candidate left unjudged is judged now
        assert seen == [(True, 3), (True, 3)]
        v2 = registry.get_generator("meanweights:v2")
        assert v2.config["kind"] == "meanweights" and v2.config["trained_by"] == "reindex"
        assert len(v2.trained_on) == 3 and registry.get_generator("meanweights:v1").status == "retired"
    finally:
        registry.close()
