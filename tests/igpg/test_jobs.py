"""Generator training is a recorded job (`zoo jobs`): `zoo train` and igpg.train_on_registry, and how long
each stage expects."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import igpg
import zoo
from igpg.prior import PriorConfig
from igpg.tokenizer import TokenizerConfig
from zoo.cli import cli

TINY = igpg.TrainConfig(
    tokenizer=TokenizerConfig(codebook_size=16, levels=1, hidden=32),
    prior=PriorConfig(block_size=32, n_layer=1, n_head=2, n_embd=32),
    tokenizer_steps=25,
    prior_steps=25,
    tokenizer_batch=64,
    prior_batch=2,
)


@pytest.fixture
def reg(tmp_path: Path):  # type: ignore[no-untyped-def]
    spec = zoo.resolve_arch("cnn-tiny")
    with zoo.Registry(tmp_path / "registry.db") as r:
        r.register_dataset(
            "noise", zoo.as_dataset((torch.rand(20, 1, 28, 28), torch.arange(20) % 10)), encoders=["pixels"]
        )
        for seed in range(2):
            torch.manual_seed(seed)
            r.add(zoo.get_family("cnn").build(spec), name=f"noise-s{seed}", arch=spec, dataset="noise")
        r.add(zoo.get_family("cnn").build(spec), name="no-dataset", arch=spec)
        yield r


def test_training_is_recorded_with_what_it_stored_and_each_stage_says_how_long_it_expects(
    reg: zoo.Registry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="igpg.train.expected"):
        _, rec = igpg.train_on_registry(reg, arch="cnn-tiny", k=64, config=TINY, progress=False)
    said = [r.getMessage() for r in caplog.records if r.name == "igpg.train.expected"]
    assert [m.split(":")[0] for m in said] == ["stage 1 (tokenizer)", "stage 2 (prior)"], said
    assert all("25 steps, expected about" in m and "s/step on cpu" in m for m in said)
    [run] = zoo.job_runs(reg)
    assert (run.kind, run.status) == ("train", "succeeded") and run.duration_s is not None
    assert dict(run.counts) == {"checkpoints": 2, "tokenizer_steps": 25, "prior_steps": 25}
    assert run.message.startswith(f"stored {rec.ref} (candidate): tokenizer ") and "(loss " in run.message


def test_a_training_that_fails_is_recorded_failed(reg: zoo.Registry) -> None:
    with pytest.raises(zoo.GeneratorError, match="no checkpoints with a dataset"):
        igpg.train_on_registry(reg, family="vit", config=TINY, progress=False)
    [run] = zoo.job_runs(reg, kind="train")
    assert run.status == "failed" and "GeneratorError: no checkpoints with a dataset" in run.message


def test_zoo_train_has_presets_with_their_expected_time_and_is_listed_by_zoo_jobs(reg: zoo.Registry) -> None:
    from igpg import PRESETS

    shown = " ".join(CliRunner().invoke(cli, ["train", "--help"], terminal_width=200).output.split())
    assert all(f"{name}: {text}" in shown for name, text in PRESETS.items())
    assert "2 idle CPU cores" in shown
    args = ["--registry", reg.url, "train", "--arch", "cnn-tiny", "--k", "64", "--preset", "quick"]
    res = CliRunner().invoke(cli, [*args, "--tokenizer-steps", "3", "--prior-steps", "3", "--json"])
    assert res.exit_code == 0, res.output
    stored = json.loads(res.output[res.output.index("{") :])
    assert stored["ref"] == "igpg:v1"
    jobs = json.loads(CliRunner().invoke(cli, ["--registry", reg.url, "jobs", "--json"]).output)
    assert [(j["kind"], j["status"], j["counts"]["prior_steps"]) for j in jobs] == [("train", "succeeded", 3)]
    assert jobs[0]["message"].startswith("stored igpg:v1")
    gen = reg.get_generator("igpg:v1")
    assert (
        gen.config["prior"]["n_embd"] == igpg.TrainConfig.preset("quick").prior.n_embd
        and gen.config["prior_batch"] == 8
    )
