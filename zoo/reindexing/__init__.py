"""The nightly re-indexing job: ``zoo reindex`` and :func:`reindex`, for cron or any scheduler.

One run, under the registry's ``reindex`` lease (:class:`zoo.jobs.Lease`), goes through a list of stages
(:data:`zoo.reindexing.runner.STAGES`), one module each. Each is idempotent, so a run killed at any point
leaves nothing half-done that the next run does not finish, and a run with nothing new does no work (its
record says ``skipped``):

1. **import** (:mod:`zoo.reindexing.importing`): every checkpoint file under the watch directories is
   registered with :meth:`Registry.add`, with the metadata of its optional JSON sidecar; files are
   remembered by path, size, modification time and sha256, so none is read or imported twice, and a file
   zoo cannot read is reported, never stored, and never stops the run.
2. **verify** (:mod:`zoo.reindexing.verification`): :meth:`Registry.verify` hashes every blob; missing and
   corrupt ones are reported with the checkpoints that use them; orphans past the grace period are removed.
3. **embeddings** (:mod:`zoo.reindexing.refresh`): stale vectors are recomputed and each persisted
   nearest-neighbour index is brought up to date; stray index files are removed after the grace period.
4. **generators** (:mod:`zoo.reindexing.retraining`): a promoted generator with at least ``retrain_min``
   new checkpoints it could train on gets a candidate successor, trained by its generator kind and promoted
   only when it scores at least as well as the current version.

:mod:`zoo.reindexing.stage` holds the stage interface (a name and ``run(context) -> counts``) and the
context a run's stages share; :mod:`zoo.reindexing.runner` runs the stages under the lease and records the
run; :mod:`zoo.reindexing.config` holds :class:`ReindexConfig` and :class:`ReindexReport`.
"""

from zoo.generators import Evaluator
from zoo.reindexing.config import (
    ENV_WATCH,
    JOB,
    GeneratorDecision,
    ReindexConfig,
    ReindexReport,
    watch_dirs_from_env,
)
from zoo.reindexing.evaluators import EVALUATORS, accuracy_evaluator, evaluators
from zoo.reindexing.importing import CHECKPOINT_SUFFIXES, SIDECAR_KEYS, read_sidecar, scan, sidecar_digest
from zoo.reindexing.retraining import work_dir
from zoo.reindexing.runner import STAGES, reindex
from zoo.reindexing.stage import RunContext, Stage

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "ENV_WATCH",
    "EVALUATORS",
    "JOB",
    "SIDECAR_KEYS",
    "STAGES",
    "Evaluator",
    "GeneratorDecision",
    "ReindexConfig",
    "ReindexReport",
    "RunContext",
    "Stage",
    "accuracy_evaluator",
    "evaluators",
    "read_sidecar",
    "reindex",
    "scan",
    "sidecar_digest",
    "watch_dirs_from_env",
    "work_dir",
]
