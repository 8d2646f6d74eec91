"""References to checkpoints and generators: one grammar, one meaning each.

=================  ===========================================================
``name``           the newest version of ``name``
``name:v3``        version 3 of ``name``
``name@best``      the version the alias ``best`` of ``name`` points at
``id:12``          the row with id 12 (an ``int`` means the same in Python)
=================  ===========================================================

A string is never read as an id unless it says so: ``"2024"`` is the checkpoint *named* 2024. Names may
not contain ``:`` or ``@`` (see :data:`NAME_RE`), so every form reads one way only. Versions and ids are
never reused, so a pinned ``name:v3`` or ``id:12`` always means the same weights or nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoo.errors import NotFoundError, show

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # names, tags, aliases, dataset names (fullmatch)
_REF_RE = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127})(?::v(?P<version>[0-9]{1,18})|@(?P<alias>"
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}))?"
)
_ID_RE = re.compile(r"id:(?P<id>-?[0-9]+)")
MAX_ID = 2**63 - 1
GRAMMAR = "name, name:vN, name@alias or id:N"


@dataclass(frozen=True)
class Ref:
    """A parsed reference: either ``id`` alone, or ``name`` with at most one of ``version`` and ``alias``."""

    id: int | None = None
    name: str | None = None
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.id is not None:
            return f"id:{self.id}"
        return (
            f"{self.name}:v{self.version}"
            if self.version is not None
            else (f"{self.name}@{self.alias}" if self.alias is not None else str(self.name))
        )


def parse_ref(ref: object, kind: str = "checkpoint") -> Ref:
    """``ref`` (a string in the grammar above, or an ``int`` id) as a :class:`Ref`.

    Raises :class:`~zoo.errors.NotFoundError` naming the grammar when ``ref`` is neither.
    """
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise NotFoundError(kind, f"<a {type(ref).__name__}>", f"refer to it as {GRAMMAR}")
    if isinstance(ref, int):
        if not 0 < ref <= MAX_ID:
            raise NotFoundError(kind, f"id:{ref}", f"ids are integers from 1 to {MAX_ID}")
        return Ref(id=ref)
    mt = _ID_RE.fullmatch(ref)
    if mt:
        return parse_ref(int(mt["id"]), kind)
    mt = _REF_RE.fullmatch(ref)
    if not mt:
        raise NotFoundError(kind, ref, f"{show(ref)} is not a reference; refer to it as {GRAMMAR}")
    return Ref(name=mt["name"], version=int(mt["version"]) if mt["version"] else None, alias=mt["alias"])


__all__ = ["GRAMMAR", "NAME_RE", "Ref", "parse_ref"]
