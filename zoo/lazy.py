"""Names a package exports but imports on first use (PEP 562 module ``__getattr__``), and moved names.

A plugin's package should import fast: zoo loads every plugin for every command, and ``zoo --help`` should
not load model code. :func:`lazy_exports` gives a package ``__getattr__`` and ``__dir__`` functions that
import each exported name from the module that defines it on first use (then keep it in the package's
namespace). With ``moved=True`` every use warns that the name moved (a deprecation shim: the old import
path keeps working and says where the name now lives).

Example (a package's ``__init__.py``)::

    from zoo import lazy_exports

    _EXPORTS = {"Generator": "igpg.generator", "train_generator": "igpg.train"}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], *, moved: bool = False
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for module ``package``, exporting ``exports`` (public name -> the module
    that defines it).

    ``moved=False``: a name is imported on first use and kept in the package's namespace (later uses cost a
    dict lookup). ``moved=True``: every use emits a :class:`DeprecationWarning` naming the new location, and
    nothing is kept, so each old-path use warns. Any other name raises :class:`AttributeError` as Python's
    own lookup would.
    """
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if moved:
            warnings.warn(
                f"{package}.{name} moved to {source}.{name}; import it from there",
                DeprecationWarning,
                stacklevel=2,
            )
        value = getattr(importlib.import_module(source), name)
        if not moved:
            setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
