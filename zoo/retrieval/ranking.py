"""Ordering equally similar checkpoints by their recorded metrics (no database, no vectors)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

TIE_METRICS = (
    "accuracy",
    "acc",
    "top1",
    "acc@1",
    "top-1",
    "top1_acc",
    "val_accuracy",
    "val_acc",
    "test_accuracy",
    "test_acc",
    "labelled_accuracy",
    "loss",
    "val_loss",
    "test_loss",
)
"""Recorded metrics that order equally similar checkpoints, in order of preference (see
:func:`order_by_metric`)."""
TIE_TOLERANCE = 1e-6  # similarities this close count as equal (float32 rounding of the same cosine)
_LOWER_IS_BETTER = frozenset({"loss", "error", "err", "nll", "mse", "mae", "rmse", "perplexity", "ppl"})


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better: one of its words is loss-like (``loss``, ``error``,
    ``err``, ``nll``, ``mse``, ``mae``, ``rmse``, ``perplexity``, ``ppl``). Words are split at anything but
    letters and at camelCase humps, so ``val_loss``, ``val loss``, ``top-1 error (%)``, ``loss@1`` and
    ``valLoss`` all are. Every other metric (accuracy, acc, top1, f1, ...) is higher-is-better."""
    words = re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", metric).lower())
    return any(w in _LOWER_IS_BETTER for w in words)


def tie_metric(metrics: Iterable[Mapping[str, float]], metric: str | None = None) -> str | None:
    """The metric that orders a group of checkpoints: ``metric`` when named, else the first name of
    :data:`TIE_METRICS` that at least one of them records (None: no such metric, the newest goes first)."""
    if metric:
        return metric
    recorded = set().union(*(rec.keys() for rec in metrics))
    return next((name for name in TIE_METRICS if name in recorded), None)


def order_by_metric(items: Iterable[tuple[int, Mapping[str, float]]], metric: str | None = None) -> list[int]:
    """Checkpoint ids of ``(id, recorded metrics)`` pairs, best first by :func:`tie_metric` (higher first;
    lower first for a loss-like name, :func:`lower_is_better`), those that do not record it after the
    others, and the newest (highest id) first among equals. Deterministic: never the order given."""
    items = list(items)
    name = tie_metric((rec for _, rec in items), metric)
    sign = 1.0 if name is not None and lower_is_better(name) else -1.0

    def key(item: tuple[int, Mapping[str, float]]) -> tuple[int, float, int]:
        value = item[1].get(name) if name is not None else None
        if value is None or value != value:  # not recorded (or NaN): after those that record it
            return (1, 0.0, -item[0])
        return (0, sign * float(value), -item[0])

    return [i for i, _ in sorted(items, key=key)]


def break_ties(
    ranked: Sequence[tuple[float, int]],
    metrics: Mapping[int, Mapping[str, float]],
    metric: str | None = None,
    tolerance: float = TIE_TOLERANCE,
) -> list[tuple[float, int]]:
    """``(score, checkpoint id)`` pairs sorted best score first, with every run of equal scores (within
    ``tolerance`` of the run's first) reordered by :func:`order_by_metric` of the ``metrics`` recorded per
    id."""
    out: list[tuple[float, int]] = []
    i = 0
    while i < len(ranked):
        j = i + 1
        while j < len(ranked) and ranked[i][0] - ranked[j][0] <= tolerance:
            j += 1
        run = ranked[i:j]
        if len(run) > 1:
            score = {cid: sc for sc, cid in run}
            order = order_by_metric(((cid, metrics.get(cid, {})) for _, cid in run), metric)
            run = [(score[cid], cid) for cid in order]
        out += run
        i = j
    return out
