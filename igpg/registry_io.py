"""The generator and the registry: train on registered checkpoints, store versions, load them back."""

from __future__ import annotations

import logging
from typing import Any

from igpg.data import load_zoo
from igpg.generator import Generator
from igpg.train import TrainConfig, train_generator
from zoo.errors import GeneratorError
from zoo.plugins import resolve_arch
from zoo.records import GeneratorRecord
from zoo.registry import Registry

log = logging.getLogger(__name__)


def train_on_registry(registry: Registry, *, family: str | None = None, arch: str | None = None,
                      k: int = 16, config: TrainConfig | None = None, name: str = "igpg",
                      dataset_encoder: str | None = None, text_encoder: str | None = None,
                      promote: bool = False, progress: bool = True) -> tuple[Generator, GeneratorRecord]:
    """Train a generator on every registered checkpoint of ``family`` (or exactly ``arch``) that names a
    dataset, and store it as the next version of ``name`` (promoted when ``promote``)."""
    spec = resolve_arch(arch) if arch else None
    recs = [r for r in registry.search(family=family, arch=spec) if r.dataset and r.origin != "generated"]
    if not recs:
        what = f"architecture {spec}" if spec else f"family {family!r}" if family else "the registry"
        raise GeneratorError(f"no checkpoints with a dataset in {what} to train on; add some with dataset=")
    recs.sort(key=lambda r: r.id)
    data = load_zoo(registry, recs, k=k, dataset_encoder=dataset_encoder, text_encoder=text_encoder,
                    progress=progress)
    gen = train_generator(data, config, progress=progress)
    metrics = {key: float(v) for key, v in gen.info.items() if isinstance(v, (int, float))}
    rec = registry.add_generator(gen.to_bytes(), name=name, families=sorted({r.family for r in recs}),
                                 config={"k": k, "dataset_encoder": data.dataset_encoder,
                                         "text_encoder": data.text_encoder, **gen.info["train_config"]},
                                 metrics=metrics, trained_on=[r.id for r in recs],
                                 status="promoted" if promote else "candidate")
    log.info("stored generator %s (%d checkpoints)", rec.ref, len(recs))
    return gen, rec


def load_generator(registry: Registry, ref: str | int | GeneratorRecord = "igpg", device: Any = "cpu"
                   ) -> Generator:
    """A stored generator version, hash-verified, ready to sample."""
    return Generator.from_bytes(registry.load_generator_bytes(ref), device=device)
