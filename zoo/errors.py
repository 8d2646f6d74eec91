"""The project's own errors.

Every error that a user can cause derives from :class:`ZooError`, carries the offending thing as
attributes, and says in its message what went wrong and how to fix it. Library code raises them; only the
CLI turns them into exit codes.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover - typing only
    from zoo.records import ArchSpec

E = TypeVar("E", bound="ZooError")
SHOW_LIMIT = 80  # characters of a user-supplied value quoted in a message


def show(value: object, limit: int = SHOW_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters: control characters escaped, a hostile value never floods a
    message or a terminal."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _plain(name: str) -> str:
    """A tensor name as it is when it is printable and short, quoted and cut (:func:`show`) otherwise."""
    return name if name.isprintable() and 0 < len(name) <= SHOW_LIMIT else show(name)


@dataclass(frozen=True)
class Hint:
    """A fix said in both interfaces: as a Python call (what ``str()`` gives, so a message built with an
    f-string says it in Python) and as a command to paste on the command line. An error that names one
    carries it in :attr:`ZooError.hints`, and the CLI says the command instead (:meth:`ZooError.for_cli`)."""

    python: str  # e.g. "registry.register_dataset('cifar10', data)"
    cli: str  # e.g. "`zoo datasets register cifar10 SOURCE`"

    def __str__(self) -> str:
        return self.python

    def in_use(self) -> str:
        """The fix in the words of the interface in use: :attr:`cli` within :func:`cli_wording` (a command
        run from the CLI), :attr:`python` otherwise. For text that is not an error's message (a warning, a
        note)."""
        return self.cli if _CLI_WORDING.get() else self.python


class ZooError(Exception):
    """Base class of every error zoo raises on purpose.

    A message says its fix in Python's words (``pass weights='state_dict_ema'``); :attr:`keywords` names the
    keyword arguments it spells that way, so that another interface can say the same fix in its own words
    (:meth:`spelled`: ``--weights state_dict_ema`` on the command line, a sidecar key in the nightly import).
    A fix that is a whole call rather than one keyword is a :class:`Hint` in :attr:`hints`: the command line
    says its command instead (:meth:`for_cli`).
    """

    keywords: tuple[str, ...] = ()  # keyword arguments the message names as a fix, written kw='value' or kw=
    hints: tuple[Hint, ...] = ()  # calls the message names as fixes, each with its command-line spelling

    def hinting(self: E, *hints: Hint) -> E:
        """Record ``hints`` (named in the message as their Python text). Returns self, so that
        ``raise ZooError(f"... {hint}").hinting(hint)`` reads well."""
        self.hints = (*self.hints, *hints)
        return self

    def for_cli(self: E) -> E:
        """Say every :class:`Hint` of the message as its command (``zoo ...``) rather than as a Python call.
        Idempotent; returns self."""
        if self.hints and self.args and isinstance(self.args[0], str):
            text = self.args[0]
            for hint in sorted(self.hints, key=lambda h: -len(h.python)):  # longer first: no partial swaps
                text = text.replace(hint.python, hint.cli)
            self.args = (text, *self.args[1:])
        return self

    def spelled(self, spell: Callable[[str, Any], str | None]) -> ZooError:
        """Say the fix in another interface's words: each ``kw='value'`` (or bare ``kw=``) in the message, for
        ``kw`` in :attr:`keywords`, becomes ``spell(kw, value)`` (``value``: the Python value, None when
        bare); a None from ``spell`` keeps the text. Returns self, so that ``raise exc.spelled(...)`` reads
        well."""
        if not (self.keywords and self.args and isinstance(self.args[0], str)):
            return self
        pattern = re.compile(
            r"\b(" + "|".join(map(re.escape, self.keywords)) + r")=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")?"
        )

        def one(mt: re.Match[str]) -> str:
            try:
                value = (
                    ast.literal_eval(mt[2]) if mt[2] else None
                )  # a repr() of a string: a literal, nothing runs
            except (ValueError, SyntaxError):
                return mt[0]
            return spell(mt[1], value) or mt[0]

        self.args = (pattern.sub(one, self.args[0]), *self.args[1:])
        return self

    def about(self, source: str) -> ZooError:
        """Name ``source`` (the file being added) at the start of the message, unless it already does."""
        if self.args and isinstance(self.args[0], str) and source not in self.args[0]:
            self.args = (f"{source}: {self.args[0]}", *self.args[1:])
        return self


_CLI_WORDING: ContextVar[bool] = ContextVar("zoo_cli_wording", default=False)


@contextlib.contextmanager
def cli_wording() -> Iterator[None]:
    """Within the block, :func:`worded` says an error's hints as commands: the CLI runs each command in it,
    so that what is recorded on the way (a failed job's message in ``zoo jobs``) reads as the command line
    says it."""
    token = _CLI_WORDING.set(True)
    try:
        yield
    finally:
        _CLI_WORDING.reset(token)


def worded(exc: BaseException) -> str:
    """``str(exc)`` in the words of the interface in use: a :class:`ZooError`'s hints as commands within
    :func:`cli_wording`, as Python calls otherwise."""
    if isinstance(exc, ZooError) and _CLI_WORDING.get():
        exc.for_cli()
    return str(exc)


class ConfigError(ZooError):
    """A setting, URL or environment variable is wrong."""


class NotFoundError(ZooError, LookupError):
    """A checkpoint, dataset, alias or generator does not exist in the registry."""

    def __init__(self, kind: str, ref: str, hint: str = "") -> None:
        self.kind = kind
        self.ref = ref
        is_id = ref.startswith("id:") and ref[3:].lstrip("-").isascii() and ref[3:].lstrip("-").isdigit()
        msg = (
            f"no {kind} with id {ref[3:]} in the registry"
            if is_id
            else f"no {kind} named {show(ref)} in the registry"
        )
        super().__init__(f"{msg}; {hint}" if hint else msg)


class RegistryMissingError(ConfigError, FileNotFoundError):
    """A command that only reads or changes what is registered was pointed at a registry that does not
    exist."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        where = Hint("Registry(url) or ZOO_REGISTRY_URL", "--registry URL or ZOO_REGISTRY_URL")
        create = Hint(
            "registry.add(...), registry.register_dataset(...)",
            "`zoo add FILE`, `zoo sample-zoo`, `zoo datasets register NAME SOURCE`",
        )
        super().__init__(
            f"no registry at {location}: {reason}; check the path or URL ({where}); a registry is created by "
            f"the first add ({create})"
        )
        self.hinting(where, create)


class DuplicateError(ZooError):
    """A name, version or alias that must be unique is already taken."""

    def __init__(self, kind: str, ref: str, hint: str = "") -> None:
        self.kind = kind
        self.ref = ref
        msg = f"{kind} {show(ref)} already exists"
        super().__init__(f"{msg}; {hint}" if hint else msg)


class InvalidNameError(ZooError, ValueError):
    """A checkpoint, dataset or alias name that zoo does not accept."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(
            f"invalid name {show(name)}: {reason}; use letters, digits and '._-' (at most 128 characters)"
        )


class CheckpointError(ZooError):
    """A checkpoint file or object cannot be read as weights."""

    def __init__(self, source: str, reason: str, fix: str = "", *, keywords: Sequence[str] = ()) -> None:
        self.source = source
        self.reason = reason
        self.keywords = tuple(keywords)  # the keyword arguments ``fix`` names (see ZooError.spelled)
        msg = f"cannot read checkpoint {source}: {reason}"
        super().__init__(f"{msg}; {fix}" if fix else msg)


class UnsafeCheckpointError(CheckpointError):
    """A pickled file holds more than tensors (code, arbitrary objects): it is never unpickled."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(
            source,
            f"it is not a weights-only file ({detail})",
            "re-save it with torch.save(model.state_dict(), path) or as .safetensors; "
            "zoo never runs pickled code",
        )


class UnknownFamilyError(ZooError, LookupError):
    """No installed architecture family matches the name, spec or state dict."""

    keywords = ("arch",)

    def __init__(self, what: str, installed: Iterable[str], fix: str = "") -> None:
        self.what = what
        self.installed = sorted(installed)
        fix = fix or "Pass arch= explicitly, or install the plugin for it (see docs/writing-a-plugin.md)"
        super().__init__(
            f"no installed architecture family recognises {what}; installed families: "
            f"{', '.join(self.installed) or '(none)'}. {fix}"
        )


class UnknownPluginError(ZooError, LookupError):
    """A named plugin, encoder or family is not installed."""

    def __init__(self, kind: str, name: str, installed: Iterable[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.installed = sorted(installed)
        listing = Hint("zoo.list_plugins()", "`zoo plugins`")
        hint = hint or (
            f"check the spelling, or install the plugin that provides it ({listing} lists what "
            "is loaded; ZOO_PLUGINS / ZOO_DISABLE_PLUGIN_AUTOLOAD may have left it out)"
        )
        super().__init__(
            f"unknown {kind} {name!r}; installed: {', '.join(self.installed) or '(none)'}; {hint}"
        )
        self.hinting(listing)


class ArchitectureMismatchError(ZooError):
    """Weights do not fit the architecture they were declared or detected as."""

    keywords = ("arch",)

    def __init__(
        self,
        arch: str,
        *,
        layer: str | None = None,
        expected: Sequence[int] | None = None,
        got: Sequence[int] | None = None,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        detail: str = "",
    ) -> None:
        self.arch = arch
        self.layer = layer
        self.expected = tuple(expected) if expected is not None else None
        self.got = tuple(got) if got is not None else None
        self.missing = tuple(missing)
        self.unexpected = tuple(unexpected)
        parts = []
        if layer is not None:
            parts.append(
                f"layer {show(layer)} has shape {list(self.got or ())} "
                f"but {arch} expects {list(self.expected or ())}"
            )
        if self.missing:
            parts.append(
                f"missing {len(self.missing)} tensor(s), e.g. {', '.join(map(_plain, self.missing[:3]))}"
            )
        if self.unexpected:
            parts.append(
                f"unexpected {len(self.unexpected)} tensor(s), e.g. "
                f"{', '.join(map(_plain, self.unexpected[:3]))}"
            )
        if detail:
            parts.append(detail)
        super().__init__(
            f"weights do not fit architecture {arch}: {'; '.join(parts)}. "
            "Check the architecture you passed (arch=) or let zoo detect it"
        )


class AdaptationError(ZooError):
    """Weights of one architecture cannot be adapted (Net2Net, :func:`zoo.adapt`) to another: the pair is not
    supported (another family, other classes or input channels, narrower, shallower unless allowed, ...)."""

    def __init__(self, source: ArchSpec | str, target: ArchSpec | str, reason: str, fix: str) -> None:
        self.source = source  # the architecture the weights are of
        self.target = target  # the architecture asked for
        self.reason = reason  # why the pair is refused, in words
        self.fix = fix  # what to do instead
        super().__init__(f"cannot adapt {source} to {target}: {reason}. Fix: {fix}")


class InvalidWeightsError(ZooError):
    """Weights hold values or dtypes zoo does not store (NaN/Inf, non-float parameters, ...)."""

    def __init__(self, tensor: str, reason: str) -> None:
        self.tensor = tensor
        super().__init__(f"tensor {show(tensor)} {reason}; clean the weights before adding them")


class IntegrityError(ZooError):
    """A stored blob is missing or its content no longer matches its hash."""

    def __init__(self, sha256: str, path: str, reason: str) -> None:
        self.sha256 = sha256
        self.path = path
        verify = Hint("registry.verify()", "`zoo verify`")
        super().__init__(
            f"blob {sha256[:16]}… at {path} {reason}; it is not served. Run {verify} to list damaged "
            "blobs and re-add the checkpoint from its source"
        )
        self.hinting(verify)


class DatasetError(ZooError, ValueError):
    """A dataset cannot be read or encoded (empty, a class without samples, mixed image sizes, ...)."""


class GeneratorError(ZooError):
    """The generator cannot serve a request (none trained for that family, bad config, ...)."""


class LeaseHeldError(ZooError):
    """Another process holds the lease for a job."""

    def __init__(self, name: str, holder: str, expires_at: str) -> None:
        self.name = name
        self.holder = holder
        wait = Hint("pass wait_s=SECONDS", "pass --wait SECONDS")
        super().__init__(
            f"job {name!r} is already running (held by {holder} until {expires_at}); wait for it to finish "
            f"or {wait}"
        )
        self.hinting(wait)


class LeaseLostError(ZooError):
    """A running job's lease expired and another process took it over: the job stops where it is."""

    def __init__(self, name: str, holder: str, taken_by: str) -> None:
        self.name = name
        self.holder = holder
        self.taken_by = taken_by
        ttl = Hint("lease_ttl_s=", "--lease-ttl")
        super().__init__(
            f"job {name!r} lost its lease (held by {holder}) to {taken_by}: "
            "this run was stalled past the lease TTL and has stopped; the other run carries on. "
            f"Raise the TTL ({ttl}) if runs stall that long"
        )
        self.hinting(ttl)


class NoWeightsError(NotFoundError, GeneratorError):
    """Neither a compatible checkpoint nor a generator can serve an (architecture, dataset) request.

    Both a :class:`NotFoundError` and a :class:`GeneratorError`: ``except`` either one catches it.
    """

    def __init__(self, arch: str, dataset: str, reason: str, fix: str) -> None:
        self.kind = "weights"
        self.ref = arch
        self.arch = arch
        self.dataset = dataset
        self.reason = reason
        self.fix = fix
        ZooError.__init__(self, f"no weights for {arch} on {dataset}: {reason}. {fix}")
