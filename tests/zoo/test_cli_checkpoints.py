"""`zoo add` on foreign checkpoints: --weights, --strip-prefix, and refusals that say the fix with the flags."""

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
    torch.save({"epoch": 2, "state_dict": {f"model.{k}": v for k, v in state.items()}, "optimizer_states": [],
                "hyper_parameters": {"lr": 0.01}}, path)
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
    assert out["meta"]["stripped_prefix"] == "net." and out["meta"]["source_left_out"] == ["loss_fn.pos_weight"]
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
