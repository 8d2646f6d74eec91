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


def test_a_folder_without_model_weights_is_refused_by_zoo_not_click(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    line = refusal_line(tmp_path / "registry.db", "add", str(tmp_path))
    assert "a folder without model weights (looked for model.safetensors" in line


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


# --- the everyday verbs -------------------------------------------------------------------------------------


@pytest.fixture
def two_versions(tmp_path: Path) -> Path:
    """A registry with clf:v1 (on dataset digits, acc=0.5) and its fine-tuned clf:v2, and other:v1 from it."""
    db = tmp_path / "registry.db"
    with zoo.Registry(db) as reg:
        reg.add(cnn_state(0), name="clf", dataset="digits", metrics={"acc": 0.5})
        tuned = cnn_state(0)
        tuned["features.0.weight"] = tuned["features.0.weight"] * 1.5
        reg.add(tuned, name="clf", parent="clf:v1", origin="fine-tuned")
        reg.add(cnn_state(2), name="other", parent="clf:v2", origin="fine-tuned")
    return db


def test_tag_untag_metrics_and_history(two_versions: Path) -> None:
    db = two_versions
    assert invoke(db, "tag", "clf:v2", "prod", "exp").output == "clf:v2 tags: exp, prod\n"
    assert invoke(db, "untag", "clf:v2", "exp").output == "clf:v2 tags: prod\n"
    assert invoke(db, "metrics", "clf:v1").output == "clf:v1 metrics: acc=0.5\n"
    out = invoke(db, "metrics", "clf:v1", "top1=91.2", "acc=0.6").output
    assert out == "clf:v1 metrics: acc=0.6, top1=91.2\n"
    got = json.loads(invoke(db, "metrics", "clf:v1", "--rm", "acc", "--json").output)
    assert got == {"ref": "clf:v1", "metrics": {"top1": 91.2}}
    table = invoke(db, "history", "clf:v1").output.splitlines()
    assert table[0].split() == ["WHEN", "WHO", "WHAT"]
    assert "added (imported) on digits" in table[1]
    assert "set acc 0.5 -> 0.6; set top1 - -> 91.2" in table[2] and "removed acc (was 0.6)" in table[3]
    events = json.loads(invoke(db, "history", "clf:v2", "--json").output)
    assert [e["action"] for e in events] == ["added", "tagged", "untagged"]


@pytest.mark.parametrize(
    "args, says",
    [
        (("untag", "clf:v2", "nope"), "clf:v2 has no tag 'nope' (its tags: none); nothing was changed"),
        (("tag", "clf", "x"), "clf has 2 versions (v1, v2); name the one to act on, e.g. clf:v2"),
        (("metrics", "clf:v1", "acc=abc"), "cannot read 'acc=abc': write NAME=NUMBER"),
        (("metrics", "clf:v1", "--rm", "loss"), "clf:v1 has no metric 'loss' (its metrics: acc)"),
        (("metrics", "clf:v1", "acc=1", "--rm", "acc"), "acc is both set and removed"),
        (("unalias", "clf", "best"), "no alias named 'clf@best' in the registry; clf has no aliases"),
        (("list", "--dataset", "digitz"), "no dataset named 'digitz'"),
        (("list", "--family", "nofam"), "unknown family 'nofam'; known families: cnn"),
        (("search", "--family", "nofam"), "unknown family 'nofam'"),
        (("export", "clf:v1", "out.weights"), "pass --format safetensors (or --format pt)"),
        (("lineage", "nothere"), "no checkpoint named 'nothere'"),
        (("diff", "clf:v1", "clf:v9"), "versions of clf run from v1 to v2"),
    ],
)
def test_refusals_are_one_line_in_cli_words_and_change_nothing(
    two_versions: Path, args: tuple[str, ...], says: str
) -> None:
    def state() -> tuple:
        with zoo.Registry(two_versions) as reg:
            return [(r.ref, dict(r.metrics), r.tags) for r in reg.list()], [
                len(reg.history(r.id)) for r in reg.list()
            ]

    before = state()
    line = refusal_line(two_versions, *args)
    assert says in line and "=True" not in line, line
    assert state() == before


def test_limit_must_be_positive(two_versions: Path) -> None:
    for command in ("list", "search"):
        res = CliRunner().invoke(cli, ["--registry", str(two_versions), command, "--limit", "-1"])
        assert res.exit_code == 2 and "-1 is not in the range x>=1" in res.output


def test_list_by_dataset(two_versions: Path) -> None:
    out = invoke(two_versions, "list", "--dataset", "digits").output.splitlines()
    # the fine-tuned versions inherit their parent's dataset
    assert [line.split()[0] for line in out[1:]] == ["other:v1", "clf:v2", "clf:v1"]
    with zoo.Registry(two_versions) as reg:
        reg.add(cnn_state(3), name="elsewhere", dataset="digits-invert")
    out = invoke(two_versions, "list", "--dataset", "digits-invert").output.splitlines()
    assert [line.split()[0] for line in out[1:]] == ["elsewhere:v1"]


def test_unalias_both_spellings(two_versions: Path) -> None:
    db = two_versions
    invoke(db, "alias", "clf:v2", "best")
    assert "clf@best points at clf:v2, not clf:v1" in refusal_line(db, "unalias", "clf:v1", "best")
    assert invoke(db, "unalias", "clf@best").output == "removed clf@best (pointed at clf:v2)\n"
    invoke(db, "alias", "clf:v1", "best")
    assert json.loads(invoke(db, "unalias", "clf", "best", "--json").output)["version"] == 1


def test_lineage_prints_a_tree_marking_the_ref(two_versions: Path) -> None:
    out = invoke(two_versions, "lineage", "clf:v2").output
    assert out == (
        "clf:v1  cnn-tiny  imported  on digits\n"
        "└── clf:v2  cnn-tiny  fine-tuned  on digits  *\n"  # versions inherit their parent's dataset
        "    └── other:v1  cnn-tiny  fine-tuned  on digits\n"
        "versions of clf: v1, v2 *\n"
    )
    data = json.loads(invoke(two_versions, "lineage", "other", "--json").output)
    assert data["ancestors"] == ["clf:v2", "clf:v1"] and data["tree"]["children"][0]["ref"] == "clf:v2"


def test_diff_lists_the_tensors_that_differ(two_versions: Path) -> None:
    lines = invoke(two_versions, "diff", "clf:v1", "clf:v2").output.splitlines()
    assert (
        lines[0].startswith("clf:v1 -> clf:v2: ") and "1 changed, 0 reshaped, 0 added, 0 removed" in lines[0]
    )
    assert lines[1].split() == ["TENSOR", "CHANGE", "SHAPE", "REL_L2", "MAX_ABS"]
    assert lines[2].split()[:4] == ["features.0.weight", "changed", "8x1x5x5", "0.5"] and len(lines) == 3
    data = json.loads(invoke(two_versions, "diff", "clf:v1", "clf:v2", "--json").output)
    assert data["counts"]["changed"] == 1 and data["tensors"][0]["rel_l2"] == pytest.approx(0.5)
    assert invoke(two_versions, "diff", "clf:v1", "clf:v1").output.startswith("clf:v1 -> clf:v1: identical")


def test_export_through_the_cli(two_versions: Path, tmp_path: Path) -> None:
    import hashlib

    out = tmp_path / "clf.safetensors"
    line = invoke(two_versions, "export", "clf:v1", str(out)).output
    assert line.startswith(f"exported clf:v1 to {out} (")
    with zoo.Registry(two_versions) as reg:
        sha = reg.get("clf:v1").sha256
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha
    refused = refusal_line(two_versions, "export", "clf:v2", str(out))
    assert "already exists; choose another file, or add --force to replace it" in refused
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha  # untouched
    data = json.loads(invoke(two_versions, "export", "clf:v2", str(out), "--force", "--json").output)
    assert data["format"] == "safetensors" and hashlib.sha256(out.read_bytes()).hexdigest() == data["sha256"]
    pt = json.loads(invoke(two_versions, "export", "clf:v2", str(tmp_path / "w.bin"), "--json").output)
    assert pt["format"] == "pt" and "features.0.weight" in torch.load(pt["path"], weights_only=True)


def test_add_exist_ok_says_the_weights_were_already_there(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    path = tmp_path / "w.pt"
    torch.save(cnn_state(0), path)
    assert invoke(db, "add", str(path), "--name", "w").output.startswith("added w:v1: ")
    out = invoke(db, "add", str(path), "--name", "w", "--exist-ok").output
    assert out.startswith("w:v1 already holds these weights (not added again)")
    assert (
        json.loads(invoke(db, "add", str(path), "--name", "w", "--exist-ok", "--json").output)["added"]
        is False
    )


# --- zoo get REF -------------------------------------------------------------------------------------------


def test_get_a_reference_serves_that_checkpoint_as_it_is(two_versions: Path, tmp_path: Path) -> None:
    import hashlib

    out = tmp_path / "got.safetensors"
    text = invoke(two_versions, "get", "clf:v1", "--out", str(out)).output
    assert "source: registry" in text and "ref: clf:v1" in text
    with zoo.Registry(two_versions) as reg:
        assert hashlib.sha256(out.read_bytes()).hexdigest() == reg.get("clf:v1").sha256
    data = json.loads(
        invoke(
            two_versions, "get", "clf:v1", "--dataset", "digits", "--out", str(out), "--force", "--json"
        ).output
    )
    assert data["ref"] == "clf:v1" and data["source"] == "registry"


@pytest.mark.parametrize(
    "args, says",
    [
        (
            ("get", "clf:v1", "--generate"),
            "clf:v1 names one registered checkpoint, which is served as it is; "
            "--generate does not apply to it",
        ),
        (("get", "clf:v1", "--dataset", "cifar10"), "clf:v1 is registered with dataset digits, not cifar10"),
        (("get", "clf:v7"), "versions of clf run from v1 to v2"),
        (
            ("get", "clf", "--dataset", "digits"),
            "clf is the name of a registered checkpoint, not an architecture; run `zoo get clf:v2`",
        ),
    ],
)
def test_get_a_reference_refusals(two_versions: Path, args: tuple[str, ...], says: str) -> None:
    assert says in refusal_line(two_versions, *args)


def test_refused_add_leaves_no_empty_blob_folder(two_versions: Path, tmp_path: Path) -> None:
    blobs = two_versions.with_suffix(".blobs")
    before = sorted(p.relative_to(blobs) for p in blobs.rglob("*") if p.name != "tmp")
    path = tmp_path / "new.pt"
    torch.save(cnn_state(9), path)
    assert "no checkpoint named 'missing'" in refusal_line(
        two_versions, "add", str(path), "--parent", "missing"
    )
    assert sorted(p.relative_to(blobs) for p in blobs.rglob("*") if p.name != "tmp") == before
