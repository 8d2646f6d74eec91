"""zoo.atomic: the one way zoo writes files (whole or not at all, process-unique temp names, cleanup)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.atomic import atomic_write, staged_file


def test_a_write_replaces_the_file_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "w.bin"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".w.bin.") and tmp.suffix == ".tmp"
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"new" and [p.name for p in target.parent.iterdir()] == ["w.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target, fsync=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["w.bin"]


def test_staged_files_are_unique_and_kept_only_once_published(tmp_path: Path) -> None:
    with staged_file(tmp_path / "tmp") as a, staged_file(tmp_path / "tmp") as b:
        assert a.path != b.path
        a.path.write_bytes(b"a")
        b.path.write_bytes(b"b")
        a.publish(tmp_path / "ab" / "a.bin")
    assert (tmp_path / "ab" / "a.bin").read_bytes() == b"a" and list((tmp_path / "tmp").iterdir()) == []
