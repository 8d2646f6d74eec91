"""Writing a registered checkpoint's weights to a file (:meth:`zoo.registry.Registry.export`, ``zoo export``).

``safetensors`` writes the stored blob's bytes as they are, after checking them against their hash: the file's
sha256 is the checkpoint's ``sha256`` (``sha256sum FILE`` checks a copy). ``pt`` writes the tensors with
``torch.save`` as a plain state dict, which ``torch.load(path, weights_only=True)`` reads. An existing file is
never replaced unless asked (``overwrite``); the file appears whole or not at all (a temp file beside it is
renamed into place, or hard-linked when it must not replace anything).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.atomic import staged_file
from zoo.errors import ZooError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from zoo.records import CheckpointRecord
    from zoo.store.blobs import BlobStore

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("safetensors", "pt")  # what export writes
_SUFFIXES = {".safetensors": "safetensors", ".pt": "pt", ".pth": "pt", ".bin": "pt"}


def export_format(path: Path, fmt: str | None) -> str:
    """The format to write: ``fmt`` when given, else the one ``path``'s suffix names."""
    if fmt is not None:
        if fmt not in EXPORT_FORMATS:
            raise ZooError(f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")
        return fmt
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        err = ZooError(
            f"cannot tell the format of {path} from its suffix {path.suffix or '(none)'}; name the file "
            f".safetensors, .pt or .pth, or pass format='safetensors' (or format='pt')"
        )
        err.keywords = ("format",)
        raise err
    return found


def export_checkpoint(
    blobs: BlobStore, rec: CheckpointRecord, path: str | os.PathLike[str], *, fmt: str | None, overwrite: bool
) -> Path:
    """Write ``rec``'s weights to ``path`` (see the module's docstring); returns the path written."""
    path = Path(path)
    fmt = export_format(path, fmt)
    if path.is_dir():
        raise ZooError(f"{path} is a folder; name the file to write, e.g. {path / (rec.name + '.' + fmt)}")
    if path.exists() and not overwrite:
        _refuse_existing(path)
    if not path.parent.is_dir():
        raise ZooError(f"cannot write {path}: the folder {path.parent} does not exist; create it first")
    data = blobs.read(rec.sha256)  # verified against its hash (IntegrityError otherwise)
    if fmt == "pt":
        import torch
        from safetensors.torch import load as st_load

        buf = io.BytesIO()
        torch.save(st_load(data), buf)
        data = buf.getvalue()
    with staged_file(path.parent, prefix=f".{path.name}.") as staged:
        staged.path.write_bytes(data)
        if overwrite:
            staged.publish(path)
        else:
            try:  # a hard link never replaces a file that appeared meanwhile
                os.link(staged.path, path)
            except FileExistsError:
                _refuse_existing(path)
            except OSError:  # a file system without hard links
                if path.exists():
                    _refuse_existing(path)
                staged.publish(path)
    log.info("exported %s to %s (%s, %d bytes)", rec.ref, path, fmt, len(data))
    return path


def _refuse_existing(path: Path) -> None:
    err = ZooError(f"{path} already exists; choose another file, or pass overwrite=True to replace it")
    err.keywords = ("overwrite",)
    raise err


__all__ = ["EXPORT_FORMATS", "export_checkpoint", "export_format"]
