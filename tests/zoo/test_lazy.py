"""zoo.lazy_exports: names imported on first use, and moved names that warn."""

from __future__ import annotations

import sys
import types
import warnings

import pytest

import zoo


@pytest.fixture
def package():  # type: ignore[no-untyped-def]
    mod = types.ModuleType("zoo_test_lazy_pkg")
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_a_name_is_imported_on_first_use_and_kept(package) -> None:  # type: ignore[no-untyped-def]
    package.__getattr__, package.__dir__ = zoo.lazy_exports(package.__name__, {"dumps": "json"})
    assert "dumps" not in vars(package) and "dumps" in package.__dir__()
    import json

    assert package.dumps is json.dumps and vars(package)["dumps"] is json.dumps
    with pytest.raises(AttributeError, match="zoo_test_lazy_pkg.*'loads'"):
        _ = package.loads


def test_a_moved_name_warns_on_every_use_naming_where_it_lives(package) -> None:  # type: ignore[no-untyped-def]
    package.__getattr__, _ = zoo.lazy_exports(package.__name__, {"dumps": "json"}, moved=True)
    for _ in range(2):
        with pytest.warns(DeprecationWarning, match=r"zoo_test_lazy_pkg\.dumps moved to json\.dumps"):
            _ = package.dumps
    assert "dumps" not in vars(package)


def test_the_old_paths_of_the_main_job_still_work_and_warn() -> None:
    import zoo_demo

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert zoo_demo.build_tiny_zoo is not None  # the new path: no warning
    with pytest.warns(DeprecationWarning, match="moved to zoo_demo.tinyzoo"):
        from zoo.tinyzoo import build_tiny_zoo
    assert build_tiny_zoo is zoo_demo.build_tiny_zoo
    with pytest.warns(DeprecationWarning, match="moved to zoo_demo.job"):
        from zoo.demo import run_demo
    assert run_demo is zoo_demo.run_demo
