"""The generator and the registry: train on registered checkpoints, store versions, load them back.

``training_checkpoints`` is zoo's (:func:`zoo.generators.training_checkpoints`), re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from igpg import distributed
from igpg.data import ZooData, load_zoo
from igpg.generator import Generator
from igpg.plugin import IGPGKind
from igpg.train import JOB, TrainConfig, job_summary, train_generator
from zoo import ArchSpec, GeneratorRecord, Registry, recorded, resolve_arch, training_checkpoints
from zoo.errors import GeneratorError, Hint

log = logging.getLogger(__name__)


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
    """
    with distributed.session(config.device if config else "auto"):
        spec = resolve_arch(arch) if arch else None
        recs = training_checkpoints(registry, family=family, arch=spec)
        if not recs:
            what = f"architecture {spec.name}" if spec else f"family {family!r}" if family else "the registry"
            arch_kw, arch_flag = (f"arch={spec.name!r}, ", f"--arch {spec.name} ") if spec else ("", "")
            add = Hint(
                f"registry.add(FILE, {arch_kw}dataset=NAME)", f"`zoo add FILE {arch_flag}--dataset NAME`"
            )
            raise GeneratorError(
                f"no checkpoints with a dataset in {what} to train on; add some with their dataset: {add}"
            ).hinting(add)

        def load() -> ZooData:
            return load_zoo(
                registry,
                recs,
                k=k,
                dataset_encoder=dataset_encoder,
                text_encoder=text_encoder,
                progress=progress and distributed.is_main(),
            )

        data = distributed.main_first(load)  # rank 0 alone may write embeddings; the others read them after
        if data is None:
            data = load()
        gen = train_generator(data, config, progress=progress)

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


def load_generator(
    registry: Registry, ref: str | int | GeneratorRecord = "igpg", device: Any = "cpu"
) -> Generator:
    """A stored generator version, hash-verified, ready to sample."""
    return Generator.from_bytes(registry.load_generator_bytes(ref), device=device)


__all__ = ["load_generator", "train_on_registry", "training_checkpoints"]
