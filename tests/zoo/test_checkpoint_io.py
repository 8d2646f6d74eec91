"""Foreign checkpoint conventions through ``Registry.add``: weights nested under ``state_dict``/``model``/...,
name prefixes (Lightning's ``model.``, DDP's ``module.``, torch.compile's ``_orig_mod.``, any shared prefix),
several weight sets (training + EMA/SWA), Lightning ``.ckpt`` files in the nightly import. Real families
(cnn-tiny, resnet20), real files written with ``torch.save`` / safetensors; what was chosen is in the meta,
and a refusal leaves the registry as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo import Registry
from zoo.checkpoint_io import read_checkpoint, shared_prefixes
from zoo.errors import ArchitectureMismatchError, CheckpointError, UnknownFamilyError, ZooError


def cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))


def sd(seed: int = 0) -> dict[str, torch.Tensor]:
    return dict(cnn(seed).state_dict())


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


def optimizer_state(model: torch.nn.Module) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.zeros(1, 1, 28, 28)).sum().backward()
    opt.step()
    return opt.state_dict()


def lightning_ckpt(model: torch.nn.Module, prefix: str = "model.") -> dict:
    """What ``Trainer.save_checkpoint`` writes for a LightningModule holding the network as ``self.model``."""
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": prefixed(dict(model.state_dict()), prefix),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_acc'}": {
                "best_model_score": torch.tensor(0.91),
                "best_model_path": "epoch=3.ckpt",
            }
        },
        "optimizer_states": [optimizer_state(model)],
        "lr_schedulers": [],
        "hyper_parameters": {"lr": 0.1, "arch": "cnn-tiny"},
    }


def same(reg: Registry, ref: str, state: dict[str, torch.Tensor]) -> bool:
    got = reg.load_state_dict(ref)
    return set(got) == set(state) and all(torch.equal(got[k], v) for k, v in state.items())


def snapshot(reg: Registry) -> tuple:
    files = (
        sorted(p.name for p in reg.blobs.root.rglob("*") if p.is_file()) if reg.blobs.root.exists() else []
    )
    return [r.ref for r in reg.list()], reg.stats()["checkpoints"], files


def refused(reg: Registry, exc: type[ZooError], checkpoint: object, **kwargs: object) -> str:
    """The message of the refusal of ``checkpoint``; the registry is unchanged by it."""
    before = snapshot(reg)
    with pytest.raises(exc) as info:
        reg.add(checkpoint, **kwargs)  # type: ignore[arg-type]
    assert snapshot(reg) == before
    return str(info.value)


# --- PyTorch Lightning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [None, "cnn-tiny"])
def test_lightning_ckpt_is_read_and_what_was_taken_is_recorded(
    registry: Registry, tmp_path: Path, arch: str | None
) -> None:
    model = cnn(1)
    path = tmp_path / "epoch=3-step=120.ckpt"
    torch.save(lightning_ckpt(model), path)
    rec = registry.add(path, arch=arch, dataset="digits")
    assert rec.arch == zoo.resolve_arch("cnn-tiny") and rec.name == "epoch-3-step-120"
    assert same(registry, rec.ref, dict(model.state_dict()))
    meta = rec.meta
    assert meta["source_weights"] == "state_dict" and meta["stripped_prefix"] == "model."
    assert meta["source_extra"] == {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0"}
    assert {"optimizer_states", "lr_schedulers", "hyper_parameters", "callbacks", "loops"} <= set(
        meta["source_left_out"]
    )


@pytest.mark.parametrize(
    "prefix",
    [
        "module.",
        "_orig_mod.",
        "model.",
        "net.",
        "backbone.",
        "model.module.",
        "module._orig_mod.",
        "model.backbone.",
        "_orig_mod.module.model.",
    ],
)
def test_a_prefix_every_name_shares_is_stripped_and_recorded(registry: Registry, prefix: str) -> None:
    state = sd(2)
    rec = registry.add(prefixed(state, prefix), name="net")
    assert rec.meta["stripped_prefix"] == prefix and same(registry, rec.ref, state)
    again = registry.add(prefixed(state, prefix), name="net2", arch="cnn-tiny")  # arch given: the same
    assert again.meta["stripped_prefix"] == prefix and again.sha256 == rec.sha256


def test_ddp_inside_lightning_ckpt(registry: Registry, tmp_path: Path) -> None:
    """A Lightning module saved while its network was still wrapped in DistributedDataParallel."""
    model = cnn(3)
    path = tmp_path / "ddp.ckpt"
    torch.save(lightning_ckpt(model, prefix="model.module."), path)
    rec = registry.add(path)
    assert rec.meta["stripped_prefix"] == "model.module." and same(
        registry, rec.ref, dict(model.state_dict())
    )


def test_prefixed_safetensors_file_resnet(registry: Registry, tmp_path: Path) -> None:
    """A hub-style model.safetensors whose names carry the wrapper's attribute (``model.``), on ResNet-20."""
    torch.manual_seed(0)
    model = zoo.get_family("resnet").build(zoo.resolve_arch("resnet20"))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "model.safetensors"
    save_file(prefixed(state, "model."), path)
    rec = registry.add(path, name="hub-resnet20")
    assert rec.arch.name == "resnet20" and rec.meta["stripped_prefix"] == "model."
    assert "source_weights" not in rec.meta and same(registry, rec.ref, state)


def test_real_pretrained_resnet_records_what_was_taken(registry: Registry, pretrained: Path) -> None:
    """resnet20-12fca82f.th is {"best_prec1": ..., "state_dict": {"module....": ...}}."""
    rec = registry.add(pretrained / "resnet20-12fca82f.th")
    assert rec.arch.name == "resnet20"
    assert rec.meta["source_weights"] == "state_dict" and rec.meta["stripped_prefix"] == "module."
    assert rec.meta["source_extra"]["best_prec1"] > 90 and "source_left_out" not in rec.meta


# --- several weight sets ----------------------------------------------------------------------------------


def ema_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v * 0.5 if v.dtype.is_floating_point else v for k, v in state.items()}


@pytest.mark.parametrize(
    "main, ema",
    [
        ("state_dict", "state_dict_ema"),
        ("model", "model_ema"),
        ("model", "ema"),
        ("state_dict", "ema_state_dict"),
        ("model_state_dict", "swa_model"),
    ],
)
def test_training_and_averaged_weights_are_never_chosen_silently(
    registry: Registry, tmp_path: Path, main: str, ema: str
) -> None:
    model = cnn(4)
    state = dict(model.state_dict())
    averaged = ema_of(state)
    path = tmp_path / "train.pth"
    torch.save(
        {
            "epoch": 9,
            "arch": "cnn-tiny",
            main: state,
            "optimizer": optimizer_state(model),
            "version": 2,
            "metric": 91.5,
            ema: averaged,
        },
        path,
    )
    msg = refused(registry, CheckpointError, path)
    assert "train.pth" in msg and repr(main) in msg and repr(ema) in msg and "averaged" in msg
    assert f"weights={ema!r}" in msg and f"weights={main!r}" in msg and "install" not in msg

    rec = registry.add(path, weights=ema)
    assert same(registry, rec.ref, averaged)
    assert rec.meta["source_weights"] == ema and rec.meta["source_weight_sets"] == [main, ema]
    assert main in rec.meta["source_left_out"] and "optimizer" in rec.meta["source_left_out"]
    assert rec.meta["source_extra"] == {"epoch": 9, "arch": "cnn-tiny", "version": 2, "metric": 91.5}
    rec2 = registry.add(path, weights=main)
    assert same(registry, rec2.ref, state) and rec2.meta["source_weights"] == main


def test_timm_ema_with_lightning_prefix_and_nested_sets(registry: Registry) -> None:
    """Weight sets two levels down ("model/ema"), each with the Lightning prefix."""
    state = sd(5)
    ckpt = {
        "model": {
            "state_dict": prefixed(state, "model."),
            "ema": prefixed(ema_of(state), "model."),
            "step": 7,
        }
    }
    msg = refused(registry, CheckpointError, ckpt)
    assert "weights='model/ema'" in msg and "weights='model/state_dict'" in msg
    rec = registry.add(ckpt, name="nested", weights="model/ema")
    assert same(registry, rec.ref, ema_of(state))
    assert rec.meta["source_weights"] == "model/ema" and rec.meta["stripped_prefix"] == "model."
    assert rec.meta["source_extra"] == {"model/step": 7}


def test_teacher_and_student_are_refused_naming_both(registry: Registry) -> None:
    msg = refused(registry, CheckpointError, {"teacher": sd(0), "student": sd(1)})
    assert "weights='teacher' or weights='student'" in msg


def test_weights_names_a_missing_set(registry: Registry) -> None:
    ckpt = {"state_dict": sd(0), "epoch": 1}
    msg = refused(registry, CheckpointError, ckpt, weights="state_dict_ema")
    assert "no weight set 'state_dict_ema'" in msg and "weights='state_dict'" in msg
    refused(registry, ZooError, ckpt, weights=["state_dict"])


def test_deepspeed_module_key_and_flat_dict_with_extras(registry: Registry) -> None:
    state = sd(6)
    rec = registry.add(
        {"module": state, "optimizer": None, "ds_version": "0.14.0", "global_steps": 10}, name="ds"
    )
    assert rec.meta["source_weights"] == "module" and rec.meta["source_left_out"] == ["optimizer"]
    assert rec.meta["source_extra"] == {"ds_version": "0.14.0", "global_steps": 10}
    flat = registry.add({**state, "epoch": 5, "arch": "cnn-tiny", "history": [0.1, 0.2]}, name="flat")
    assert flat.sha256 == rec.sha256 and "source_weights" not in flat.meta
    assert flat.meta["source_extra"] == {"epoch": 5, "arch": "cnn-tiny"} and flat.meta["source_left_out"] == [
        "history"
    ]


# --- prefixes that do not cover every name; near misses ---------------------------------------------------


def test_module_with_a_loss_buffer_says_strip_prefix(registry: Registry, tmp_path: Path) -> None:
    """A LightningModule with ``self.model`` and ``self.criterion = nn.CrossEntropyLoss(weight=...)``."""
    state = sd(7)
    path = tmp_path / "with-loss.ckpt"
    torch.save({"state_dict": {**prefixed(state, "model."), "criterion.weight": torch.ones(10)}}, path)
    for arch in (None, "cnn-tiny"):
        msg = refused(registry, CheckpointError, path, arch=arch)
        assert "strip_prefix='model.'" in msg and "'criterion.weight'" in msg and "install" not in msg
    rec = registry.add(path, strip_prefix="model")  # 'model' means 'model.' here
    assert same(registry, rec.ref, state) and rec.meta["stripped_prefix"] == "model."
    assert rec.meta["source_left_out"] == ["state_dict/criterion.weight"]


def test_swa_averaged_model_state_dict(registry: Registry) -> None:
    """torch.optim.swa_utils.AveragedModel: every name under 'module.' but its 'n_averaged' counter."""
    model = cnn(8)
    swa = torch.optim.swa_utils.AveragedModel(model)
    swa.update_parameters(model)
    raw = dict(swa.state_dict())
    assert "n_averaged" in raw
    msg = refused(registry, CheckpointError, raw)
    assert "strip_prefix='module.'" in msg and "n_averaged" in msg
    rec = registry.add(raw, name="swa", strip_prefix="module.")
    assert rec.meta["source_left_out"] == ["n_averaged"] and same(registry, rec.ref, dict(model.state_dict()))


def test_prefix_near_miss_names_the_layer_not_a_plugin(registry: Registry) -> None:
    state = prefixed(sd(9), "model.")
    state["model.classifier.weight"] = torch.zeros(10, 3)
    for arch in (None, "cnn-tiny"):
        msg = refused(registry, ArchitectureMismatchError, state, arch=arch)
        assert "prefix 'model.'" in msg and "classifier.weight" in msg and "install" not in msg


def test_unknown_weights_still_say_no_family(registry: Registry) -> None:
    msg = refused(
        registry, UnknownFamilyError, {"model.a.weight": torch.ones(3), "model.b.weight": torch.ones(2)}
    )
    assert "'model.'" in msg and "arch=" in msg


def test_strip_prefix_that_matches_nothing(registry: Registry) -> None:
    msg = refused(registry, CheckpointError, sd(0), strip_prefix="model.")
    assert "strip_prefix='model.' matches no tensor name" in msg
    refused(registry, ZooError, sd(0), strip_prefix=3)


def test_strip_prefix_empty_tries_no_prefix(registry: Registry) -> None:
    msg = refused(registry, UnknownFamilyError, prefixed(sd(0), "model."), strip_prefix="")
    assert "arch=" in msg


def test_read_checkpoint_keeps_the_plain_path_plain(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(sd(0), path)
    read = read_checkpoint(path)
    assert read.notes() == {} and read.weights is None and read.stripped_prefix == ""
    assert shared_prefixes(["a.b.c", "a.b.d", "a.e"]) == ["a."] and shared_prefixes(["a.b", "c.d"]) == []
    assert shared_prefixes(["a.b"]) == ["a."]


# --- errors in the words of each interface ----------------------------------------------------------------


def test_spelled_rewrites_only_the_named_keywords() -> None:
    err = CheckpointError(
        "f.pt", "two sets", "pass weights='state_dict_ema' or weights='a b'; see arch=", keywords=("weights",)
    )
    text = str(err.spelled(lambda kw, v: f"--{kw} {v}"))
    assert "--weights state_dict_ema" in text and "--weights a b" in text and "arch=" in text
    assert "Pass --arch explicitly" in str(
        UnknownFamilyError("x", ["cnn"]).spelled(lambda kw, v: f"--{kw}" if v is None else None)
    )


# --- the nightly import -----------------------------------------------------------------------------------


def test_reindex_imports_ckpt_files_and_reads_weights_from_the_sidecar(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.db")
    watch = tmp_path / "incoming"
    watch.mkdir()
    model = cnn(10)
    torch.save(lightning_ckpt(model), watch / "lit.ckpt")
    state = dict(cnn(11).state_dict())
    two = {"state_dict": state, "state_dict_ema": ema_of(state)}
    torch.save(two, watch / "timm-a.pth")
    torch.save(two, watch / "timm-b.pth")
    (watch / "timm-b.json").write_text(json.dumps({"weights": "state_dict_ema", "dataset": "digits"}))
    report = zoo.reindex(reg, watch=[watch])
    assert sorted(report.imported) == ["lit:v1", "timm-b:v1"]
    assert reg.get("lit").meta["stripped_prefix"] == "model." and same(reg, "lit", dict(model.state_dict()))
    assert reg.get("timm-b").meta["source_weights"] == "state_dict_ema" and same(reg, "timm-b", ema_of(state))
    [(bad, reason)] = report.bad_files
    assert bad.endswith("timm-a.pth")
    assert '{"weights": "state_dict_ema"} in the sidecar timm-a.json' in reason and "weights='" not in reason
    reg.close()


# --- several whole networks in one state dict (an EMA copy kept as a submodule, teacher + student) ----------


@pytest.mark.parametrize(
    "main, other, extra",
    [
        ("model.", "model_ema.", {}),  # a Lightning module with a timm ModelEmaV3
        ("model.", "model_ema.module.", {}),  # ... with a timm ModelEmaV2 (the copy under its .module)
        ("net.", "ema_net.", {"criterion.weight": torch.ones(10)}),  # with a loss's buffer beside them
        ("student.", "teacher.", {}),  # distillation
        ("model.student.", "model.teacher.", {"loss.pos_weight": torch.ones(10)}),  # one level down
    ],
)
@pytest.mark.parametrize("arch", [None, "cnn-tiny"])
def test_several_networks_in_one_state_dict_are_never_chosen_silently(
    registry: Registry, tmp_path: Path, main: str, other: str, extra: dict, arch: str | None
) -> None:
    state, copy = sd(20), ema_of(sd(20))
    path = tmp_path / "two.ckpt"
    torch.save(
        {
            "epoch": 7,
            "state_dict": {**prefixed(state, main), **prefixed(copy, other), **extra},
            "optimizer_states": [],
        },
        path,
    )
    msg = refused(registry, CheckpointError, path, arch=arch)
    other_prefix = other.removesuffix("module.")  # what the fix names: the submodule's own prefix
    assert "two.ckpt" in msg and "2 whole networks" in msg and "install" not in msg
    assert f"strip_prefix={main!r}" in msg and f"strip_prefix={other_prefix!r}" in msg
    assert "weights=" not in msg and "are not part of it" not in msg
    if "ema" in other:  # the averaged copy first, as for weight sets
        assert "averaged" in msg
        assert msg.index(f"strip_prefix={other_prefix!r}") < msg.index(f"strip_prefix={main!r}")
    for key in extra:
        assert repr(key) in msg

    for prefix, weights in ((other_prefix, copy), (main, state)):
        name = f"{prefix.strip('.').replace('.', '-')}-{arch}"
        rec = registry.add(path, arch=arch, strip_prefix=prefix, name=name)
        assert same(registry, rec.ref, weights) and rec.arch.name == "cnn-tiny"
        meta = rec.meta
        assert meta["source_weights"] == "state_dict"
        assert meta["stripped_prefix"] in (prefix, prefix + "module.")
        the_other = other_prefix if prefix == main else main
        assert f"state_dict/{the_other}* (10 tensors)" in meta["source_left_out"]
        assert "optimizer_states" in meta["source_left_out"] and meta["source_extra"] == {"epoch": 7}
        named = [e for e in meta["source_left_out"] if "*" not in e and "/" in e]  # one by one
        assert named == [f"state_dict/{k}" for k in extra]


def test_strip_prefix_without_its_dot_is_the_dotted_prefix(registry: Registry) -> None:
    """``strip_prefix='model'`` beside ``model_ema.*`` names means ``model.``, not every name that starts
    with 'model'."""
    state = sd(21)
    rec = registry.add(
        {**prefixed(state, "model."), **prefixed(ema_of(state), "model_ema.")}, name="m", strip_prefix="model"
    )
    assert rec.meta["stripped_prefix"] == "model." and same(registry, rec.ref, state)
    assert rec.meta["source_left_out"] == ["model_ema.* (10 tensors)"]


def test_one_network_beside_other_tensors_still_says_strip_prefix(registry: Registry) -> None:
    """Only one prefix forms a network: the single-network hint, not the several-networks refusal."""
    state = sd(22)
    msg = refused(
        registry,
        CheckpointError,
        {**prefixed(state, "model."), "aux.a.weight": torch.ones(3), "aux.b.weight": torch.ones(2)},
    )
    assert "strip_prefix='model.'" in msg and "whole networks" not in msg


# --- weights= and base= refused in words that fit --------------------------------------------------------


def test_weights_on_a_plain_state_dict_says_leave_it_out(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "cnn_a.pt"
    torch.save(sd(23), path)
    msg = refused(registry, CheckpointError, path, weights="state_dict")
    assert "no weight set 'state_dict'" in msg and "leave out weights=" in msg and "weights=''" not in msg
    assert read_checkpoint(path, weights="").weights == ""  # '' still names the top-level tensors explicitly
    mixed = {**sd(23), "ema": ema_of(sd(23))}  # top-level tensors and a set: '' is the way to name them
    assert "weights='' for the top-level tensors" in refused(registry, CheckpointError, mixed, weights="swa")


def test_weights_naming_a_prefix_says_strip_prefix(registry: Registry) -> None:
    state = sd(24)
    ckpt = {"state_dict": {**prefixed(state, "model."), **prefixed(ema_of(state), "model_ema.")}}
    msg = refused(registry, CheckpointError, ckpt, weights="model_ema")
    assert "weights='state_dict'" in msg and "strip_prefix='model_ema.'" in msg


def test_base_is_refused_for_whole_networks(registry: Registry) -> None:
    """base= is for weights that apply on top of another checkpoint (LoRA): a CNN given one would block the
    removal of its 'base' for nothing. Refused, saying parent=; the registry is unchanged."""
    first = registry.add(sd(25), name="m1")
    msg = refused(registry, ZooError, sd(26), name="m1", base="m1:v1")
    assert "base=" in msg and "parent=" in msg and "cnn-tiny" in msg
    child = registry.add(sd(26), name="m1", parent="m1:v1")  # lineage as parent=
    assert child.ref == "m1:v2" and child.parent_id == first.id and child.base_id is None
    registry.remove(first.ref)  # nothing applies on top of it
    assert [r.ref for r in registry.list()] == ["m1:v2"]
