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


def cnn_file(tmp_path: Path, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    model = zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))
    path = tmp_path / f"net{seed}.pt"
    torch.save(model.state_dict(), path)
    return path


QUICK = ["--preset", "quick", "--tokenizer-steps", "2", "--prior-steps", "2"]


def test_train_skips_checkpoints_whose_dataset_has_no_vector(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "registry.db"
    run(db, "sample-zoo", "--tasks", "digits,digits-invert", "--per-task", "1", "--steps", "2", "--json")
    run(db, "add", str(cnn_file(tmp_path, 1)), "--name", "resnet20", "--dataset", "cifar10")  # a name only
    with caplog.at_level("WARNING", logger="igpg.registry_io"):
        out = json.loads(run(db, "train", "--arch", "cnn-tiny", *QUICK, "--json"))
    assert out["trained_on"] == 2  # the cifar10 checkpoint is left out, not fatal
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "skipping 1 checkpoint(s) of dataset 'cifar10' (resnet20:v1)" in warned
    assert "`zoo datasets register cifar10 SOURCE`" in warned


def test_train_with_only_vectorless_datasets_names_the_command(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    run(db, "add", str(cnn_file(tmp_path, 1)), "--dataset", "digitz")  # mistyped: no such data
    res = CliRunner().invoke(cli, ["--registry", str(db), "train", "--arch", "cnn-tiny", *QUICK])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and "refresh_stale" not in res.output
    assert "have no pixels vector" in res.output or "vector" in res.output
    assert res.output.strip().endswith("`zoo datasets register digitz SOURCE`")
    with pytest.raises(zoo.GeneratorError, match=r"registry.register_dataset\('digitz', data\)"):
        reg = zoo.Registry(db, create=False)
        try:
            igpg.train_on_registry(reg, arch="cnn-tiny", config=igpg.TrainConfig.preset("quick"))
        finally:
            reg.close()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--k", "0"], "Invalid value for '--k': 0 is not in the range x>=1"),
        (["--k", "-1"], "Invalid value for '--k': -1 is not in the range x>=1"),
        (["--device", "tpu"], "Invalid value for '--device': 'tpu' is not one of 'auto', 'cpu', 'cuda'"),
        (["--name", "bad name"], "invalid name 'bad name': generator name: it contains a character"),
    ],
)
def test_train_refuses_bad_flags_before_reading_or_training(
    tmp_path: Path, args: list[str], said: str
) -> None:
    db = tmp_path / "registry.db"
    res = CliRunner().invoke(cli, ["--registry", str(db), "train", "--arch", "cnn-tiny", *args])
    assert res.exit_code in (1, 2), res.output
    assert said in res.output and "Traceback" not in res.output
    assert not db.exists()  # refused before the registry was even opened (a fresh one is not left behind)


def test_train_on_cuda_without_a_gpu_says_use_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    res = CliRunner().invoke(cli, ["--registry", str(tmp_path / "r.db"), "train", "--device", "cuda"])
    assert res.exit_code == 1
    assert res.output.strip() == (
        "Error: device 'cuda': no CUDA device is available here; use --device cpu (or 'auto')"
    )


def test_library_refuses_bad_k_device_and_name_with_zoo_errors(tmp_path: Path) -> None:
    reg = zoo.Registry(tmp_path / "r.db")
    try:
        with pytest.raises(zoo.GeneratorError, match="k=0: the chunk size must be"):
            igpg.train_on_registry(reg, arch="cnn-tiny", k=0)
        with pytest.raises(zoo.GeneratorError, match="device 'tpu'"):
            igpg.train_on_registry(reg, arch="cnn-tiny", config=igpg.TrainConfig(device="tpu"))
        with pytest.raises(zoo.InvalidNameError):
            igpg.train_on_registry(reg, arch="cnn-tiny", name="bad name")
    finally:
        reg.close()
