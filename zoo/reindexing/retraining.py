"""Stage 4, **generators**: retrain promoted generators on new checkpoints; promote a successor if not worse.

For each promoted generator (per name and scope: the family or architecture it was trained on), when at
least ``retrain_min`` checkpoints it could train on arrived since its watermark, a candidate is trained by
the version's generator kind (:meth:`zoo.generators.GeneratorKind.retrain`: same scope, encoders and
settings; IGPG's is resumable, its training state lives in the work folder until it is stored). The
candidate and the current version are scored by the same evaluator on the same checkpoints and seed; the
candidate is promoted (and the current one retired) only when its score is at least the current one's, and
retired otherwise. Both scores are in the report and the run's record. A candidate left unjudged by a killed
run is judged by the next one; a rejected candidate's watermark counts, so the same data is not retrained
every night.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import Hint
from zoo.generators import Evaluator, kind_of
from zoo.records import ArchSpec, CheckpointRecord, GeneratorRecord
from zoo.registry import Registry
from zoo.reindexing.config import JOB, GeneratorDecision, ReindexConfig
from zoo.reindexing.stage import Counts, RunContext, Stage, newest_id

log = logging.getLogger(__name__)


class GeneratorStage(Stage):
    """Retrain (or finish judging) a successor of each promoted generator that has enough new checkpoints."""

    name = "generators"

    def wanted(self, ctx: RunContext) -> bool:
        return ctx.config.retrain

    def run(self, ctx: RunContext) -> Counts:
        registry, counts = ctx.registry, ctx.stage_counts(self.name)
        gens = registry.generators()
        if not any(g.status == "promoted" for g in gens):
            return counts
        by_id = {g.id: g for g in gens}
        # a promotion a killed run left half-done: retire the version the promoted one replaced
        for g in gens:
            old = by_id.get(g.config.get("replaces", -1)) if g.status == "promoted" else None
            if old is not None and old.status == "promoted" and old.id < g.id:
                registry.set_generator_status(old.id, "retired")
                counts.add("generators_retired")
                ctx.messages.append(
                    f"retired {old.ref}, replaced by {g.ref} (finishing a killed run's promotion)"
                )
                gens = registry.generators()
        current_by_scope: dict[tuple[str, _Scope], GeneratorRecord] = {}
        for g in gens:  # newest first: the first promoted version per (name, scope) is the one served
            if g.status == "promoted":
                scope = _scope(registry, g)
                if scope is None:
                    train = Hint("igpg.train_on_registry(registry, ...)", "`zoo train`").in_use()
                    why = f"trained on several families; retrain it by hand with {train}"
                    ctx.generators.append(GeneratorDecision(g.ref, "?", "skipped", 0, reason=why))
                    continue
                current_by_scope.setdefault((g.name, scope), g)
        newest = newest_id(registry)
        for (_, scope), current in current_by_scope.items():
            ctx.lease.check()
            decision = _consider(ctx, counts, current, scope, gens, newest)
            ctx.generators.append(decision)
            if decision.outcome in ("promoted", "rejected", "skipped"):
                ctx.messages.append(f"generator {decision}")
            ctx.save()
        return counts


@dataclass(frozen=True)
class _Scope:
    family: str | None
    arch: ArchSpec | None

    @property
    def label(self) -> str:
        if self.arch is not None:
            return f"arch {self.arch}"
        return f"family {self.family}" if self.family else "every family"


def _scope(registry: Registry, gen: GeneratorRecord) -> _Scope | None:
    """What ``gen`` was trained on: its stored scope, or (older versions) what its checkpoints say."""
    stored = gen.config.get("scope")
    if isinstance(stored, Mapping):
        arch = stored.get("arch")
        return _Scope(stored.get("family"), ArchSpec.from_json(arch) if arch else None)
    recs = registry.get_many(gen.trained_on)
    keys = {r.arch.key: r.arch for r in recs}
    if len(keys) == 1:
        return _Scope(None, next(iter(keys.values())))
    families = {r.family for r in recs} or set(gen.families)
    return _Scope(next(iter(families)), None) if len(families) == 1 else None


def work_dir(registry: Registry, cfg: ReindexConfig | None = None) -> Path:
    """Where the job keeps resumable training state: ``work_dir``, or ``<blob root>.jobs``
    beside the blobs."""
    if cfg is not None and cfg.work_dir is not None:
        return Path(cfg.work_dir)
    return registry.blobs.root.with_suffix(".jobs")


def _score(
    evaluator: Evaluator, registry: Registry, gen: Any, recs: Sequence[CheckpointRecord], seed: int
) -> float:
    score = float(evaluator(registry, gen, recs, seed))
    return score if math.isfinite(score) else -math.inf  # broken samples score worst


def _consider(
    ctx: RunContext,
    counts: Counts,
    current: GeneratorRecord,
    scope: _Scope,
    gens: Sequence[GeneratorRecord],
    newest: int,
) -> GeneratorDecision:
    """Retrain (or resume judging) one promoted generator's successor, and promote it if it is not worse."""
    registry, cfg = ctx.registry, ctx.config
    kind = kind_of(current)
    training_checkpoints = kind.training_checkpoints
    later = [
        g
        for g in gens
        if g.name == current.name
        and g.id > current.id
        and g.config.get("trained_by") == JOB
        and _scope(registry, g) == scope
    ]
    pending = next((g for g in later if g.status == "candidate"), None)
    watermark = max([current.watermark] + [g.watermark for g in later if g.status == "retired"])
    if pending is None and newest <= watermark:
        return GeneratorDecision(current.ref, scope.label, "current", 0)
    new = len(training_checkpoints(registry, family=scope.family, arch=scope.arch, after=watermark))
    if pending is None and new < cfg.retrain_min:
        return GeneratorDecision(
            current.ref,
            scope.label,
            "waiting",
            new,
            reason=f"{new} new checkpoint(s) since watermark {watermark}, retraining at {cfg.retrain_min}",
        )
    eligible = training_checkpoints(registry, family=scope.family, arch=scope.arch)
    gen = None
    if pending is None:
        damaged = sorted(r.ref for r in eligible if r.id in ctx.damaged_ids)
        if damaged:
            return GeneratorDecision(
                current.ref,
                scope.label,
                "skipped",
                new,
                reason=f"{len(damaged)} checkpoint(s) it would train on have damaged blobs "
                f"({', '.join(damaged[:5])}); re-add or remove them",
            )
        key = hashlib.sha256(
            json.dumps(
                {
                    "ids": [r.id for r in eligible],
                    "current": current.id,
                    "config": _settings(cfg.train_config),
                },
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:16]
        root = work_dir(registry, cfg)
        work = root / f"train-{current.name}-{key}"
        for stale in root.glob(f"train-{current.name}-*") if root.is_dir() else ():
            if stale != work:  # state of a training whose data has changed since: it cannot be resumed
                shutil.rmtree(stale, ignore_errors=True)
        log.info(
            "reindex: training a successor of %s on %d checkpoints (%d new)", current.ref, len(eligible), new
        )
        gen, cand = kind.retrain(
            registry,
            current,
            family=scope.family if scope.arch is None else None,
            arch=scope.arch,
            config=cfg.train_config,
            work_dir=str(work),
            device=cfg.device,
            meta={"trained_by": JOB, "replaces": current.id},
        )
        shutil.rmtree(work, ignore_errors=True)
        counts.add("generators_trained")
    else:
        cand = pending
        log.info("reindex: judging %s, left unjudged by an earlier run", cand.ref)
    ctx.lease.check()
    device = "cpu" if cfg.device in (None, "auto") else cfg.device
    gen = gen if gen is not None else kind_of(cand).load_record(registry, cand, device=device)
    cur_gen = kind.load_record(registry, current, device=device)
    recs = [
        r
        for r in eligible
        if r.id not in ctx.damaged_ids and kind.knows(gen, r.arch) and kind.knows(cur_gen, r.arch)
    ]
    if not recs:
        return GeneratorDecision(
            current.ref,
            scope.label,
            "skipped",
            new,
            cand.ref,
            reason="no undamaged checkpoint both versions know to score them on",
        )
    evaluator = cfg.evaluator if cfg.evaluator is not None else kind.score
    cur_score = _score(evaluator, registry, cur_gen, recs, cfg.eval_seed)
    cand_score = _score(evaluator, registry, gen, recs, cfg.eval_seed)
    ctx.lease.check()
    if cand_score >= cur_score and math.isfinite(cand_score):  # a score that is NaN or infinite never wins
        registry.set_generator_status(cand.id, "promoted")
        registry.set_generator_status(current.id, "retired")
        counts.add("generators_promoted")
        outcome, reason = "promoted", f"{cand.ref} replaces {current.ref}"
    else:
        registry.set_generator_status(cand.id, "retired")
        counts.add("generators_rejected")
        outcome, reason = "rejected", f"{current.ref} stays promoted"
    log.info("reindex: %s scored %.4f, %s %.4f: %s", cand.ref, cand_score, current.ref, cur_score, outcome)
    return GeneratorDecision(current.ref, scope.label, outcome, new, cand.ref, cur_score, cand_score, reason)


def _settings(config: Any) -> Any:
    """A JSON-ready form of a kind's training settings (what keys a training's resumable state)."""
    if config is None or isinstance(config, Mapping):
        return config
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else repr(config)
