"""Atomic file writes: every file zoo writes goes to a process-unique temp file that is renamed into place.

A reader (or a process that survives a crash) sees either the whole old file or the whole new one, never
half of one. Temp names carry the process id and a random part, so concurrent writers never share one; a
writer that fails removes its temp file; one that is killed leaves it to ``zoo verify --repair`` (the blob
store's) or to the next write. The pattern of safetensors, the huggingface_hub cache and MLflow.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StagedFile:
    """A temp file being written (:attr:`path`) that :meth:`publish` renames onto its destination."""

    def __init__(self, path: Path, fsync: bool) -> None:
        self.path = path
        self.fsync = fsync
        self.published: Path | None = None

    def publish(self, dest: str | os.PathLike[str]) -> Path:
        """Rename the temp file onto ``dest`` (made durable first with ``fsync``); returns ``dest``."""
        dest = Path(dest)
        if self.fsync:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, dest)
        self.published = dest
        return dest


@contextmanager
def staged_file(
    directory: str | os.PathLike[str], *, prefix: str = "", fsync: bool = False
) -> Iterator[StagedFile]:
    """A process-unique temp file in ``directory`` (created if missing), named ``{prefix}{pid}.{random}.tmp``;
    removed at the end unless it was published (renamed into place). Use it when the destination is known only
    after writing (a content address); otherwise :func:`atomic_write`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staged = StagedFile(directory / f"{prefix}{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp", fsync)
    try:
        yield staged
    finally:
        if staged.published is None:
            staged.path.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Write ``path`` atomically: yields a temp path beside it (``.{name}.{pid}.{random}.tmp``) to write; when
    the block ends without an error it is renamed onto ``path``, otherwise removed and ``path`` left as it
    was.

    >>> with atomic_write("weights.safetensors") as tmp:
    ...     tmp.write_bytes(data)
    """
    path = Path(path)
    with staged_file(path.parent, prefix=f".{path.name}.", fsync=fsync) as staged:
        yield staged.path
        staged.publish(path)


__all__ = ["StagedFile", "atomic_write", "staged_file"]
