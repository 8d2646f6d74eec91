"""Checks on what users hand to the registry: names, metrics, JSON values, metric filters and id references.

Every function raises :class:`~zoo.errors.ZooError` (or a subclass) naming the thing and the fix; none touches
the database. :mod:`zoo.registry` re-exports :func:`check_name`, :func:`check_metrics` and :func:`check_json`.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from zoo.errors import Hint, InvalidNameError, ZooError, show
from zoo.refs import NAME_RE

METRIC_OPERATOR_CHARS = "<>=!"  # a metric name holds none of them, so every stored name can be searched
_METRIC_RE = re.compile(r"\s*(?P<key>[^<>=!]*?)\s*(?P<op>>=|<=|==|!=|=|>|<)\s*(?P<value>[^<>=!]*?)\s*")
OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


def check_name(name: str, what: str = "name") -> str:
    """``name`` if zoo accepts it (letters, digits, '._-', no path separators or control characters).

    Raises:
        InvalidNameError: otherwise (the message says why, naming ``what``).
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # fullmatch: '$' alone lets "x\n" through
        reason = (
            "it is not a string"
            if not isinstance(name, str)
            else "it is empty"
            if not name
            else (
                "it contains a path separator"
                if ("/" in name or "\\" in name)
                else "it contains a control character"
                if any(ord(c) < 32 or ord(c) == 127 for c in name)
                else "it is too long"
                if len(name) > 128
                else "it contains a character zoo does not allow"
            )
        )
        raise InvalidNameError(name, f"{what}: {reason}")
    return name


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """``metrics`` as ``{name: float}``: names are non-empty printable strings, values finite numbers."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ZooError(
            f"metrics must be a mapping of names to numbers, not {show(metrics)}; "
            "pass metrics={'accuracy': 0.93}"
        )
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key or len(key) > 128 or not key.isprintable():
            raise ZooError(
                f"metric name {show(key)} is not a printable string of 1-128 characters; rename it"
            )
        if key != key.strip() or any(c in key for c in METRIC_OPERATOR_CHARS):
            raise ZooError(
                f"metric name {show(key)} cannot be searched: it "
                + (
                    "starts or ends with a space"
                    if key != key.strip()
                    else f"contains one of {' '.join(METRIC_OPERATOR_CHARS)}, which filters such as "
                    "'accuracy>=0.9' use"
                )
                + f"; rename it (e.g. {show(_metric_name_fix(key))})"
            )
        if isinstance(value, bool):
            raise ZooError(f"metric {show(key)} = {value} is a truth value, not a measurement; pass a number")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ZooError(f"metric {show(key)} = {show(value)} is not a number; pass a float") from None
        if isinstance(value, (str, bytes)) or not math.isfinite(number):
            raise ZooError(f"metric {show(key)} = {show(value)} is not a finite number; pass a float")
        out[key] = number
    return out


def check_json(value: Any, what: str) -> None:
    """Refuse ``value`` unless it is plain JSON (no NaN/Inf, no objects), as the database will store it."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ZooError(
            f"{what} is not plain JSON ({str(exc)[:200]}); pass strings, finite numbers, lists and dicts"
        ) from None


def parse_metric_filters(filters: Mapping[str, Any] | Sequence[str] | None) -> list[tuple[str, str, float]]:
    """``(name, operator, threshold)`` triples of metric filters: ``["accuracy>=0.9"]``, ``"top-1 (%) > 90"``,
    ``{"accuracy": ">=0.9"}`` or ``{"accuracy": 0.9}`` (a bare number is a lower bound)."""
    out: list[tuple[str, str, float]] = []
    if not filters:
        return out
    if isinstance(filters, str):  # one filter, not its characters
        filters = [filters]
    if isinstance(filters, Mapping):
        for key, cond in filters.items():
            if isinstance(cond, numbers.Real) and not isinstance(cond, bool):  # a threshold: at least this
                out.extend(parse_metric_filters([f"{key}>={float(cond)!r}"]))
            elif isinstance(cond, str) and _finite(cond) is not None:  # "0.5" reads as a threshold too
                out.extend(parse_metric_filters([f"{key}>={cond}"]))
            else:
                out.extend(parse_metric_filters([f"{key}{cond}"]))
        return out
    for expr in filters:
        mt = _METRIC_RE.fullmatch(expr) if isinstance(expr, str) else None
        value = _finite(mt["value"]) if mt else None
        if mt is None or not mt["key"] or value is None:
            raise ZooError(
                f"cannot read metric filter {show(expr)}; write NAME OP NUMBER with OP one of "
                ">=, <=, >, <, ==, !=, e.g. 'accuracy>=0.9' or 'top-1 (%) > 90'"
            )
        out.append((mt["key"], mt["op"], value))
    return out


def as_id(value: object, what: str) -> int:
    """A checkpoint id given as an int or ``"id:N"``; anything else is refused (a digit string is a name)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    mt = re.fullmatch(r"id:([0-9]{1,18})", value) if isinstance(value, str) else None
    if mt is None:
        raise ZooError(
            f"{what} takes checkpoint ids (an int, or 'id:N'), not {show(value)}; "
            "a name resolves to its id with get(name).id"
        )
    return int(mt[1])


def check_limit(limit: object, what: str = "limit") -> int | None:
    """``limit`` if it is None (no limit) or a positive integer; anything else (0, -1, 2.5) is refused rather
    than read as "no limit"."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ZooError(f"{what} must be a positive integer, not {show(limit)}; leave it out for no limit")
    return limit


def check_family(
    family: str | None, installed: Callable[[], Iterable[str]], registered: Callable[[], Iterable[str]]
) -> None:
    """Refuse a family filter that names neither an installed family nor one of registered checkpoints,
    listing the known ones: a typo is never an empty answer. ``installed()`` is asked only for a named family
    (loading the families imports torch, which ``zoo list`` does without), ``registered()`` only when the
    installed ones do not know it."""
    if family is None:
        return
    known = set(installed())
    if family in known:
        return
    known |= set(registered())
    if family not in known:
        listing = Hint("zoo.list_families()", "`zoo plugins`")
        raise ZooError(
            f"unknown family {show(family)}; known families: {', '.join(sorted(known)) or '(none)'} "
            f"({listing} lists the installed ones)"
        ).hinting(listing)


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _metric_name_fix(key: str) -> str:
    words = {"<": "lt", ">": "gt", "=": "eq", "!": "not"}
    return re.sub(r"\s+", " ", "".join(f" {words[c]} " if c in words else c for c in key)).strip() or "metric"


__all__ = [
    "METRIC_OPERATOR_CHARS",
    "OPS",
    "as_id",
    "check_family",
    "check_json",
    "check_limit",
    "check_metrics",
    "check_name",
    "parse_metric_filters",
]
