"""What a re-indexing run is asked to do (:class:`ReindexConfig`) and what it reports
(:class:`ReindexReport`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError
from zoo.generators import Evaluator
from zoo.jobs import DEFAULT_TTL_S

JOB = "reindex"  # the job's kind in job_runs and the name of its lease
ENV_WATCH = "ZOO_WATCH_DIRS"  # watch directories, separated by os.pathsep


@dataclass
class ReindexConfig:
    """What a re-indexing run does. Every field has a default that suits a nightly run."""

    watch: Sequence[str | os.PathLike[str]] = ()  # folders scanned recursively for new checkpoint files
    verify: bool = True  # hash every stored blob; report missing and corrupt ones
    repair_orphans: bool = (
        True  # remove orphan blob files and rows older than the grace period (never damaged ones)
    )
    embeddings: bool = True  # recompute stale vectors; bring nearest-neighbour indexes up to date
    encoders: Sequence[str] | None = (
        None  # dataset encoders to refresh (None: every installed one that can run)
    )
    text_encoder: str | None = None  # architecture text encoder (None: the default, minilm)
    sources: Mapping[str, Any] | None = (
        None  # dataset name -> data, for stale datasets registered from memory
    )
    retrain: bool = True  # retrain promoted generators when enough new checkpoints arrived
    retrain_min: int = 20  # new trainable checkpoints since a generator's watermark that trigger retraining
    train_config: Any = None  # the kind's training settings (igpg.TrainConfig); None: the current version's
    device: str | None = (
        None  # training and scoring device, e.g. "cuda" (None: the train config's; CPU to score)
    )
    evaluator: Evaluator | None = None  # None: the generator kind's own score (IGPG's needs no task data)
    eval_seed: int = 0  # the seed both generators sample with when scored
    lease_ttl_s: float = (
        DEFAULT_TTL_S  # a run that stops renewing its lease (killed) blocks others this long at most
    )
    wait_s: float = 0.0  # how long to wait for a running job before giving up with LeaseHeldError
    work_dir: str | os.PathLike[str] | None = None  # resumable training state (None: <blob root>.jobs/)


def watch_dirs_from_env() -> list[str]:
    """Watch directories named by ``$ZOO_WATCH_DIRS`` (separated by ``os.pathsep``)."""
    return [p for p in os.environ.get(ENV_WATCH, "").split(os.pathsep) if p.strip()]


def check_config(cfg: ReindexConfig) -> list[Path]:
    """The watch directories, resolved; :class:`~zoo.errors.ConfigError` naming the fix for a bad setting."""
    if cfg.retrain_min < 1:
        raise ConfigError(
            f"retrain_min must be at least 1 (got {cfg.retrain_min}); it counts new checkpoints"
        )
    dirs = []
    for d in cfg.watch:
        p = Path(d).expanduser().resolve()
        if not p.is_dir():
            raise ConfigError(
                f"watch directory {p} does not exist or is not a folder; create it or fix --watch "
                f"(or ${ENV_WATCH})"
            )
        dirs.append(p)
    return dirs


@dataclass(frozen=True)
class GeneratorDecision:
    """What the generator stage decided for one promoted generator."""

    current: str  # the promoted version's ref
    scope: str  # what it is trained on: "arch cnn-tiny(...)" or "family resnet"
    outcome: (
        str  # "current" (nothing new), "waiting" (< retrain_min new), "promoted", "rejected" or "skipped"
    )
    new_checkpoints: int  # trainable checkpoints since its watermark
    candidate: str | None = None  # the candidate's ref, when one was trained or found
    current_score: float | None = None
    candidate_score: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        text = f"{self.current} [{self.scope}]: {self.outcome}"
        if self.candidate is not None and self.candidate_score is not None and self.current_score is not None:
            text += (
                f" - candidate {self.candidate} scored {self.candidate_score:.4f}, current "
                f"{self.current_score:.4f}"
            )
        return f"{text} ({self.reason})" if self.reason else text


@dataclass(frozen=True)
class ReindexReport:
    """What a run did: its record's id and status, counts per stage, and the details behind them."""

    run_id: int
    status: str  # "succeeded", or "skipped" when there was nothing to do
    counts: Mapping[str, int]
    imported: tuple[str, ...]  # refs of checkpoints imported from watch directories
    bad_files: tuple[tuple[str, str], ...]  # (path, why) of files found unreadable in this run
    missing: tuple[str, ...]  # "sha256 (refs)" of blobs missing from the store
    corrupt: tuple[str, ...]  # "sha256 (refs)" of blobs whose content no longer matches
    generators: tuple[GeneratorDecision, ...]
    messages: tuple[str, ...]  # one line per notable thing (also the run record's message)
    seconds: float
    timings: Mapping[str, float] = field(
        default_factory=dict
    )  # seconds per stage: lease, import, verify, ...

    @property
    def damaged(self) -> bool:
        """Whether verification found missing or corrupt blobs."""
        return bool(self.missing or self.corrupt)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "counts": dict(self.counts),
            "imported": list(self.imported),
            "bad_files": [{"path": p, "error": e} for p, e in self.bad_files],
            "missing": list(self.missing),
            "corrupt": list(self.corrupt),
            "damaged": self.damaged,
            "generators": [g.to_dict() for g in self.generators],
            "messages": list(self.messages),
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }
