"""Content-addressed blob store: safetensors files named by the sha256 of their bytes.

Writes go to a process-unique temp file that is renamed into place, so a blob is either whole or absent.
Every read hashes the bytes; a blob whose content no longer matches its name is never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from zoo.atomic import StagedFile, staged_file
from zoo.errors import ConfigError, IntegrityError

if TYPE_CHECKING:  # pragma: no cover - typing only (torch is imported where tensors are read or written)
    import torch

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-hash")


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_folder(root: Path) -> None:
    """Refuse a blob root that is, or lies under, something other than a folder (before anything is written:
    a file there would fail every add and remove half-way)."""
    for where in (root, *root.parents):
        if where.exists():
            if where.is_dir():
                return
            err = ConfigError(
                f"the blob store folder {root} cannot be used: {where} is a file, not a folder; point "
                "blob_root= (or $ZOO_BLOB_ROOT) at a folder, or leave it out to use the one beside the "
                "registry file"
            )
            err.keywords = ("blob_root",)
            raise err


class BlobStore:
    """Files under ``root/ab/abcdef....safetensors``; temp files under ``root/tmp``."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root)
        _check_folder(self.root)
        self.fsync = fsync  # fsync before rename: survives power loss, not just process kills
        self.tmp = self.root / "tmp"

    def path(self, sha256: str) -> Path:
        if not _SHA_RE.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{SUFFIX}"

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    # -- writing ------------------------------------------------------------------------------------
    @staticmethod
    def serialize(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
        """safetensors bytes of ``tensors``: deterministic, so equal weights give equal hashes.

        safetensors writes metadata keys in no fixed order, so ``metadata`` is stored as one JSON string
        under the key ``"zoo"`` (sorted keys): equal inputs always give equal bytes.
        """
        from safetensors.torch import save as st_save

        meta = (
            {"zoo": json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"))} if metadata else None
        )
        return st_save(dict(tensors), metadata=meta)

    def put(self, data: bytes, sha256: str | None = None) -> tuple[str, bool]:
        """Store ``data``; returns (sha256, whether a new file was written). Idempotent."""
        with staged_file(self.tmp, fsync=self.fsync) as staged:
            staged.path.write_bytes(data)
            return self._commit(staged, sha256)

    def put_tensors(
        self, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
    ) -> tuple[str, bool, int]:
        """Store ``tensors`` as safetensors; returns (sha256, whether a new file was written, size in bytes).

        safetensors writes the temp file directly (no intermediate copy); the hash is then read back from
        the page cache. Equal tensors and metadata always give equal bytes (see :meth:`serialize`).
        """
        from safetensors.torch import save_file as st_save_file

        meta = (
            {"zoo": json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"))} if metadata else None
        )
        with staged_file(self.tmp, fsync=self.fsync) as staged:
            st_save_file(dict(tensors), staged.path, metadata=meta)
            size = staged.path.stat().st_size
            sha, created = self._commit(staged, None)
        return sha, created, size

    def _commit(self, staged: StagedFile, sha256: str | None) -> tuple[str, bool]:
        """Publish a written temp file at its content address (or leave it to be dropped if an equal blob is
        there)."""
        sha = sha256 or _file_sha256(staged.path)
        dest = self.path(sha)
        if dest.is_file() and dest.stat().st_size == staged.path.stat().st_size and self._matches(dest, sha):
            os.utime(dest)  # a fresh mtime keeps the garbage collector's grace period for in-flight adds
            return sha, False
        try:
            staged.publish(dest)
        except FileNotFoundError:  # a delete removed the (empty) folder between mkdir and rename: again
            staged.publish(dest)
        return sha, True

    # -- reading ------------------------------------------------------------------------------------
    def read(self, sha256: str) -> bytes:
        """The blob's bytes, verified against its hash."""
        path = self.path(sha256)
        data = self._read_file(sha256, path)
        if sha256_bytes(data) != sha256:
            raise IntegrityError(sha256, str(path), "does not match its hash (changed or corrupted on disk)")
        return data

    def load(self, sha256: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The blob's tensors. The hash is checked on a second thread while the tensors are parsed."""
        import torch
        from safetensors.torch import load as st_load

        path = self.path(sha256)
        data = self._read_file(sha256, path)
        digest = _hasher.submit(sha256_bytes, data)
        try:
            tensors = st_load(data)
        except (SafetensorError, ValueError) as exc:
            digest.result()
            raise IntegrityError(sha256, str(path), f"is not a readable safetensors file ({exc})") from None
        if digest.result() != sha256:
            raise IntegrityError(sha256, str(path), "does not match its hash (changed or corrupted on disk)")
        if torch.device(device).type != "cpu":
            tensors = {k: v.to(device) for k, v in tensors.items()}
        return tensors

    @staticmethod
    def _read_file(sha256: str, path: Path) -> bytes:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise IntegrityError(sha256, str(path), "is missing from the blob store") from None

    def _matches(self, path: Path, sha256: str) -> bool:
        try:
            return sha256_bytes(path.read_bytes()) == sha256
        except OSError:
            return False

    def check(self, sha256: str) -> str:
        """``"ok"``, ``"missing"`` or ``"corrupt"``."""
        path = self.path(sha256)
        if not path.is_file():
            return "missing"
        return "ok" if self._matches(path, sha256) else "corrupt"

    # -- housekeeping -------------------------------------------------------------------------------
    def delete(self, sha256: str) -> bool:
        """Remove a blob file, and its two-character folder when that is left empty (a refused first add
        leaves no trace); returns whether a file was there."""
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        try:
            path.parent.rmdir()  # only when empty; a writer that loses its folder here makes it again
        except OSError:
            pass
        return True

    def iter_shas(self) -> Iterator[str]:
        """Every blob file's sha256 (by name), in no particular order."""
        if not self.root.is_dir():
            return
        for sub in self.root.iterdir():
            if sub.is_dir() and len(sub.name) == 2:
                for f in sub.iterdir():
                    if f.name.endswith(SUFFIX) and _SHA_RE.match(f.name[: -len(SUFFIX)]):
                        yield f.name[: -len(SUFFIX)]

    def stale_temp_files(self, older_than_s: float) -> list[Path]:
        """Temp files left by writers that died, older than ``older_than_s`` seconds."""
        if not self.tmp.is_dir():
            return []
        cutoff = time.time() - older_than_s
        return [p for p in self.tmp.iterdir() if p.is_file() and p.stat().st_mtime < cutoff]

    def age_s(self, sha256: str) -> float:
        try:
            return time.time() - self.path(sha256).stat().st_mtime
        except FileNotFoundError:
            return float("inf")
