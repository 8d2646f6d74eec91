"""Stage 3, **embeddings**: recompute stale vectors and bring the nearest-neighbour indexes up to date.

:func:`zoo.embeddings.refresh_stale` recomputes every vector whose encoder version or source changed and
brings each persisted nearest-neighbour index up to date (built beside the live one under a new name, then
swapped in through the ``settings`` table); index files no setting points at (a build that was killed) are
removed after the grace period.
"""

from __future__ import annotations

import time

from zoo.registry import ORPHAN_GRACE_S, Registry
from zoo.reindexing.stage import Counts, RunContext, Stage


class EmbeddingStage(Stage):
    """Recompute stale dataset and architecture vectors; rebuild the indexes; remove stray index files."""

    name = "embeddings"

    def wanted(self, ctx: RunContext) -> bool:
        return ctx.config.embeddings

    def run(self, ctx: RunContext) -> Counts:
        from zoo.embeddings import refresh_stale

        registry, cfg, counts = ctx.registry, ctx.config, ctx.stage_counts(self.name)
        rr = refresh_stale(
            registry,
            encoders=cfg.encoders,
            text_encoder=cfg.text_encoder,
            sources=cfg.sources,
            check_sources=False,
            archs=True,
            index=True,
        )
        counts.update(
            datasets_embedded=len(rr.datasets_embedded),
            dataset_vectors_current=rr.datasets_current,
            datasets_need_data=len(rr.datasets_need_data),
            archs_embedded=rr.archs_embedded,
            indexes_rebuilt=sum(1 for i in rr.indexes if i.rebuilt),
        )
        counts.add("index_files_removed", _remove_stray_indexes(registry))
        if rr.datasets_embedded:
            ctx.messages.append(
                f"re-embedded {len(rr.datasets_embedded)} dataset vector(s): "
                f"{', '.join(rr.datasets_embedded[:10])}"
            )
        if rr.datasets_need_data:
            need = rr.datasets_need_data
            ctx.messages.append(
                f"{len(need)} dataset(s) have stale or no vectors and zoo cannot read their "
                f"data again: {', '.join(need[:10])}; register their data, which computes the vectors "
                f"(`zoo datasets register {need[0]} SOURCE`, or Registry.register_dataset({need[0]!r}, data))"
            )
        ctx.save()
        return counts


def _remove_stray_indexes(registry: Registry, grace_s: float = ORPHAN_GRACE_S) -> int:
    """Delete index files that no setting points at (a killed build), once older than ``grace_s``."""
    from zoo.embeddings import index_dir

    directory = index_dir(registry)
    if not directory.is_dir():
        return 0
    live = registry.repos.vectors.index_files()
    cutoff = time.time() - grace_s
    removed = 0
    for p in directory.glob("*.usearch"):
        if p.name not in live and p.stat().st_mtime < cutoff:
            p.unlink(missing_ok=True)
            removed += 1
    return removed
