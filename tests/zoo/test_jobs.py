"""Long work recorded as job runs (zoo.recording, zoo.recorded) and listed by `zoo jobs`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import zoo
from zoo.cli import cli
from zoo.jobs import start_run


@pytest.fixture
def reg(tmp_path: Path):  # type: ignore[no-untyped-def]
    with zoo.Registry(tmp_path / "registry.db") as r:
        yield r


def test_a_recorded_block_ends_succeeded_with_its_summary(reg: zoo.Registry) -> None:
    assert zoo.current_run() is None
    with zoo.recording(reg, "build") as run:
        assert zoo.current_run() is run
        [running] = zoo.job_runs(reg)
        assert (running.id, running.kind, running.status, running.finished_at) == (
            run.id,
            "build",
            "running",
            None,
        )
        run.update(counts={"done": 1}, message="half way")
        assert zoo.job_runs(reg)[0].message == "half way"  # visible while it runs
        run.update(counts={"done": 2}, message="built 2")
    assert zoo.current_run() is None
    [rec] = zoo.job_runs(reg)
    assert (rec.status, dict(rec.counts), rec.message) == ("succeeded", {"done": 2}, "built 2")
    assert rec.finished_at is not None and rec.duration_s is not None and rec.duration_s >= 0


def test_a_failure_is_recorded_and_raised_on(reg: zoo.Registry) -> None:
    with pytest.raises(ValueError, match="no data"), zoo.recording(reg, "build") as run:
        run.update(message="step 3/10")
        raise ValueError("no data")
    [rec] = zoo.job_runs(reg)
    assert rec.status == "failed" and rec.message == "ValueError: no data (step 3/10)"


def test_an_interruption_is_recorded_killed(reg: zoo.Registry) -> None:
    with pytest.raises(KeyboardInterrupt), zoo.recording(reg, "train"):
        raise KeyboardInterrupt
    assert [(r.status, r.message) for r in zoo.job_runs(reg)] == [
        ("killed", "interrupted (KeyboardInterrupt)")
    ]


def test_a_run_whose_process_died_is_marked_killed_by_the_next_of_its_kind(reg: zoo.Registry) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = start_run(reg, "train", f"{socket.gethostname()}:{int(gone.stdout)}:cafe")
    alive = start_run(reg, "train", zoo.jobs.new_holder())  # this process: still running, left alone
    other = start_run(reg, "build", f"{socket.gethostname()}:{int(gone.stdout)}:beef")  # another kind
    listed = CliRunner().invoke(cli, ["--registry", reg.url, "jobs"])
    assert listed.exit_code == 0 and "running?" in listed.output  # shown as such before anyone marks it
    with zoo.recording(reg, "train"):
        pass
    status = {r.id: r.status for r in zoo.job_runs(reg)}
    assert (status[dead.id], status[alive.id], status[other.id]) == ("killed", "running", "running")
    assert "found killed" in zoo.jobs.get_run(reg, dead.id).message


def test_recorded_finds_the_registry_argument_or_opens_one_at_a_path(
    reg: zoo.Registry, tmp_path: Path
) -> None:
    @zoo.recorded("build", summary=lambda n: ({"checkpoints": n}, f"{n} checkpoints"))
    def build(registry: zoo.Registry, n: int = 3) -> int:
        assert zoo.current_run() is not None and zoo.current_run().kind == "build"  # type: ignore[union-attr]
        return n

    assert build(reg) == 3 and build.__name__ == "build"
    assert [(r.kind, r.status, r.message, dict(r.counts)) for r in zoo.job_runs(reg)] == [
        ("build", "succeeded", "3 checkpoints", {"checkpoints": 3})
    ]

    @zoo.recorded("demo", registry=lambda a: Path(a["out"]) / "registry.db")
    def demo(out: str) -> str:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        demo(str(tmp_path / "run"))
    with zoo.Registry(tmp_path / "run" / "registry.db") as other:
        assert [(r.kind, r.status) for r in zoo.job_runs(other)] == [("demo", "failed")]


def test_recording_never_stops_the_work(reg: zoo.Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(reg.repos.jobs, "start_run", broken)
    with zoo.recording(reg, "train") as run:
        run.update(message="not stored")
    assert run.id is None and zoo.job_runs(reg) == []


def test_zoo_jobs_shows_each_kind_with_its_summary(reg: zoo.Registry) -> None:
    with zoo.recording(reg, "train") as run:
        run.update(counts={"checkpoints": 4}, message="stored igpg:v1 (candidate)")
    with zoo.recording(reg, "reindex"):
        pass
    out = CliRunner().invoke(cli, ["--registry", reg.url, "jobs"]).output
    assert "SUMMARY" in out and "checkpoints=4" in out and "stored igpg:v1 (candidate)" in out
    only = json.loads(
        CliRunner().invoke(cli, ["--registry", reg.url, "jobs", "--kind", "train", "--json"]).output
    )
    assert [r["kind"] for r in only] == ["train"]
    refused = CliRunner().invoke(cli, ["--registry", reg.url, "jobs", "--limit", "0"])
    assert refused.exit_code == 2 and "--limit" in refused.output
