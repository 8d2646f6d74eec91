"""Stage 2, **verify**: hash every blob; report the damaged ones with what uses them; remove old orphans.

:meth:`Registry.verify` hashes every blob; missing and corrupt ones are reported with the checkpoints that
use them (loading them raises :class:`~zoo.errors.IntegrityError`: they are never served, and the generator
stage does not train on them). Orphans older than the grace period (what a killed add leaves) are removed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from zoo.registry import Registry
from zoo.reindexing.stage import Counts, RunContext, Stage

log = logging.getLogger(__name__)


class VerifyStage(Stage):
    """Hash every stored blob; report missing and corrupt ones; remove orphans past the grace period."""

    name = "verify"

    def wanted(self, ctx: RunContext) -> bool:
        return ctx.config.verify

    def run(self, ctx: RunContext) -> Counts:
        registry, cfg, counts = ctx.registry, ctx.config, ctx.stage_counts(self.name)
        rep = registry.verify(repair=cfg.repair_orphans)
        counts.update(
            blobs_checked=rep.checked,
            blobs_ok=rep.ok,
            blobs_missing=len(rep.missing),
            blobs_corrupt=len(rep.corrupt),
        )
        if cfg.repair_orphans:
            counts.add("orphans_removed", len(rep.orphan_files) + len(rep.orphan_rows))
        users = _users(registry, [*rep.missing, *rep.corrupt])
        for kind, shas, out in (("missing", rep.missing, ctx.missing), ("corrupt", rep.corrupt, ctx.corrupt)):
            for sha in shas:
                refs = [ref for _, ref in users[sha]]
                ctx.damaged_ids.update(cid for cid, _ in users[sha] if cid is not None)
                out.append(f"{sha} ({', '.join(refs) or 'unreferenced'})")
            if shas:
                ctx.messages.append(
                    f"{len(shas)} {kind} blob(s), not served: {'; '.join(out[:5])}. "
                    "Re-add those checkpoints from their source"
                )
                log.error("reindex: %d %s blob(s): %s", len(shas), kind, "; ".join(out))
        ctx.save()
        return counts


def _users(registry: Registry, shas: Sequence[str]) -> dict[str, list[tuple[int | None, str]]]:
    """sha256 -> (checkpoint id or None for a generator, ref) of everything stored in those blobs."""
    return registry.repos.blobs.users(shas)
