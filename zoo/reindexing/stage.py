"""The stage interface: a :class:`Stage` has a name and ``run(context) -> counts``; the :class:`RunContext` it
runs in carries the registry, the config, the lease and what the run has found so far."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from zoo.jobs import Lease, update_run
from zoo.registry import Registry
from zoo.reindexing.config import GeneratorDecision, ReindexConfig

WORK_COUNTS = (
    "imported",
    "orphans_removed",
    "datasets_embedded",
    "archs_embedded",
    "indexes_rebuilt",
    "index_files_removed",
    "generators_trained",
    "generators_promoted",
    "generators_rejected",
    "generators_retired",
    "files_bad",
)  # counts that mean a run changed something


class Counts(dict[str, int]):
    """A stage's counts (name -> number), in the order they were first counted."""

    def add(self, key: str, n: int = 1) -> None:
        self[key] = self.get(key, 0) + n


@dataclass
class RunContext:
    """A run's state, shared by its stages: what they need and what they found (stored in its record as it
    goes).

    ``counts`` is the run's own counts followed by each stage's (:meth:`stage_counts`), the running stage's
    included: a progress save, a failure and the report all see them.
    """

    registry: Registry
    config: ReindexConfig
    run_id: int
    lease: Lease
    watch: list[Path] = field(default_factory=list)  # the watch directories, resolved
    own_counts: Counts = field(default_factory=Counts)  # the runner's (runs found killed)
    stages: dict[str, Counts] = field(default_factory=dict)  # stage name -> its counts
    imported: list[str] = field(default_factory=list)
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    damaged_ids: set[int] = field(default_factory=set)  # checkpoints whose blobs are missing or corrupt
    generators: list[GeneratorDecision] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def stage_counts(self, name: str) -> Counts:
        """The counts of stage ``name``, recorded with the run's as they fill."""
        return self.stages.setdefault(name, Counts())

    @property
    def counts(self) -> dict[str, int]:
        out = dict(self.own_counts)
        for counts in self.stages.values():
            out.update(counts)
        return out

    @property
    def message(self) -> str:
        return "\n".join(self.messages)

    def save(self) -> None:
        """Store the progress so far in the run's record (after checking that the lease is still held)."""
        self.lease.check()
        update_run(self.registry, self.run_id, counts=self.counts, message=self.message)

    @property
    def did_work(self) -> bool:
        counts = self.counts
        return any(counts.get(k) for k in WORK_COUNTS)


class Stage(ABC):
    """One stage of a re-indexing run. Idempotent: what a run killed inside it left, the next run finishes."""

    name: ClassVar[str]  # its key in the report's timings

    def wanted(self, ctx: RunContext) -> bool:
        """Whether this run's config asks for the stage."""
        return True

    @abstractmethod
    def run(self, ctx: RunContext) -> Mapping[str, int]:
        """Do the stage's work; returns its counts (``ctx.stage_counts(self.name)``, filled as it goes)."""


def newest_id(registry: Registry) -> int:
    """The id of the newest registered checkpoint (0 when there is none)."""
    newest = registry.list(limit=1)
    return newest[0].id if newest else 0


def timed(ctx: RunContext, stage: Stage) -> Mapping[str, int]:
    """Run ``stage``, timing it."""
    t = time.perf_counter()
    counts = stage.run(ctx)
    ctx.timings[stage.name] = time.perf_counter() - t
    return counts
