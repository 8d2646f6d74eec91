"""The plugin manager: lazy, idempotent loading of built-in and third-party plugins, and family lookup.

Built-in families are plugins like any other: declared in the ``zoo.plugins`` entry-point group of zoo's
own distribution and loaded through the same door and manager (zoo names them, :data:`BUILTIN_PLUGINS`, but
never imports them). Nothing loads at import time; the first lookup calls :func:`load_plugins`.

Environment:
- ``ZOO_DISABLE_PLUGIN_AUTOLOAD=1`` loads the built-in plugins only (the families and encoders), no other
  entry points (not the generator, the main job or third-party plugins).
- ``ZOO_PLUGINS=cnn,resnet,myplugin`` loads only the named plugins (built-in or entry-point names).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from zoo import hookspecs
from zoo.errors import Hint, UnknownFamilyError, UnknownPluginError, ZooError, show
from zoo.records import ArchSpec

if TYPE_CHECKING:  # pragma: no cover - typing only
    import click
    import torch

    from zoo.family import ArchitectureFamily

log = logging.getLogger(__name__)
T = TypeVar("T")

ENTRY_POINT_GROUP = "zoo.plugins"
ENV_DISABLE_AUTOLOAD = "ZOO_DISABLE_PLUGIN_AUTOLOAD"
ENV_ONLY = "ZOO_PLUGINS"
OWN_DISTRIBUTION = "zoo"  # the distribution whose entry points named in BUILTIN_PLUGINS are built-in
BUILTIN_PLUGINS: tuple[str, ...] = (  # entry-point names loaded even when autoload is disabled
    "cnn",  # small zoo CNNs (zoo_families.cnn)
    "resnet",  # CIFAR ResNets (6n+2) and ImageNet ResNets
    "vit",  # timm Vision Transformers
    "lora",  # LoRA adapters on a ViT base
    "encoders",  # dataset encoders (pixels, clip) and text encoders (minilm), zoo.encoders.builtin
)


@dataclass(frozen=True)
class PluginInfo:
    """A loaded (or failed) plugin, as `zoo plugins` shows it."""

    name: str
    source: str  # "builtin", "entry-point" or "runtime"
    module: str
    hooks: tuple[str, ...]
    error: str = ""


class _CoreLookups:
    """The default lookup hooks: ask every registered family. Registered ``trylast``."""

    @hookspecs.hookimpl(trylast=True)
    def zoo_resolve_architecture(self, name: str, overrides: Mapping[str, Any]) -> ArchSpec | None:
        for family in families().values():
            spec = family.parse(name, **dict(overrides))
            if spec is not None:
                return spec
        return None

    @hookspecs.hookimpl(trylast=True)
    def zoo_detect_architecture(self, state_dict: Mapping[str, torch.Tensor]) -> ArchSpec | None:
        for family in families().values():
            spec = _examine(family, family.detect, state_dict)
            if spec is not None:
                return spec
        return None


def _examine(
    family: ArchitectureFamily, method: Callable[[Any], T], state_dict: Mapping[str, torch.Tensor]
) -> T | None:
    """``method(state_dict)``, or None when it raises: a state dict from an untrusted file can hold shapes a
    family's detection never expected (a 0-d weight, a key like ``features.x.weight``); that family then
    does not recognise it, and the others still get their turn."""
    try:
        return method(state_dict)
    except Exception as exc:  # a plugin's bug or an odd input: not a match, and said in the log
        log.warning(
            "family %r could not examine a state dict of %d tensors (%s: %s); treating it as not recognised",
            family.name,
            len(state_dict),
            type(exc).__name__,
            str(exc)[:200],
        )
        return None


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_loaded = False
_generation = 0  # bumped whenever the set of plugins changes; invalidates the caches below
_infos: dict[str, PluginInfo] = {}
_reported: set[str] = set()  # third-party plugins whose failure to load is already in the log
_command_pm: pluggy.PluginManager | None = None  # the command-adding plugins, before all are loaded
_family_cache: tuple[int, dict[str, ArchitectureFamily]] | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with plugins loaded."""
    load_plugins()
    assert _pm is not None
    return _pm


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(_CoreLookups(), name="zoo.core")
    return pm


def _wanted() -> set[str] | None:
    raw = os.environ.get(ENV_ONLY, "").strip()
    return {p.strip() for p in raw.split(",") if p.strip()} if raw else None


def _builtin(ep: Any) -> bool:
    """An entry point of zoo's own distribution named in :data:`BUILTIN_PLUGINS`."""
    dist = getattr(ep, "dist", None)
    return ep.name in BUILTIN_PLUGINS and dist is not None and (dist.name or "").lower() == OWN_DISTRIBUTION


def _hooks_of(plugin: object) -> tuple[str, ...]:
    return tuple(sorted(n for n in dir(plugin) if n.startswith("zoo_") and callable(getattr(plugin, n))))


def _chosen() -> list[tuple[Any, bool]]:
    """The entry points to load, built-in ones first, each with whether it is built-in; raises naming the
    available plugins when ``ZOO_PLUGINS`` names one that is not installed."""
    wanted = _wanted()
    autoload = os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip() not in ("1", "true", "yes")
    available = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: not _builtin(ep))
    chosen: list[tuple[Any, bool]] = []
    seen: set[str] = set()
    for ep in available:  # the built-in ones first; every plugin comes through the entry-point door
        builtin = _builtin(ep)
        if ep.name in seen or (wanted is not None and ep.name not in wanted) or not (builtin or autoload):
            continue
        chosen.append((ep, builtin))
        seen.add(ep.name)
    if wanted is not None and (unknown := wanted - seen):
        raise UnknownPluginError("plugin", ", ".join(sorted(unknown)), sorted({ep.name for ep in available}))
    return chosen


def _load_entry_point(ep: Any, builtin: bool) -> tuple[object | None, str]:
    """The plugin an entry point names, or None and the error when a third-party one fails to import (said
    once per process in the log; a built-in one that fails raises)."""
    try:
        return ep.load(), ""
    except Exception as exc:  # a broken plugin must not take zoo down
        if builtin:
            raise
        if ep.name not in _reported:
            _reported.add(ep.name)
            log.error(
                "plugin %r (%s) failed to load: %s; uninstall it, or leave it out with %s=...",
                ep.name,
                ep.value,
                exc,
                ENV_ONLY,
            )
        return None, str(exc)


def load_plugins() -> None:
    """Load built-in plugins and the ``zoo.plugins`` entry-point group once (idempotent, thread-safe)."""
    global _pm, _loaded, _generation
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        pm = _new_manager()
        for ep, builtin in _chosen():
            source = "builtin" if builtin else "entry-point"
            plugin, error = _load_entry_point(ep, builtin)
            if plugin is None:
                _infos[ep.name] = PluginInfo(ep.name, source, ep.value, (), error=error)
                continue
            try:
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # e.g. a hook with a wrong signature: a broken plugin, said once
                if builtin:
                    raise
                log.error("plugin %r (%s) failed to register: %s", ep.name, ep.value, exc)
                _infos[ep.name] = PluginInfo(ep.name, source, ep.value, (), error=str(exc))
                continue
            _infos[ep.name] = PluginInfo(ep.name, source, ep.value, _hooks_of(plugin))
        _pm = pm
        _generation += 1
        _loaded = True


def register_commands(cli: click.Group) -> None:
    """Call every plugin's ``zoo_register_commands`` hook with ``cli`` (the ``zoo`` group).

    Once the plugins are loaded (the first family, encoder or generator lookup loads them all), through
    the plugin manager, run-time plugins included. Before that, without loading them all: zoo's own
    built-in plugins (:data:`BUILTIN_PLUGINS`: families and encoders, whose modules import torch) add no
    commands, so only the other selected entry points are imported, into a manager of their own. That is
    why ``zoo --help`` and ``zoo list`` start without torch; a plugin that adds commands keeps its plugin
    module light (heavy imports inside the command body, as :mod:`igpg.plugin` and
    :mod:`zoo_demo.plugin` do) to keep it so.
    """
    global _command_pm
    with _lock:
        if _loaded:
            assert _pm is not None
            _pm.hook.zoo_register_commands(cli=cli)
            return
        if _command_pm is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            for ep, builtin in _chosen():
                if builtin:
                    continue
                plugin, _ = _load_entry_point(ep, builtin)
                if plugin is not None:
                    try:
                        pm.register(plugin, name=ep.name)
                    except Exception as exc:  # said again, with its error, when the plugins load
                        log.debug("plugin %r not registered for its commands: %s", ep.name, exc)
            _command_pm = pm
        _command_pm.hook.zoo_register_commands(cli=cli)


def commands_generation() -> tuple[bool, int]:
    """Changes whenever :func:`register_commands` could add other commands (the plugins got loaded, or the
    set of plugins changed); loads nothing."""
    return _loaded, _generation


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module at run time (e.g. in a test or a notebook); returns its name."""
    global _generation
    pm = get_plugin_manager()
    with _lock:
        registered = pm.register(plugin, name=name)
        if registered is None:
            raise ZooError(f"plugin {name or plugin!r} is already registered; unregister it first")
        _infos[registered] = PluginInfo(
            registered, "runtime", getattr(plugin, "__name__", type(plugin).__name__), _hooks_of(plugin)
        )
        _generation += 1
        return registered


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered by name (built-in, entry-point or run-time)."""
    global _generation
    pm = get_plugin_manager()
    with _lock:
        if pm.get_plugin(name) is None:
            raise UnknownPluginError("plugin", name, list_plugins_names())
        pm.unregister(name=name)
        _infos.pop(name, None)
        _generation += 1


def list_plugins_names() -> list[str]:
    pm = get_plugin_manager()
    return sorted(n for n, _ in pm.list_name_plugin() if n != "zoo.core")


def list_plugins() -> list[PluginInfo]:
    """Loaded plugins (and third-party ones that failed to load, with their error)."""
    get_plugin_manager()
    return [_infos[n] for n in sorted(_infos)]


def reset_plugins() -> None:
    """Forget every loaded plugin; the next lookup loads them again (for tests and env changes)."""
    global _pm, _loaded, _generation, _family_cache, _command_pm
    with _lock:
        _pm, _loaded, _family_cache, _command_pm = None, False, None, None
        _infos.clear()
        _reported.clear()
        _generation += 1


def generation() -> int:
    """A number that changes whenever the set of plugins changes (for caches of what plugins register)."""
    get_plugin_manager()
    return _generation


def collect(hook: str) -> dict[str, Any]:
    """What every plugin registers through the registration hook ``hook``, by ``name`` (or ``id``); a key
    registered twice warns and the later registration wins."""
    pm = get_plugin_manager()
    found: dict[str, Any] = {}

    def register(obj: Any) -> None:
        key = obj.name if hasattr(obj, "name") else obj.id
        if key in found:
            warnings.warn(f"{hook}: {key!r} registered twice; the later registration wins", stacklevel=2)
        found[key] = obj

    getattr(pm.hook, hook)(register=register)
    return found


def families() -> dict[str, ArchitectureFamily]:
    """Every registered architecture family by name (cached until the plugin set changes)."""
    global _family_cache
    from zoo.family import ArchitectureFamily

    get_plugin_manager()
    with _lock:
        if _family_cache is None or _family_cache[0] != _generation:
            found = collect("zoo_register_families")
            for name, fam in found.items():
                if not isinstance(fam, ArchitectureFamily):
                    raise ZooError(
                        f"plugin registered {fam!r} as family {name!r}, but it is not an ArchitectureFamily"
                    )
            _family_cache = (_generation, dict(sorted(found.items())))
        return _family_cache[1]


def list_families(filter: str | None = None) -> list[str]:
    """Names of registered families, optionally filtered with a glob (``"res*"``), naturally sorted."""
    from zoo.family import natural_key

    names = list(families())
    if filter:
        names = fnmatch.filter(names, filter)
    return sorted(names, key=natural_key)


def list_architectures(filter: str | None = None) -> list[str]:
    """``family/variant`` for every named architecture of every family, optionally glob-filtered."""
    from zoo.family import natural_key

    out = [f"{fname}/{v}" for fname, fam in families().items() for v in fam.variants()]
    if filter:
        out = [a for a in out if fnmatch.fnmatch(a, filter) or fnmatch.fnmatch(a.split("/", 1)[1], filter)]
    return sorted(out, key=natural_key)


def get_family(name: str) -> ArchitectureFamily:
    """The family registered as ``name``; raises naming the installed ones."""
    fams = families()
    if name not in fams:
        raise UnknownPluginError("architecture family", name, fams)
    return fams[name]


def resolve_arch(arch: str | ArchSpec, **overrides: Any) -> ArchSpec:
    """A spec from a name (``"resnet20"``, ``"cnn/tiny"``), a spec, or a spec's JSON; raises if unknown.

    Raises:
        ZooError: unreadable spec JSON, or JSON whose config lacks keys of its family's architecture of that
            name (the message names them and the whole config); UnknownFamilyError: an unknown name or
            family.
    """
    if isinstance(arch, ArchSpec):
        if overrides:
            return resolve_arch(arch.name, **{"family": arch.family, **dict(arch.config), **overrides})
        get_family(arch.family)
        return arch
    text = arch.strip()
    if text.startswith("{"):
        try:
            parsed = ArchSpec.from_json(text)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            what = Hint("what ArchSpec.to_json() writes", "what `zoo show REF --json` prints under arch")
            raise ZooError(
                f"cannot read architecture spec JSON {show(text)} ({type(exc).__name__}: {exc}); pass a "
                f"name such as 'resnet20' or {what}"
            ).hinting(what) from None
        _check_config_keys(parsed, text)
        return resolve_arch(parsed, **overrides)
    family_name = overrides.pop("family", None)
    if "/" in text:
        family_name, text = text.split("/", 1)
    if family_name is not None:
        spec = get_family(family_name).parse(text, **overrides)
    else:
        spec = get_plugin_manager().hook.zoo_resolve_architecture(name=text, overrides=overrides)
    if spec is None:
        raise unknown_architecture(arch)
    return spec


def _check_config_keys(spec: ArchSpec, text: str) -> None:
    """Refuse a spec JSON whose config lacks settings its family's architecture of that name has (a family
    builds from its whole config: a partial one would fail deep inside it with a bare KeyError)."""
    try:
        reference = get_family(spec.family).parse(spec.name)
    except Exception:  # noqa: BLE001  (an unknown family or name is refused later, in its own words)
        return
    if reference is None:
        return
    missing = sorted(set(reference.config) - set(spec.config))
    if missing:
        whole = Hint("as ArchSpec.to_json() writes it", "as `zoo show REF --json` prints it under arch")
        raise ZooError(
            f"architecture spec JSON {show(text)} lacks the config key(s) {', '.join(missing)} of "
            f"{spec.family} architecture {spec.name!r}; give the whole config ({whole}: "
            f"{show(reference.to_json(), 400)}) or just the name {spec.name!r}"
        ).hinting(whole)


def unknown_architecture(name: str) -> UnknownFamilyError:
    """The refusal of an architecture name no family knows: the closest known names and where to list them."""
    import difflib

    known = {a.split("/", 1)[1]: a for a in list_architectures()}
    close = difflib.get_close_matches(name.strip(), list(known), n=3, cutoff=0.6)
    listing = Hint("zoo.list_architectures()", "`zoo plugins`")
    fix = (f"Did you mean {' or '.join(close)}? " if close else "") + (
        f"{listing} lists the known architectures; for another family, install its plugin (see "
        "docs/writing-a-plugin.md)"
    )
    err = UnknownFamilyError(f"architecture {name!r}", families(), fix)
    return err.hinting(listing)


def detect_arch(state_dict: Mapping[str, torch.Tensor]) -> ArchSpec:
    """The architecture of a state dict from its keys and shapes; raises naming the installed families."""
    from zoo.family import strip_wrapper_prefixes

    spec = get_plugin_manager().hook.zoo_detect_architecture(state_dict=state_dict)
    if spec is not None:
        return spec
    for family in families().values():  # nearly one of ours (e.g. one wrong shape): say what does not fit
        near = [
            c
            for c in _examine(family, family.candidates, strip_wrapper_prefixes(state_dict)) or []
            if c is not None
        ]
        if near:
            err = _examine(family, functools.partial(family.mismatch, near[0]), state_dict)
            if err is not None:
                raise err
    raise UnknownFamilyError(f"a state dict of {len(state_dict)} tensors", families())
