"""IGPG as a zoo plugin: the ``igpg`` generator kind and the ``zoo train`` command.

Registered through the ``zoo.plugins`` entry-point group (``igpg = "igpg.plugin"`` in pyproject.toml), like
every other plugin. This module imports only zoo's public API and no torch: the model code
(:mod:`igpg.generator`, :mod:`igpg.train`, ...) is imported when a generator is trained, loaded or sampled,
not when zoo loads its plugins, and ``zoo --help`` (which imports this module to list ``zoo train``) starts
without torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zoo import GeneratorKind, hookimpl

if TYPE_CHECKING:  # pragma: no cover - typing only
    import click
    import numpy as np
    from torch import nn

    from igpg.generator import Generator
    from igpg.train import TrainConfig
    from zoo import ArchSpec, CheckpointRecord, GeneratorRecord

KIND = "igpg"  # the kind's name, in every stored version's config["kind"]


class IGPGKind(GeneratorKind):
    """IGPG (a VQ-VAE weight tokenizer and a GPT prior conditioned on dataset and architecture vectors)."""

    name = KIND
    description = "VQ-VAE weight tokenizer + GPT prior, conditioned on dataset and architecture embeddings"
    generator_class = "igpg.generator:Generator"
    takes_examples = True

    def load(self, data: bytes, device: Any = "cpu") -> Generator:
        from igpg.generator import Generator

        return Generator.from_bytes(data, device=device)

    def dump(self, generator: Generator) -> bytes:
        return generator.to_bytes()

    def knows(self, generator: Generator, spec: ArchSpec) -> bool:
        """True for an architecture ``generator`` was trained on, and (descriptor-mode generators) for any
        architecture of a family it was trained on across two or more architectures whose tensors it can
        normalise (:meth:`igpg.Generator.normalisation`, which says why not)."""
        return generator.knows(spec)

    def encoders(self, generator: Generator) -> tuple[str, str]:
        return generator.dataset_encoder, generator.text_encoder

    def sample_steps(self, generator: Generator, spec: ArchSpec) -> int:
        """One step per chunk of ``spec``'s generated tensors: the prior picks the codes of every sample's
        chunk at once, chunk after chunk (window by window)."""
        from zoo import chunk_index, get_family

        numels = [s.numel for s in get_family(spec.family).layout(spec).generated]
        return len(chunk_index(numels, generator.k)[0])

    def sample(
        self,
        generator: Generator,
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
        progress: Any = None,
        examples: Any = None,
    ) -> list[nn.Module]:
        """:meth:`igpg.Generator.sample`; ``progress.update(1)`` after each of :meth:`sample_steps`;
        ``examples`` (the labelled dataset asked about) give each network a classifier made from them where
        that fits better (:mod:`igpg.heads`)."""
        import numpy as np
        import torch

        ds = torch.from_numpy(np.asarray(dataset_vector, dtype=np.float32))
        arch = torch.from_numpy(np.asarray(arch_vector, dtype=np.float32))
        return generator.sample(
            spec,
            ds,
            arch,
            n,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            guidance=guidance,
            seed=seed,
            progress=progress,
            examples=examples,
        )

    def train(
        self,
        registry: Any,
        *,
        family: str | None = None,
        arch: str | ArchSpec | None = None,
        name: str | None = None,
        config: TrainConfig | None = None,
        dataset_encoder: str | None = None,
        text_encoder: str | None = None,
        promote: bool = False,
        progress: bool = True,
        meta: Mapping[str, Any] | None = None,
        k: int = 16,
    ) -> tuple[Generator, GeneratorRecord]:
        """:func:`igpg.train_on_registry` (``k``: values per chunk)."""
        from igpg.registry_io import train_on_registry

        return train_on_registry(
            registry,
            family=family,
            arch=arch,
            k=k,
            config=config,
            name=name or KIND,
            dataset_encoder=dataset_encoder,
            text_encoder=text_encoder,
            promote=promote,
            progress=progress,
            meta=meta,
        )

    def retrain(
        self,
        registry: Any,
        current: GeneratorRecord,
        *,
        family: str | None = None,
        arch: ArchSpec | None = None,
        config: TrainConfig | None = None,
        work_dir: str | None = None,
        device: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> tuple[Generator, GeneratorRecord]:
        """Same chunk size, encoders and settings as ``current`` (``config`` overrides the settings); the
        training state lives in ``work_dir`` until the candidate is stored, so a killed run resumes."""
        tcfg = retrain_config(current, config, work_dir, device)
        return self.train(
            registry,
            family=family,
            arch=arch,
            name=current.name,
            config=tcfg,
            k=int(current.config.get("k", 16)),
            dataset_encoder=current.config.get("dataset_encoder"),
            text_encoder=current.config.get("text_encoder"),
            promote=False,
            progress=False,
            meta=meta,
        )

    def score(
        self, registry: Any, generator: Generator, checkpoints: Sequence[CheckpointRecord], seed: int = 0
    ) -> float:
        """:func:`igpg.evaluation.weight_space_score`: how close samples land to the registered weights."""
        from igpg.evaluation import weight_space_score

        return weight_space_score(registry, generator, checkpoints, seed)


def retrain_config(
    current: GeneratorRecord, config: TrainConfig | None, work_dir: str | None, device: str | None
) -> TrainConfig:
    """A successor's training settings: ``config``, or those stored with ``current``; its training state in
    ``work_dir``."""
    from igpg.prior import PriorConfig
    from igpg.tokenizer import TokenizerConfig
    from igpg.train import TrainConfig

    if config is not None:
        base = config
    else:
        stored = dict(current.config)
        names = {f.name for f in dataclasses.fields(TrainConfig)} - {"tokenizer", "prior"}

        def sub(kind: type, value: Any) -> Any:
            allowed = {f.name for f in dataclasses.fields(kind)}
            return kind(**{k: v for k, v in dict(value or {}).items() if k in allowed})

        base = TrainConfig(
            tokenizer=sub(TokenizerConfig, stored.get("tokenizer")),
            prior=sub(PriorConfig, stored.get("prior")),
            **{k: v for k, v in stored.items() if k in names},
        )
    state = base.checkpoint_dir if work_dir is None else str(work_dir)
    return dataclasses.replace(base, checkpoint_dir=state, device=device or base.device)


@hookimpl
def zoo_register_generators(register: Any) -> None:
    register(IGPGKind())


@hookimpl
def zoo_register_commands(cli: click.Group) -> None:
    from igpg.cli import train

    cli.add_command(train)


__all__ = ["KIND", "IGPGKind", "retrain_config"]
