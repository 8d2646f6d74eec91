"""The generator contract: what zoo needs from a weight generator, whatever its method.

A *generator kind* (IGPG is one) is a plugin: a :class:`GeneratorKind` subclass registered through the
``zoo_register_generators(register)`` hook, from a module in the ``zoo.plugins`` entry-point group. Provision
(:func:`zoo.retrieve_or_generate`), re-indexing (retraining, scoring) and the CLI talk only to this contract,
so zoo never imports a generator's code: the kind is found by name when a stored version is used.

A stored generator version (:class:`~zoo.records.GeneratorRecord`) names its kind in ``config["kind"]``
(:meth:`GeneratorKind.store` writes it). Versions stored before kinds existed have no such key; their kind is
the one registered under the record's name, else :data:`LEGACY_KIND` (every such version was an IGPG one).

Lookups (loaded lazily with the other plugins): :func:`generator_kinds`, :func:`get_generator_kind`,
:func:`kind_of` (a stored version's kind) and :func:`kind_of_generator` (a loaded generator's kind).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from zoo import plugins
from zoo.errors import UnknownPluginError, ZooError
from zoo.records import ArchSpec, CheckpointRecord, GeneratorRecord

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    from torch import nn

LEGACY_KIND = "igpg"  # the kind of versions stored before ``config["kind"]`` existed (all were IGPG's)
SAMPLING: dict[str, Any] = {  # sampling settings when a caller names none (RetrievalPolicy's defaults too)
    "temperature": 1.0,  # softmax temperature (0: greedy)
    "top_k": None,  # keep only the k likeliest tokens per step
    "top_p": 0.9,  # nucleus sampling
    "guidance": 1.0,  # classifier-free guidance (1: none)
}

Evaluator = Callable[[Any, Any, Sequence[CheckpointRecord], int], float]
"""Scores a loaded generator: ``(registry, generator, checkpoints, seed) -> score``, higher is better."""


_MADE_BY_ZOO = ("generated", "adapted")  # origins a generator never trains on


def training_checkpoints(
    registry: Any, *, family: str | None = None, arch: str | ArchSpec | None = None, after: int | None = None
) -> list[CheckpointRecord]:
    """What a generator trains on: every checkpoint of ``family`` (or exactly ``arch``) that names a dataset
    and was not made from other weights by zoo (origin ``generated``, or ``adapted``: a Net2Net copy would
    teach the generator identity blocks and make an unseen architecture seen), oldest first (``after``: only
    those with a larger id)."""
    spec = plugins.resolve_arch(arch) if arch else None
    recs = [
        r
        for r in registry.search(family=family, arch=spec, after=after)
        if r.dataset and r.origin not in _MADE_BY_ZOO
    ]
    recs.sort(key=lambda r: r.id)
    return recs


class GeneratorKind(ABC):
    """A kind of weight generator. Subclasses set :attr:`name` and implement the abstract methods.

    A *generator* here is whatever :meth:`load` returns (the kind's own object, e.g. ``igpg.Generator``);
    zoo only hands it back to the kind's methods. Abstract: :meth:`load`, :meth:`dump`, :meth:`knows`,
    :meth:`encoders`, :meth:`sample`, :meth:`train`. Concrete helpers on top: :meth:`store`,
    :meth:`load_record`, :meth:`sample_for`, :meth:`training_checkpoints`, :meth:`retrain`, :meth:`score`,
    :meth:`owns`.
    """

    name: ClassVar[str] = ""  # the kind's name: stored in config["kind"], the default name of its versions
    description: ClassVar[str] = ""  # one line for `zoo plugins`
    generator_class: ClassVar[str] = ""  # "module:QualName" of what load() returns (see owns)
    takes_examples: ClassVar[bool] = False  # sample() takes examples= (the labelled dataset asked about)

    # -- the contract ---------------------------------------------------------------------------------
    @abstractmethod
    def load(self, data: bytes, device: Any = "cpu") -> Any:
        """A generator from its stored bytes (what :meth:`dump` wrote), ready to sample on ``device``."""

    @abstractmethod
    def dump(self, generator: Any) -> bytes:
        """The bytes to store for ``generator`` (safetensors recommended: nothing is unpickled)."""

    @abstractmethod
    def knows(self, generator: Any, spec: ArchSpec) -> bool:
        """Whether ``generator`` can make weights of exactly ``spec`` (e.g. it was trained on it)."""

    @abstractmethod
    def encoders(self, generator: Any) -> tuple[str, str]:
        """(dataset encoder id, architecture text encoder id): the vectors ``generator`` conditions on."""

    @abstractmethod
    def sample(
        self,
        generator: Any,
        spec: ArchSpec,
        dataset_vector: np.ndarray,
        arch_vector: np.ndarray,
        n: int,
        *,
        seed: int | None = 0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = 0.9,
        guidance: float = 1.0,
    ) -> list[nn.Module]:
        """``n`` networks of ``spec`` (CPU, any mode) for a dataset vector and an architecture vector
        (float32, by :meth:`encoders`). The same ``seed`` gives the same networks; ``None`` draws afresh.

        A kind whose :meth:`sample_steps` gives a number also takes ``progress=``: an object with
        ``update(k)`` (a tqdm bar) that it calls as those steps are done. A kind with :attr:`takes_examples`
        also takes ``examples=``: the labelled :class:`~zoo.datasets.ImageDataset` asked about, when zoo
        has its data (None otherwise). A returned module may carry a ``generation_note`` attribute (str):
        what the kind did to it beyond sampling, which provision adds to its reason."""

    def sample_steps(self, generator: Any, spec: ArchSpec) -> int | None:
        """How many steps sampling ``spec`` takes (however many networks at once), reported through
        :meth:`sample`'s ``progress``; None (this default): the kind reports no progress, and :meth:`sample`
        is called without it. Provision shows a progress bar of these steps."""
        return None

    @abstractmethod
    def train(
        self,
        registry: Any,
        *,
        family: str | None = None,
        arch: str | ArchSpec | None = None,
        name: str | None = None,
        config: Any = None,
        dataset_encoder: str | None = None,
        text_encoder: str | None = None,
        promote: bool = False,
        progress: bool = True,
        meta: Mapping[str, Any] | None = None,
    ) -> tuple[Any, GeneratorRecord]:
        """Train on the registry's checkpoints of ``family`` (or exactly ``arch``; see
        :meth:`training_checkpoints`) and store the result (:meth:`store`) as the next version of ``name``
        (default: the kind's name), promoted when ``promote``. ``config``: the kind's own training settings
        (None: its defaults). The stored config must hold ``scope`` (``{"family": ..., "arch": spec JSON}``)
        and ``meta``. Returns the generator and its record."""

    # -- helpers built on the contract ------------------------------------------------------------------
    def store(
        self,
        registry: Any,
        generator: Any,
        *,
        name: str | None = None,
        families: Iterable[str],
        config: Mapping[str, Any],
        metrics: Mapping[str, float],
        trained_on: Iterable[int],
        promote: bool = False,
    ) -> GeneratorRecord:
        """Store ``generator`` as the next version of ``name``, its config naming this kind."""
        return registry.add_generator(
            self.dump(generator),
            name=name or self.name,
            families=families,
            config={"kind": self.name, **dict(config)},
            metrics=metrics,
            trained_on=trained_on,
            status="promoted" if promote else "candidate",
        )

    def load_record(self, registry: Any, ref: str | int | GeneratorRecord, device: Any = "cpu") -> Any:
        """A stored version, hash-verified, ready to sample."""
        return self.load(registry.load_generator_bytes(ref), device)

    def training_checkpoints(
        self,
        registry: Any,
        *,
        family: str | None = None,
        arch: str | ArchSpec | None = None,
        after: int | None = None,
    ) -> list[CheckpointRecord]:
        """What :meth:`train` trains on (default: :func:`training_checkpoints`)."""
        return training_checkpoints(registry, family=family, arch=arch, after=after)

    def sample_for(
        self,
        registry: Any,
        generator: Any,
        spec: ArchSpec,
        dataset: str,
        *,
        n: int = 1,
        seed: int | None = 0,
        **sampling: Any,
    ) -> list[nn.Module]:
        """``n`` networks of ``spec`` for registered dataset ``dataset`` (its stored vector by the generator's
        dataset encoder), sampled with :data:`SAMPLING` unless ``sampling`` says otherwise."""
        import numpy as np

        from zoo.retrieval import embed_arch, get_embedding

        ds_enc, text_enc = self.encoders(generator)
        ds = np.asarray(get_embedding(registry, "dataset", dataset, ds_enc).vector, dtype=np.float32)
        arch = np.asarray(embed_arch(registry, spec, encoder=text_enc).vector, dtype=np.float32)
        extra: dict[str, Any] = {}
        if self.takes_examples and "examples" not in sampling:
            extra["examples"] = registered_data(registry, dataset)
        return self.sample(generator, spec, ds, arch, n, seed=seed, **{**SAMPLING, **extra, **sampling})

    def retrain(
        self,
        registry: Any,
        current: GeneratorRecord,
        *,
        family: str | None = None,
        arch: ArchSpec | None = None,
        config: Any = None,
        work_dir: str | None = None,
        device: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> tuple[Any, GeneratorRecord]:
        """A candidate successor of ``current`` on today's checkpoints of its scope, with its encoders and
        settings (``config`` overrides the stored settings), stored as a candidate version of its name.
        ``work_dir``: where resumable training state may live. Default: :meth:`train` with ``config``."""
        return self.train(
            registry,
            family=family,
            arch=arch,
            name=current.name,
            config=config,
            dataset_encoder=current.config.get("dataset_encoder"),
            text_encoder=current.config.get("text_encoder"),
            promote=False,
            progress=False,
            meta=meta,
        )

    def score(
        self, registry: Any, generator: Any, checkpoints: Sequence[CheckpointRecord], seed: int = 0
    ) -> float:
        """The kind's default evaluator (see :data:`Evaluator`): re-indexing compares a candidate with the
        current version by it when no evaluator is given. Default: none; a kind overrides it."""
        raise ZooError(
            f"generator kind {self.name!r} has no default evaluator; pass evaluator= (or --evaluator)"
        )

    def owns(self, generator: Any) -> bool:
        """Whether ``generator`` is one of this kind's (default: its class is :attr:`generator_class`)."""
        cls = type(generator)
        return bool(self.generator_class) and f"{cls.__module__}:{cls.__qualname__}" == self.generator_class

    def __repr__(self) -> str:
        return f"<generator kind {self.name!r}>"


# ----------------------------------------------------------------------------------------------------
# lookups
# ----------------------------------------------------------------------------------------------------
_lock = threading.Lock()
_cache: tuple[int, dict[str, GeneratorKind]] | None = None


def registered_data(registry: Any, dataset: str) -> Any:
    """The data of registered dataset ``dataset`` (an :class:`~zoo.datasets.ImageDataset`) when zoo can read
    them again (a recorded ``source``); None otherwise (registered from memory or by name only)."""
    from zoo.datasets import load_source

    try:
        source = registry.get_dataset(dataset).meta.get("source")
        return load_source(source) if source else None
    except (ZooError, OSError) as exc:
        log.info("the data of dataset %r cannot be read again: %s", dataset, exc)
        return None


def generator_kinds() -> dict[str, GeneratorKind]:
    """Every registered generator kind by name (cached until the plugin set changes)."""
    global _cache
    generation = plugins.generation()
    with _lock:
        if _cache is None or _cache[0] != generation:
            found = plugins.collect("zoo_register_generators")
            for key, kind in found.items():
                if not isinstance(kind, GeneratorKind):
                    raise ZooError(
                        f"plugin registered {kind!r} as generator kind {key!r}, but it is not a "
                        "zoo.GeneratorKind"
                    )
            _cache = (plugins.generation(), dict(sorted(found.items())))
        return _cache[1]


def list_generator_kinds(filter: str | None = None) -> list[str]:
    """Names of registered generator kinds, optionally glob-filtered."""
    names = sorted(generator_kinds())
    return fnmatch.filter(names, filter) if filter else names


def get_generator_kind(name: str) -> GeneratorKind:
    """The kind registered as ``name``; raises naming the installed ones."""
    kinds = generator_kinds()
    if name not in kinds:
        raise UnknownPluginError("generator kind", name, kinds)
    return kinds[name]


def kind_of(record: GeneratorRecord) -> GeneratorKind:
    """The kind of a stored version: ``config["kind"]``; for older versions the kind named like the record,
    else :data:`LEGACY_KIND`."""
    name = record.config.get("kind")
    if not isinstance(name, str):
        name = record.name if record.name in generator_kinds() else LEGACY_KIND
    return get_generator_kind(name)


def kind_of_generator(generator: Any) -> GeneratorKind:
    """The kind a loaded generator belongs to (:meth:`GeneratorKind.owns`)."""
    for kind in generator_kinds().values():
        if kind.owns(generator):
            return kind
    raise ZooError(
        f"no installed generator kind owns {type(generator).__qualname__} (installed: "
        f"{', '.join(generator_kinds()) or 'none'}); install the plugin that made it"
    )


__all__ = [
    "LEGACY_KIND",
    "SAMPLING",
    "Evaluator",
    "GeneratorKind",
    "generator_kinds",
    "get_generator_kind",
    "kind_of",
    "kind_of_generator",
    "list_generator_kinds",
    "training_checkpoints",
]
