"""The generator and the registry: train on registered checkpoints, store versions, load them back.

``training_checkpoints`` is zoo's (:func:`zoo.generators.training_checkpoints`), re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from igpg import distributed
from igpg.data import ZooData, load_zoo
from igpg.generator import Generator
from igpg.heads import ClassHead, fit_shrinkage
from igpg.plugin import IGPGKind
from igpg.train import JOB, TrainConfig, job_summary, pick_device, train_generator
from zoo import (
    ArchSpec,
    CheckpointRecord,
    GeneratorRecord,
    Registry,
    check_name,
    get_dataset_encoder,
    get_embedding,
    recorded,
    refresh_stale,
    registered_data,
    resolve_arch,
    training_checkpoints,
)
from zoo.errors import GeneratorError, Hint, NotFoundError

log = logging.getLogger(__name__)


def with_dataset_vectors(
    registry: Registry, recs: list[CheckpointRecord], dataset_encoder: str | None = None
) -> tuple[list[CheckpointRecord], dict[str, list[CheckpointRecord]]]:
    """``recs`` split by whether their dataset has a current vector by ``dataset_encoder`` (None: the default
    one): ``(usable, {dataset: [skipped checkpoints]})``. A checkpoint known only by its dataset's name
    (``zoo add ... --dataset cifar10`` without ``zoo datasets register``) cannot condition the generator.

    Vectors of an older version of the encoder are recomputed first (:func:`zoo.refresh_stale`, from the data
    zoo can read again); one that stays stale (its data registered from memory) counts as missing: a
    generator must train on the vectors it will be asked with."""
    enc = get_dataset_encoder(dataset_encoder)
    names = list(dict.fromkeys(str(rec.dataset) for rec in recs))

    def versions() -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name in names:
            try:
                out[name] = get_embedding(registry, "dataset", name, enc.id).encoder_version
            except NotFoundError:
                out[name] = None
        return out

    found = versions()
    stale = [n for n, v in found.items() if v is not None and v != enc.version]
    if stale:
        log.info(
            "%d dataset(s) have %s vectors of an older version (%s, ...); recomputing them",
            len(stale),
            enc.id,
            stale[0],
        )
        refresh_stale(registry, encoders=[enc.id], archs=False, index=False)
        found = versions()
    usable: list[CheckpointRecord] = []
    skipped: dict[str, list[CheckpointRecord]] = {}
    for rec in recs:
        if found[str(rec.dataset)] == enc.version:
            usable.append(rec)
        else:
            skipped.setdefault(str(rec.dataset), []).append(rec)
    return usable, skipped


def check_preconditions(*, name: str, k: int, device: str) -> None:
    """What :func:`train_on_registry` checks before it reads or trains anything: the generator ``name``, the
    chunk size ``k`` (at least 1) and the training ``device`` (:func:`igpg.train.pick_device`).

    Raises:
        zoo.errors.InvalidNameError: for ``name``.
        zoo.errors.GeneratorError: for ``k`` or ``device``.
    """
    check_name(name, "generator name")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise GeneratorError(f"k={k!r}: the chunk size must be a whole number of at least 1 (default: 16)")
    pick_device(device)


def _register_hint(dataset: str) -> Hint:
    return Hint(f"registry.register_dataset({dataset!r}, data)", f"`zoo datasets register {dataset} SOURCE`")


def trainable_checkpoints(
    registry: Registry,
    *,
    family: str | None = None,
    arch: str | ArchSpec | None = None,
    dataset_encoder: str | None = None,
) -> list[CheckpointRecord]:
    """What :func:`train_on_registry` trains on: :func:`training_checkpoints` less those whose dataset has no
    vector by the generator's dataset encoder (each skipped dataset is logged as a warning with the fix).

    Raises:
        GeneratorError: nothing is left to train on (the message names the fix: add checkpoints with a
            dataset, or register the datasets they name).
    """
    spec = resolve_arch(arch) if arch else None
    recs = training_checkpoints(registry, family=family, arch=spec)
    what = f"architecture {spec.name}" if spec else f"family {family!r}" if family else "the registry"
    if not recs:
        arch_kw, arch_flag = (f"arch={spec.name!r}, ", f"--arch {spec.name} ") if spec else ("", "")
        add = Hint(f"registry.add(FILE, {arch_kw}dataset=NAME)", f"`zoo add FILE {arch_flag}--dataset NAME`")
        raise GeneratorError(
            f"no checkpoints with a dataset in {what} to train on; add some with their dataset: {add}"
        ).hinting(add)
    usable, skipped = with_dataset_vectors(registry, recs, dataset_encoder)
    enc = get_dataset_encoder(dataset_encoder).id
    hints = [_register_hint(name) for name in skipped]
    for name, hint in zip(skipped, hints):
        refs = ", ".join(r.ref for r in skipped[name][:5]) + (", ..." if len(skipped[name]) > 5 else "")
        log.warning(
            "skipping %d checkpoint(s) of dataset %r (%s): it has no current %s vector; to include them, "
            "register its data: %s",
            len(skipped[name]),
            name,
            refs,
            enc,
            hint.cli,
        )
    if not usable:
        names = ", ".join(repr(n) for n in list(skipped)[:5]) + (", ..." if len(skipped) > 5 else "")
        raise GeneratorError(
            f"none of the {len(recs)} checkpoint(s) with a dataset in {what} can be trained on: their "
            f"datasets ({names}) have no {enc} vector (zoo holds only their names); register the data, "
            f"which computes the vector: {hints[0]}"
        ).hinting(*hints)
    return usable


@recorded(JOB, summary=job_summary)  # a run of `zoo jobs`: started, finished, how it ended, what it stored
def train_on_registry(
    registry: Registry,
    *,
    family: str | None = None,
    arch: str | ArchSpec | None = None,
    k: int = 16,
    config: TrainConfig | None = None,
    name: str = "igpg",
    dataset_encoder: str | None = None,
    text_encoder: str | None = None,
    promote: bool = False,
    progress: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> tuple[Generator, GeneratorRecord]:
    """Train a generator on every registered checkpoint of ``family`` (or exactly ``arch``; neither: of every
    family) that names a dataset, and store it as the next version of ``name`` (promoted when ``promote``).

    One generator covers every depth, width and family it is given: sequences of all lengths train together
    (:mod:`igpg.train`), each conditioned on its own dataset and architecture embeddings. With descriptor
    coordinates (``config.coords``, the default) it also serves the unseen architectures of every family it
    saw in two or more layouts (:class:`igpg.Generator`); ``family=None`` is the across-families generator
    (its stored scope, ``{"family": None, ...}``, retrains on every family's checkpoints again).

    The stored config holds the training settings, the scope (``{"family": ..., "arch": spec JSON}``, what
    a retraining selects again) and ``meta`` (JSON-serialisable notes, e.g. which job trained it).

    Launched by ``torchrun`` (see :mod:`igpg.distributed`), every process runs this: rank 0 reads the zoo
    first (it may store missing embeddings) while the others wait and then read it too, all train together
    in DDP, and rank 0 alone stores the generator while the others wait; every rank returns the same
    generator and the stored record.

    Raises:
        zoo.errors.InvalidNameError: ``name`` is not a name zoo accepts (checked before any training).
        zoo.errors.GeneratorError: ``k`` is below 1, ``config.device`` is unknown or absent here, or there is
            nothing to train on (see :func:`trainable_checkpoints`).
    """
    check_preconditions(name=name, k=k, device=config.device if config else "auto")
    with distributed.session(config.device if config else "auto"):
        spec = resolve_arch(arch) if arch else None
        recs = trainable_checkpoints(registry, family=family, arch=spec, dataset_encoder=dataset_encoder)

        def load() -> ZooData:
            return load_zoo(
                registry,
                recs,
                k=k,
                dataset_encoder=dataset_encoder,
                text_encoder=text_encoder,
                progress=progress and distributed.is_main(),
                align=bool(config and config.align),
            )

        data = distributed.main_first(load)  # rank 0 alone may write embeddings; the others read them after
        if data is None:
            data = load()
        gen = train_generator(data, config, progress=progress)
        if config is None or config.class_head:
            gen.class_head = fit_class_head(registry, recs)

        def store() -> GeneratorRecord:
            metrics = {key: float(v) for key, v in gen.info.items() if isinstance(v, (int, float))}
            rec = IGPGKind().store(
                registry,
                gen,
                name=name,
                families=sorted({r.family for r in recs}),
                config={
                    "k": k,
                    "dataset_encoder": data.dataset_encoder,
                    "text_encoder": data.text_encoder,
                    **gen.info["train_config"],
                    "scope": {"family": family, "arch": spec.to_json() if spec else None},
                    **dict(meta or {}),
                },
                metrics=metrics,
                trained_on=[r.id for r in recs],
                promote=promote,
            )
            log.info("stored generator %s (%d checkpoints)", rec.ref, len(recs))
            return rec

        stored = distributed.main_first(store)  # the others wait for it
        rec_id = distributed.broadcast_object(stored.id if stored is not None else None)
        rec = stored if stored is not None else registry.get_generator(int(rec_id))  # type: ignore[arg-type]
    return gen, rec


def fit_class_head(
    registry: Registry, records: Sequence[CheckpointRecord], *, limit: int = 48
) -> ClassHead | None:
    """The generator's class head (:mod:`igpg.heads`), its shrinkage fitted on training checkpoints: up to
    ``limit`` of ``records`` (spread over their datasets) whose dataset zoo can read again (a registered
    ``source``), each scored on its own data. None when no checkpoint has readable data or a linear
    classifier (the generator then keeps its decoded classifiers)."""
    by_dataset: dict[str, list[CheckpointRecord]] = {}
    for rec in records:
        if rec.dataset:
            by_dataset.setdefault(rec.dataset, []).append(rec)
    data: dict[str, Any] = {}  # dataset -> its data (None: zoo cannot read them again), each read once
    picked: list[CheckpointRecord] = []
    for i in range(max((len(v) for v in by_dataset.values()), default=0)):  # round robin over datasets
        for name, recs in by_dataset.items():
            if i >= len(recs) or len(picked) == limit:
                continue
            if name not in data:
                data[name] = registered_data(registry, name)
            if data[name] is not None:
                picked.append(recs[i])
    if not picked:
        log.info("class head: no training checkpoint has data zoo can read again; none fitted")
        return None
    pairs = ((registry.load(rec), rec.arch, data[str(rec.dataset)]) for rec in picked)
    try:
        return fit_shrinkage(pairs)[0]
    except ValueError:
        log.info("class head: no training checkpoint has a linear classifier; none fitted")
        return None


def load_generator(
    registry: Registry, ref: str | int | GeneratorRecord = "igpg", device: Any = "cpu"
) -> Generator:
    """A stored generator version, hash-verified, ready to sample."""
    return Generator.from_bytes(registry.load_generator_bytes(ref), device=device)


__all__ = [
    "check_preconditions",
    "fit_class_head",
    "load_generator",
    "train_on_registry",
    "trainable_checkpoints",
    "training_checkpoints",
    "with_dataset_vectors",
]
