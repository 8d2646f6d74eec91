"""`zoo train`: training presets with their expected time in --help, and a refusal that says what to run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import igpg
import zoo
from zoo.cli import cli


def run(db: Path, *args: str, code: int = 0) -> str:
    res = CliRunner().invoke(cli, ["--registry", str(db), *args])
    assert res.exit_code == code, res.output
    return res.stdout if "--json" in args else res.output  # progress bars go to stderr


def test_presets_are_named_budgets_and_default_keeps_the_old_settings() -> None:
    quick, small, default = (igpg.TrainConfig.preset(n) for n in ("quick", "small", "default"))
    assert (quick.tokenizer_steps, quick.prior_steps) == (200, 200)
    assert quick.prior.n_embd < small.prior.n_embd < default.prior.n_embd
    assert (default.tokenizer_steps, default.prior_steps, default.tokenizer.levels) == (2000, 1500, 6)
    assert default.prior.n_embd == igpg.TrainConfig().prior.n_embd  # the full-size prior
    assert set(igpg.PRESETS) == {"quick", "small", "default"}
    with pytest.raises(
        zoo.GeneratorError, match="unknown training preset 'huge'; choose one of quick, small"
    ):
        igpg.TrainConfig.preset("huge")


def test_train_help_gives_each_preset_its_expected_time() -> None:
    res = CliRunner().invoke(cli, ["train", "--help"])
    text = "".join(res.output.split())  # as wrapped: spaces and line breaks vary
    assert res.exit_code == 0
    for what in (
        "quick: 200 + 200 steps",
        "about 1-2 min",
        "the zoo demo generator; about 8 min",
        "default: 2,000 + 1,500 steps, the full-size prior; about 16 min (30-50 min on a busy machine)",
        "2 idle CPU cores",
    ):
        assert "".join(what.split()) in text, what


def test_train_on_an_empty_zoo_says_what_to_run(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    run(db, "datasets", "register", "digits", "digits")
    res = CliRunner().invoke(cli, ["--registry", str(db), "train", "--arch", "cnn-tiny", "--promote"])
    assert res.exit_code == 1
    assert res.output.strip().endswith(
        "no checkpoints with a dataset in architecture cnn-tiny to train on: add some with "
        "`zoo add FILE --dataset NAME`, or build a small real zoo of cnn-tiny with `zoo sample-zoo` "
        "(about a minute)"
    )
    assert "dataset=" not in res.output and "Traceback" not in res.output
    assert "[]" in run(db, "generators", "--json")  # nothing stored


def test_train_preset_with_step_overrides(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    run(db, "sample-zoo", "--tasks", "digits,digits-invert", "--per-task", "1", "--steps", "2", "--json")
    args = [
        "train",
        "--arch",
        "cnn-tiny",
        "--preset",
        "quick",
        "--tokenizer-steps",
        "3",
        "--prior-steps",
        "2",
    ]
    out = json.loads(run(db, *args, "--json"))
    assert out["trained_on"] == 2
    reg = zoo.Registry(db, create=False)
    try:
        config = reg.get_generator(out["ref"]).config
    finally:
        reg.close()
    assert (config["tokenizer_steps"], config["prior_steps"]) == (3, 2)  # the flags win
    assert config["prior"]["n_embd"] == 64 and config["tokenizer"]["levels"] == 6  # the rest is the preset's
