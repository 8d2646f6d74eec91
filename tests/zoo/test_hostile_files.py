"""Hostile and broken checkpoints through every public door: ``Registry.add`` (paths, state dicts), the
``zoo add`` command line, and the re-indexing watch-folder import.

Each case (tests/zoo/hostile.py builds them as real files) must end in a zoo error of the expected class
that names the file and the fix, with pickled code never run and the registry (rows and every file under
the blob root) unchanged. Cases that may legitimately read as valid weights (a flipped bit in tensor data:
safetensors has no checksum) must then be stored exactly as they read. And a stored blob changed on disk is
detected on every load and never served.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import zoo
from tests.zoo.hostile import (
    CATEGORIES,
    SPEC,
    Case,
    build_cases,
    snapshot,
    st_bytes,
    tiny_state,
    try_add,
)
from zoo.cli import cli, main


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Case]]:
    """(folder of hostile files, the marker pickled code would create, every case)."""
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "PWNED"
    cases = build_cases(root / "files", marker)
    return root / "files", marker, cases


def fresh_registry(tmp_path: Path, reg: zoo.Registry | None = None) -> zoo.Registry:
    """A registry (a new SQLite file unless given) holding one checkpoint with a dataset, metric, tag and
    alias."""
    reg = reg or zoo.Registry(tmp_path / "registry.db")
    reg.add(
        tiny_state(100), name="keep", dataset="digits", metrics={"accuracy": 0.9}, tags=["ok"], alias="best"
    )
    return reg


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_hostile_inputs_are_refused_by_registry_add(
    category: str, hostile: tuple[Path, Path, list[Case]], registry: zoo.Registry, tmp_path: Path
) -> None:
    """Every case of a category through Registry.add, on the backends of $ZOO_TEST_BACKENDS (default
    SQLite)."""
    _, marker, cases = hostile
    reg = fresh_registry(tmp_path, registry)
    before = snapshot(reg)
    mine = [c for c in cases if c.category == category]
    assert mine
    problems = []
    for case in mine:
        out = try_add(reg, case, marker)
        if out.problem:
            problems.append(f"{case.label}: {out.problem}")
    assert not problems, "\n".join(problems)
    assert not marker.exists()
    assert snapshot(reg) == before
    assert reg.verify(grace_s=0).clean
    reg.close()


def test_every_pickle_container_refuses_code_and_says_how_to_fix(
    hostile: tuple[Path, Path, list[Case]], tmp_path: Path
) -> None:
    """The message of a refused pickle names the file, says it is not weights-only and how to re-save it."""
    _, marker, cases = hostile
    reg = fresh_registry(tmp_path)
    for case in (c for c in cases if c.category == "pickle-code" and c.expect is zoo.UnsafeCheckpointError):
        with pytest.raises(zoo.UnsafeCheckpointError) as err:
            reg.add(case.source)
        msg = str(err.value)
        assert case.source.name in msg and "not a weights-only file" in msg, msg
        assert "torch.save(model.state_dict(), path)" in msg and "never runs pickled code" in msg
        assert err.value.source == str(case.source)
    assert not marker.exists()
    reg.close()


def test_hostile_files_through_the_command_line(
    hostile: tuple[Path, Path, list[Case]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`zoo add FILE` (the console entry point): one line on stderr, exit code 1 (2 for what click refuses
    itself, e.g. a folder), no traceback, nothing stored."""
    _, marker, cases = hostile
    reg = fresh_registry(tmp_path)
    before = snapshot(reg)
    problems = []
    for case in (c for c in cases if c.is_file and c.expect is not None and "\x00" not in str(c.source)):
        # (a NUL byte cannot reach a real command line: argv strings end at it)
        monkeypatch.setattr(
            sys, "argv", ["zoo", "--registry", str(tmp_path / "registry.db"), "add", str(case.source)]
        )
        with pytest.raises(SystemExit) as exit_info:
            main()
        err = capsys.readouterr().err
        one_line = exit_info.value.code == 1 and err.startswith("Error: ") and err.strip().count("\n") == 0
        click_usage = exit_info.value.code == 2 and "Error: Invalid value for 'PATH'" in err
        if not (one_line or click_usage) or "Traceback" in err:
            problems.append(f"{case.label}: exit {exit_info.value.code}, stderr {err[:300]!r}")
    assert not problems, "\n".join(problems)
    assert not marker.exists()
    assert snapshot(reg) == before
    reg.close()


def test_hostile_files_in_a_watch_folder_are_reported_never_stored(
    hostile: tuple[Path, Path, list[Case]], tmp_path: Path
) -> None:
    """The nightly import reads every hostile file (FIFOs and device links are skipped, never opened), reports
    each refused one with zoo's message, stores none of them, and finishes."""
    folder, marker, cases = hostile
    reg = zoo.Registry(tmp_path / "registry.db")
    report = zoo.reindex(reg, watch=[folder], embeddings=False, retrain=False)
    assert report.status == "succeeded" and not report.damaged
    assert not marker.exists()
    bad = dict(report.bad_files)
    refused = [
        c
        for c in cases
        if c.is_file
        and c.expect is not None
        and c.source.parent == folder
        and c.source.is_file()
        and c.source.suffix in (".safetensors", ".pt", ".pth", ".th", ".bin")
    ]
    missing = [c.label for c in refused if str(c.source) not in bad]
    assert not missing, missing
    for path, reason in bad.items():  # the job writes 'TypeName: message' for anything but zoo's own errors
        assert not re.match(r"^[A-Za-z_.]*(Error|Exception|Warning): ", reason), (path, reason)
    # only flipped-bit files that still read as valid weights may be imported (exactly as they read)
    maybe = {str(c.source) for c in cases if c.expect is None and c.is_file}
    imported_sources = {r.meta["source"] for r in reg.list()}
    assert imported_sources <= maybe
    assert reg.stats()["checkpoints"] == len(report.imported) == len(imported_sources)
    assert reg.verify(grace_s=0).clean
    reg.close()


def test_hostile_sidecars_are_reported_never_stored(tmp_path: Path) -> None:
    """A sidecar JSON is as hostile as the weights beside it: names with separators, NaN metrics, tags as one
    string, a non-string architecture, broken JSON, unknown keys, NaN in meta, a reference that is an
    object."""
    watch = tmp_path / "incoming"
    watch.mkdir()
    sidecars = {
        "traversal": {"name": "../../etc/passwd"},
        "nan-metric": {"metrics": {"accuracy": float("nan")}},
        "text-metric": {"metrics": {"accuracy": "high"}},
        "metrics-list": {"metrics": [1, 2]},
        "tags-string": {"tags": "pretrained"},
        "tag-control": {"tags": ["ok", "bad\x1b[2J"]},
        "arch-number": {"arch": 5},
        "arch-json": {"arch": "{not json"},
        "dataset-slash": {"dataset": "a/b"},
        "alias-nul": {"alias": "x\x00"},
        "origin": {"origin": "stolen"},
        "parent-object": {"parent": {"$ne": None}},
        "meta-nan": {"meta": {"loss": float("inf")}},
        "meta-list": {"meta": [1]},
        "unknown-key": {"__class__": "os.system"},
    }
    for i, (stem, side) in enumerate(sidecars.items()):
        save_file(tiny_state(200 + i), watch / f"{stem}.safetensors")
        (watch / f"{stem}.json").write_text(
            json.dumps(side)
        )  # json writes NaN/Infinity, as a careless tool would
    (watch / "broken-json.json").write_text('{"name": ')
    save_file(tiny_state(300), watch / "broken-json.safetensors")
    reg = zoo.Registry(tmp_path / "registry.db")
    report = zoo.reindex(reg, watch=[watch], embeddings=False, retrain=False)
    assert report.imported == () and reg.stats()["checkpoints"] == 0 and reg.stats()["blobs"] == 0
    bad = {Path(p).stem: reason for p, reason in report.bad_files}
    assert set(bad) == set(sidecars) | {"broken-json"}
    for stem, reason in bad.items():
        assert not re.match(r"^[A-Za-z_.]*(Error|Exception): ", reason), (stem, reason)
    assert "invalid name" in bad["traversal"] and "path separator" in bad["traversal"]
    assert "finite" in bad["nan-metric"] and "tags must be a list" in bad["tags-string"]
    assert reg.verify(grace_s=0).clean
    reg.close()


@pytest.mark.backends("sqlite", "postgresql")
def test_hostile_arguments_store_nothing_on_every_backend(registry: zoo.Registry, tmp_path: Path) -> None:
    """Names, tags, aliases, datasets, metrics and meta that a database would take (PostgreSQL stores NaN and
    any text) are refused before anything is written, on SQLite and PostgreSQL alike."""
    reg = fresh_registry(tmp_path, registry)
    before = snapshot(reg)
    sd = tiny_state(6)
    bad_calls: list[dict[str, Any]] = [{"name": n} for n in ("a/b", "..", "x\x00", "trail\n", "x" * 129)] + [
        {"name": "ok", "tags": ["a/b"]},
        {"name": "ok", "alias": "..\\x"},
        {"name": "ok", "dataset": "../d"},
        {"name": "ok", "metrics": {"acc": float("nan")}},
        {"name": "ok", "metrics": {"acc": float("-inf")}},
        {"name": "ok", "metrics": {"acc\x00": 1.0}},
        {"name": "ok", "meta": {"loss": float("nan")}},
        {"name": "ok", "meta": {"obj": object()}},
        {"name": "ok", "parent": {"id": 1}},
        {"name": "ok", "origin": "x"},
    ]
    for kwargs in bad_calls:
        with pytest.raises(zoo.ZooError):
            reg.add(sd, **kwargs)
        assert snapshot(reg) == before, kwargs
    assert reg.verify(grace_s=0).clean


def test_nonfinite_metrics_and_extras(tmp_path: Path) -> None:
    """NaN/Inf metrics are refused; NaN scalars found beside the weights (best_prec1) are left out, not
    stored."""
    reg = zoo.Registry(tmp_path / "registry.db")
    for bad in (float("nan"), float("inf"), "0.9", None, [0.9]):
        with pytest.raises(zoo.ZooError, match="metric 'accuracy'"):
            reg.add(tiny_state(), name="m", metrics={"accuracy": bad})
    with pytest.raises(zoo.ZooError, match="metric name"):
        reg.add(tiny_state(), name="m", metrics={"": 1.0})
    assert reg.stats()["checkpoints"] == 0 and reg.stats()["blobs"] == 0
    path = tmp_path / "ckpt.pt"
    torch.save(
        {
            "state_dict": tiny_state(),
            "best_prec1": torch.tensor(float("nan")),
            "epoch": 7,
            "acc": float("inf"),
            "note": "x" * 5000,
            "big": 2**80,
        },
        path,
    )
    rec = reg.add(path)
    assert rec.meta["source_extra"] == {"epoch": 7}
    reg.close()


def test_float16_and_float64_weights_are_kept_as_they_are(tmp_path: Path) -> None:
    """Dtypes zoo stores are not 'hostile': a float16 checkpoint stays float16 and loads into float32
    modules."""
    reg = zoo.Registry(tmp_path / "registry.db")
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        sd = {k: v.to(dtype) if v.dtype.is_floating_point else v for k, v in tiny_state(7).items()}
        rec = reg.add(sd, name=f"w-{str(dtype).split('.')[1]}", arch=SPEC)
        assert all(t.dtype == dtype for t in reg.load_state_dict(rec).values() if t.is_floating_point())
        assert reg.load(rec)(torch.zeros(1, 1, 28, 28)).dtype == torch.float32
    reg.close()


# ----------------------------------------------------------------------------------------------------
# integrity: a stored blob changed on disk is detected on every load and never served
# ----------------------------------------------------------------------------------------------------
def test_blob_replaced_by_other_valid_weights_of_the_same_size_is_never_served(tmp_path: Path) -> None:
    reg = zoo.Registry(tmp_path / "registry.db")
    a = reg.add(tiny_state(1), name="a")
    b = reg.add(tiny_state(2), name="b")
    path_a, path_b = reg.blobs.path(a.sha256), reg.blobs.path(b.sha256)
    assert path_a.stat().st_size == path_b.stat().st_size
    path_a.write_bytes(path_b.read_bytes())  # a perfectly valid safetensors file: only the hash tells
    for load in (reg.load, reg.load_state_dict, lambda ref: reg.blobs.read(reg.get(ref).sha256)):
        with pytest.raises(zoo.IntegrityError, match="does not match its hash") as err:
            load("a")
        assert err.value.sha256 == a.sha256 and "registry.verify()" in str(err.value)
        assert "`zoo verify`" in str(err.value.for_cli())
    assert torch.equal(reg.load_state_dict("b")["features.0.weight"], tiny_state(2)["features.0.weight"])
    rep = reg.verify()
    assert rep.corrupt == (a.sha256,) and rep.ok == 1
    res = CliRunner().invoke(cli, ["--registry", str(tmp_path / "registry.db"), "load-check", "a", "--json"])
    assert res.exit_code != 0
    res = CliRunner().invoke(cli, ["--registry", str(tmp_path / "registry.db"), "verify"])
    assert res.exit_code == 1 and f"corrupt  {a.sha256}" in res.output
    reg.close()


def test_every_flipped_bit_of_a_stored_blob_is_detected(tmp_path: Path) -> None:
    reg = zoo.Registry(tmp_path / "registry.db")
    rec = reg.add(tiny_state(1), name="a")
    gen = reg.add_generator(
        st_bytes({"w": torch.arange(64, dtype=torch.float32)}),
        families=["cnn"],
        config={},
        metrics={},
        trained_on=[rec.id],
    )
    rng = random.Random(0)
    for sha, load in (
        (rec.sha256, lambda: reg.load("a")),
        (gen.sha256, lambda: reg.load_generator_bytes(gen.ref)),
    ):
        path = reg.blobs.path(sha)
        good = path.read_bytes()
        for pos in sorted({0, 7, 8, len(good) - 1, *(rng.randrange(len(good)) for _ in range(12))}):
            bad = bytearray(good)
            bad[pos] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(bad))
            with pytest.raises(zoo.IntegrityError):
                load()
            assert reg.verify().corrupt == (sha,)
        path.write_bytes(good[:-1])  # truncated
        with pytest.raises(zoo.IntegrityError):
            load()
        path.write_bytes(good)
        load()
    assert reg.verify().clean
    reg.close()
