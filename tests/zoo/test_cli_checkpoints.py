"""`zoo add` on foreign checkpoints: --weights, --strip-prefix, and refusals that say the fix with the
flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli
from zoo.errors import ZooError


def cnn_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")).state_dict())


def invoke(db: Path, *args: str):  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(cli, ["--registry", str(db), *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def cli_error(db: Path, *args: str) -> str:
    """The message of a refused command: the ZooError the command raised, or the line the CLI printed for it
    (exit code 1)."""
    try:
        res = CliRunner().invoke(cli, ["--registry", str(db), *args], catch_exceptions=False)
    except ZooError as exc:
        return str(exc)
    assert res.exit_code == 1, res.output
    return res.output


def test_ema_checkpoint_refused_with_the_flag_then_added_with_it(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    state = cnn_state(0)
    ema = {k: v * 0.5 if v.dtype.is_floating_point else v for k, v in state.items()}
    path = tmp_path / "model_best.pth"
    torch.save({"epoch": 4, "state_dict": state, "state_dict_ema": ema}, path)
    msg = cli_error(db, "add", str(path))
    assert "cannot read checkpoint" in msg and "model_best.pth" in msg
    assert "--weights state_dict_ema" in msg and "--weights state_dict " in msg and "weights=" not in msg
    if db.exists():  # the refusal stored nothing
        with zoo.Registry(db) as reg:
            assert reg.stats()["checkpoints"] == 0
    out = json.loads(invoke(db, "add", str(path), "--weights", "state_dict_ema", "--json").output)
    assert out["meta"]["source_weights"] == "state_dict_ema"
    assert out["meta"]["source_weight_sets"] == ["state_dict", "state_dict_ema"]
    shown = json.loads(invoke(db, "show", out["ref"], "--json").output)
    assert shown["meta"]["source_left_out"] == ["state_dict"]
    reg = zoo.Registry(db)
    got = reg.load_state_dict(out["ref"])
    assert all(torch.equal(got[k], v) for k, v in ema.items())
    reg.close()


def test_lightning_ckpt_through_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    state = cnn_state(1)
    path = tmp_path / "last.ckpt"
    torch.save(
        {
            "epoch": 2,
            "state_dict": {f"model.{k}": v for k, v in state.items()},
            "optimizer_states": [],
            "hyper_parameters": {"lr": 0.01},
        },
        path,
    )
    out = json.loads(invoke(db, "add", str(path), "--json").output)
    assert out["arch"] == "cnn-tiny" and out["meta"]["stripped_prefix"] == "model."
    assert out["meta"]["source_weights"] == "state_dict"


def test_strip_prefix_flag_and_its_suggestion(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    state = cnn_state(2)
    path = tmp_path / "with-loss.pt"
    torch.save({**{f"net.{k}": v for k, v in state.items()}, "loss_fn.pos_weight": torch.ones(10)}, path)
    msg = cli_error(db, "add", str(path))
    assert "--strip-prefix net." in msg and "strip_prefix=" not in msg
    out = json.loads(invoke(db, "add", str(path), "--strip-prefix", "net.", "--json").output)
    assert out["meta"]["stripped_prefix"] == "net." and out["meta"]["source_left_out"] == [
        "loss_fn.pos_weight"
    ]
    msg = cli_error(db, "add", str(path), "--strip-prefix", "model.", "--name", "other")
    assert "--strip-prefix model. matches no tensor name" in msg


def test_unknown_weights_say_the_arch_flag(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    path = tmp_path / "odd.pt"
    torch.save({"encoder.a.weight": torch.ones(3, 3), "encoder.b.weight": torch.ones(3)}, path)
    msg = cli_error(db, "add", str(path))
    assert "Pass --arch explicitly" in msg and "arch=" not in msg


def test_add_help_lists_the_new_flags() -> None:
    out = CliRunner().invoke(cli, ["add", "--help"]).output
    assert "--weights KEY" in out and "--strip-prefix PREFIX" in out


def refusal_line(db: Path, *args: str) -> str:
    """A refused command's output: exactly one line, 'Error: ...', on stderr, exit code 1 (zoo's refusal,
    never click's Usage/Try/Error block or Python's wording)."""
    res = CliRunner().invoke(cli, ["--registry", str(db), *args])
    assert res.exit_code == 1, (res.exit_code, res.output)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and res.stdout == "", res.output
    assert "Usage:" not in res.output and "Try '" not in res.output
    return lines[0]


def test_ema_submodule_in_one_state_dict_through_the_cli(tmp_path: Path) -> None:
    """A Lightning module keeping its EMA copy as a submodule: one state_dict, model.* and model_ema.*."""
    db = tmp_path / "registry.db"
    state = cnn_state(3)
    ema = {k: v * 0.5 if v.dtype.is_floating_point else v for k, v in state.items()}
    path = tmp_path / "lit-ema.ckpt"
    torch.save(
        {
            "epoch": 1,
            "state_dict": {
                **{f"model.{k}": v for k, v in state.items()},
                **{f"model_ema.{k}": v for k, v in ema.items()},
            },
        },
        path,
    )
    line = refusal_line(db, "add", str(path))
    assert "--strip-prefix model_ema." in line and "--strip-prefix model. " in line
    assert "strip_prefix=" not in line and "are not part of it" not in line
    out = json.loads(invoke(db, "add", str(path), "--strip-prefix", "model_ema.", "--json").output)
    assert out["meta"]["stripped_prefix"] == "model_ema."
    assert out["meta"]["source_left_out"] == ["state_dict/model.* (10 tensors)"]
    with zoo.Registry(db) as reg:
        got = reg.load_state_dict(out["ref"])
        assert all(torch.equal(got[k], v) for k, v in ema.items())


@pytest.mark.parametrize("metric", ["acc=nan", "acc", "acc=inf", "acc=-inf", "acc=high", "acc=", "acc=1e999"])
def test_bad_metric_is_one_error_line_in_cli_words(tmp_path: Path, metric: str) -> None:
    db = tmp_path / "registry.db"
    path = tmp_path / "x.pt"
    torch.save(cnn_state(4), path)
    line = refusal_line(db, "add", str(path), "--metric", metric)
    assert "write --metric NAME=NUMBER with a finite number" in line and repr(metric) in line
    assert "pass a float" not in line
    if db.exists():  # the refusal stored nothing
        with zoo.Registry(db) as reg:
            assert reg.stats()["checkpoints"] == 0


def test_metric_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    torch.save(cnn_state(4), path)
    line = refusal_line(
        tmp_path / "registry.db", "add", str(path), "--metric", "acc=0.5", "--metric", "acc=0.7"
    )
    assert "'acc' is given twice" in line


def test_weights_on_a_plain_state_dict_says_leave_the_flag_out(tmp_path: Path) -> None:
    path = tmp_path / "cnn_a.pt"
    torch.save(cnn_state(5), path)
    line = refusal_line(tmp_path / "registry.db", "add", str(path), "--weights", "state_dict")
    assert "leave out --weights" in line and "--weights ''" not in line and "weights=" not in line


def test_a_folder_is_refused_by_zoo_not_click(tmp_path: Path) -> None:
    line = refusal_line(tmp_path / "registry.db", "add", str(tmp_path))
    assert "not a regular file" in line


def test_base_refused_for_a_cnn_and_removal_stays_possible(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    paths = []
    for seed in (6, 7):
        paths.append(tmp_path / f"cnn_{seed}.pt")
        torch.save(cnn_state(seed), paths[-1])
    invoke(db, "add", str(paths[0]), "--name", "m1")
    line = refusal_line(db, "add", str(paths[1]), "--name", "m1", "--base", "m1:v1")
    assert "cnn_7.pt" in line and "--base" in line and "--parent" in line and "base=" not in line
    with zoo.Registry(db) as reg:
        assert [r.ref for r in reg.list()] == ["m1:v1"]
    invoke(db, "add", str(paths[1]), "--name", "m1", "--parent", "m1:v1")
    invoke(db, "rm", "m1:v1", "--yes")
    with zoo.Registry(db) as reg:
        assert [r.ref for r in reg.list()] == ["m1:v2"]
