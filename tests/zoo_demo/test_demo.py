"""The main job at a tiny scale: every stage runs for real and the report and figure are written."""

from __future__ import annotations

from pathlib import Path

import pytest

import igpg
import zoo
from igpg.prior import PriorConfig
from igpg.tokenizer import TokenizerConfig
from zoo_demo.job import DemoConfig, run_demo


def test_main_job_writes_report_and_figure(tmp_path: Path) -> None:
    gen_cfg = igpg.TrainConfig(
        tokenizer=TokenizerConfig(codebook_size=32, levels=2, hidden=64),
        prior=PriorConfig(block_size=64, n_layer=1, n_head=2, n_embd=32),
        tokenizer_steps=30,
        prior_steps=10,
    )
    cfg = DemoConfig(
        tasks=("digits", "digits-invert"),
        held_out=("digits-rot15",),
        per_task=2,
        zoo_steps=10,
        samples=2,
        fine_tune_steps=10,
        generator=gen_cfg,
        import_pretrained=False,
    )
    report = run_demo(tmp_path / "run", cfg)
    text = report.read_text()
    for section in (
        "## Seen tasks",
        "## Held-out tasks",
        "## What `zoo.retrieve_or_generate` returned",
        "Tokenizer fidelity",
        "## Integrity",
    ):
        assert section in text
    assert (tmp_path / "run" / "figure.png").stat().st_size > 10_000
    reg = zoo.Registry(tmp_path / "run" / "registry.db")
    assert reg.stats()["checkpoints"] == 4
    assert [g.status for g in reg.generators()] == ["promoted"]
    assert "| digits | retrieved |" in text  # its own test split retrieves its checkpoint
    # zoo jobs: the job, the zoo it built and the generator it trained, each a recorded run
    runs = {r.kind: r for r in zoo.job_runs(reg)}
    assert {k: r.status for k, r in runs.items()} == {
        "demo": "succeeded",
        "build-tiny-zoo": "succeeded",
        "train": "succeeded",
    }
    assert runs["demo"].message == f"report: {report}" and runs["build-tiny-zoo"].counts["checkpoints"] == 4
    assert runs["train"].message.startswith("stored igpg:v1")
    demo, train = runs["demo"], runs["train"]
    assert demo.finished_at is not None and train.finished_at is not None
    assert demo.started_at <= runs["build-tiny-zoo"].started_at and demo.finished_at >= train.finished_at


def test_task_names_and_held_out_overlap_are_refused_before_anything_is_made(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from zoo.cli import cli
    from zoo_demo.job import check_tasks

    with pytest.raises(zoo.ConfigError, match=r"digits-c01234 \(trained as digits-0to4\)"):
        check_tasks(("digits", "digits-0to4"), ("digits-c01234",))  # the same task spelled otherwise
    with pytest.raises(zoo.DatasetError, match="SOURCE"):
        check_tasks(("digits",), ("mnist-rot400",))
    for args in (
        ["--held-out", "mnist-rot400"],
        ["--tasks", "foo"],
        ["--tasks", "digits", "--held-out", "digits"],
    ):
        out = tmp_path / "run"
        res = CliRunner().invoke(cli, ["demo", "--out", str(out), *args])
        assert res.exit_code != 0 and "Traceback" not in res.output and "Error" in res.output, res.output
        assert not out.exists()  # refused before the folder, the registry or any network
