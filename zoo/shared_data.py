"""Where the real data that ships beside the repository lives (``../shared/data``): one lookup for all."""

from __future__ import annotations

import os
from pathlib import Path

ENV_SHARED_DATA = "ZOO_SHARED_DATA"
_REPO = Path(__file__).resolve().parents[1]


def shared_data_candidates() -> list[Path]:
    """Existing folders that may hold the shared data: ``$ZOO_SHARED_DATA``, then ``shared/data`` beside or
    inside the repository, then beside the working directory; first match first."""
    env = os.environ.get(ENV_SHARED_DATA)
    cands = ([Path(env)] if env else []) + [
        _REPO.parent / "shared" / "data",
        _REPO / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
    ]
    out: list[Path] = []
    for c in cands:
        if c.is_dir() and c not in out:
            out.append(c)
    return out


def shared_data_dir(sub: str = "") -> Path | None:
    """The first shared-data folder that holds ``sub`` (a sub-folder such as ``"pretrained"``), or None."""
    return next((c / sub for c in shared_data_candidates() if (c / sub).is_dir()), None)
