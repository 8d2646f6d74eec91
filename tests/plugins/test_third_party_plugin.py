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
from tests.plugins.helpers import same_bits
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
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-mlp\nVersion: 0.1.0\nRequires-Dist: zoo\n")
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
    clone = family.rebuild(spec, zoo.get_family("mlp").unchunk(spec, family.chunk(spec, tensors, 32,
                                                                                     normalize=False)))
    assert all(same_bits(clone.state_dict()[k], v) for k, v in model.state_dict().items())

    with pytest.raises(zoo.UnknownFamilyError) as info:
        zoo.resolve_arch("transformer-xl")
    assert {"cnn", "lora", "mlp", "resnet", "vit"} <= set(info.value.installed)
    assert "mlp, resnet" in str(info.value)


def test_environment_variables_restrict_autoload(installed_mlp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
