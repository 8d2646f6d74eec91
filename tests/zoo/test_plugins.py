"""The plugin manager: lazy idempotent loading, environment switches, run-time plugins, documented hooks."""

from __future__ import annotations

import inspect

import pytest

import zoo
from zoo import hookspecs
from zoo.plugins import reset_plugins


@pytest.fixture
def fresh_plugins():
    reset_plugins()
    yield
    reset_plugins()


def test_builtin_families_load_through_the_plugin_manager() -> None:
    names = {p.name: p for p in zoo.list_plugins()}
    for builtin in ("cnn", "resnet"):
        assert builtin in names and names[builtin].source == "builtin"
        assert "zoo_register_families" in names[builtin].hooks
    assert {"cnn", "resnet"} <= set(zoo.list_families())


def test_loading_is_idempotent() -> None:
    zoo.load_plugins()
    first = zoo.families()
    zoo.load_plugins()
    assert zoo.families() is first


def test_zoo_families_env_restricts_what_loads(fresh_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_PLUGINS", "cnn")
    assert zoo.list_families() == ["cnn"]
    with pytest.raises(zoo.UnknownPluginError, match="resnet"):
        zoo.get_family("resnet")


def test_unknown_plugin_in_env_is_a_clear_error(fresh_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_PLUGINS", "cnn,no-such-plugin")
    with pytest.raises(zoo.UnknownPluginError, match="no-such-plugin"):
        zoo.load_plugins()


def test_disable_autoload_keeps_builtins(fresh_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert {p.source for p in zoo.list_plugins()} == {"builtin"}
    assert "cnn" in zoo.list_families()


def test_runtime_plugin_can_add_and_alias_architectures() -> None:
    class Aliases:
        @zoo.hookimpl
        def zoo_resolve_architecture(self, name, overrides):  # type: ignore[no-untyped-def]
            if name == "lenet-ish":
                return zoo.get_family("cnn").parse("cnn-small", **overrides)
            return None

    name = zoo.register_plugin(Aliases(), name="aliases")
    try:
        assert zoo.resolve_arch("lenet-ish").name == "cnn-small"
        assert zoo.resolve_arch("resnet20").name == "resnet20"  # the core lookup still answers the rest
    finally:
        zoo.unregister_plugin(name)
    with pytest.raises(zoo.UnknownFamilyError):
        zoo.resolve_arch("lenet-ish")


def test_unknown_family_names_installed_ones() -> None:
    with pytest.raises(zoo.UnknownPluginError) as err:
        zoo.get_family("transformerz")
    for fam in zoo.list_families():
        assert fam in str(err.value)


def test_every_hook_is_documented_and_prefixed() -> None:
    specs = [f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("zoo_")]
    assert len(specs) >= 6
    for fn in specs:
        assert fn.__doc__ and len(fn.__doc__.strip()) > 40, fn.__name__
        assert all(
            p.annotation is not inspect.Parameter.empty for p in inspect.signature(fn).parameters.values()
        )
