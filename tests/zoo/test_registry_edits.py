"""The everyday verbs on registered checkpoints through the public API, on every backend: tags, metrics and
aliases edited after add (recorded in each checkpoint's history), the lineage tree, diff, export, datasets
removed, list by dataset; and a registry from before the history table (migration 0006) upgraded."""

from __future__ import annotations

import getpass
import hashlib
from pathlib import Path

import pytest
import torch

import zoo
from zoo import Registry

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def cnn_state(seed: int, shift: float = 0.0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny")).state_dict()
    return {k: v + shift if v.is_floating_point() else v for k, v in state.items()}


def snapshot(reg: Registry) -> tuple:
    recs = [(r.ref, r.dataset, tuple(sorted(r.metrics.items())), r.tags) for r in reg.list()]
    return recs, reg.aliases(), [d.name for d in reg.datasets()], [len(reg.history(r.id)) for r in reg.list()]


# --- tags and metrics, recorded -------------------------------------------------------------------------


def test_tags_and_metrics_edited_after_add_are_recorded_with_old_values(registry: Registry) -> None:
    rec = registry.add(cnn_state(0), name="clf", metrics={"acc": 0.5})
    assert registry.tag("clf", "prod", "exp").tags == ("exp", "prod")
    assert registry.tag("clf", "prod").tags == ("exp", "prod")  # already there: unchanged, not recorded
    assert registry.untag("clf:v1", "exp").tags == ("prod",)
    assert dict(registry.set_metrics(rec.ref, {"acc": 0.6, "top1": 91.2}).metrics) == {
        "acc": 0.6,
        "top1": 91.2,
    }
    assert dict(registry.set_metrics(rec.ref, {}, remove=["acc"]).metrics) == {"top1": 91.2}
    assert dict(registry.remove_metrics(rec.ref, "top1").metrics) == {}
    history = registry.history("clf")
    assert [e.action for e in history] == ["added", "tagged", "untagged", "metrics", "metrics", "metrics"]
    assert history[0].detail["metrics"] == {"acc": 0.5} and history[0].id is None
    assert history[0].actor == history[1].actor == getpass.getuser()  # who added it, who changed it
    assert history[1].detail["tags"] == ["exp", "prod"]
    assert history[3].detail["set"] == {"acc": [0.5, 0.6], "top1": [None, 91.2]}
    assert history[4].describe() == "removed acc (was 0.6)"
    assert history[5].detail["removed"] == {"top1": 91.2}
    assert all(e.created_at.tzinfo is not None for e in history)
    assert registry.search(tags=["prod"])[0].ref == "clf:v1"  # search sees the edits


def test_edits_refused_leave_the_registry_unchanged(registry: Registry) -> None:
    registry.add(cnn_state(0), name="clf", metrics={"acc": 0.5}, tags=["a"])
    registry.add(cnn_state(1), name="clf")
    before = snapshot(registry)
    with pytest.raises(zoo.ZooError, match="clf has 2 versions .*clf:v2"):  # which one? never guessed
        registry.tag("clf", "prod")
    with pytest.raises(zoo.ZooError, match=r"clf:v1 has no tag 'nope' \(its tags: a\); nothing was changed"):
        registry.untag("clf:v1", "a", "nope")  # 'a' exists, but the command is refused as a whole
    with pytest.raises(zoo.ZooError, match=r"has no metric 'loss' \(its metrics: acc\)"):
        registry.set_metrics("clf:v1", {"acc": 0.9}, remove=["loss"])  # nothing set either
    with pytest.raises(zoo.ZooError, match="finite"):
        registry.set_metrics("clf:v1", {"acc": float("nan")})
    with pytest.raises(zoo.InvalidNameError):
        registry.tag("clf:v1", "bad/tag")
    with pytest.raises(zoo.NotFoundError):
        registry.tag("nothere:v1", "x")
    assert snapshot(registry) == before


def test_aliases_set_moved_and_removed_are_recorded_on_both_versions(registry: Registry) -> None:
    registry.add(cnn_state(0), name="clf")
    registry.add(cnn_state(1), name="clf")
    registry.alias("clf:v1", "best")
    registry.alias("clf:v2", "best")  # moves
    with pytest.raises(zoo.ZooError, match=r"clf@best points at clf:v2, not clf:v1; nothing was removed"):
        registry.unalias("clf:v1", "best")
    removed = registry.unalias("clf@best")
    assert (removed.name, removed.alias, removed.version) == ("clf", "best", 2)
    with pytest.raises(zoo.NotFoundError, match="clf has no aliases"):
        registry.unalias("clf", "best")
    v1 = [(e.action, e.describe()) for e in registry.history("clf:v1")][1:]
    assert v1 == [("aliased", "alias @best set"), ("unaliased", "alias @best removed (moved to clf:v2)")]
    v2 = [e.describe() for e in registry.history("clf:v2")][1:]
    assert v2 == ["alias @best set (moved from clf:v1)", "alias @best removed"]


def test_history_goes_with_a_removed_checkpoint(registry: Registry) -> None:
    rec = registry.add(cnn_state(0), name="clf")
    registry.tag(rec.ref, "x")
    registry.remove(rec.ref)
    new = registry.add(cnn_state(1), name="other")
    assert [e.action for e in registry.history(new.ref)] == ["added"]


# --- lineage tree ---------------------------------------------------------------------------------------


def test_lineage_tree_from_the_oldest_ancestor_down(registry: Registry) -> None:
    root = registry.add(cnn_state(0), name="base")
    ft = registry.add(cnn_state(0, 0.01), name="base", parent=root.ref, origin="fine-tuned")
    a = registry.add(cnn_state(2), name="a", parent=ft.ref, origin="fine-tuned")
    b = registry.add(cnn_state(3), name="b", parent=root.ref, origin="adapted")
    registry.add(cnn_state(4), name="unrelated")
    tree = registry.lineage_tree(a.ref)
    assert tree.checkpoint.ref == root.ref and tree.relation == "root"
    assert [(n.checkpoint.ref, n.relation) for n in tree.walk()] == [
        (root.ref, "root"),
        (ft.ref, "parent"),
        (a.ref, "parent"),
        (b.ref, "parent"),
    ]
    assert tree.to_dict()["children"][0]["children"][0]["ref"] == "a:v1"
    assert registry.lineage_tree("unrelated").children == ()


# --- diff -----------------------------------------------------------------------------------------------


def test_diff_of_two_versions_says_which_tensors_differ_and_by_how_much(registry: Registry) -> None:
    a = registry.add(cnn_state(0), name="clf")
    changed = cnn_state(0)
    changed["features.0.weight"] = changed["features.0.weight"] * 1.5
    b = registry.add(changed, name="clf")
    d = registry.diff(a.ref, b.ref)
    assert [t.name for t in d.differing] == ["features.0.weight"]
    t = d.differing[0]
    assert t.change == "changed" and t.rel_l2 == pytest.approx(0.5, rel=1e-6)
    w = cnn_state(0)["features.0.weight"]
    assert t.max_abs == pytest.approx(float((w * 0.5).abs().max()), rel=1e-6)
    assert d.count("same") == len(d.tensors) - 1 and not d.identical
    assert registry.diff(a.ref, a.ref).identical
    assert d.to_dict()["counts"]["changed"] == 1


def test_diff_across_architectures_names_shape_changes_added_and_removed(registry: Registry) -> None:
    from zoo.diffing import diff_state_dicts

    a = {"w": torch.ones(2, 3), "gone": torch.zeros(1), "z": torch.zeros(2)}
    b = {"w": torch.ones(3, 3), "new": torch.ones(4), "z": torch.ones(2)}
    d = diff_state_dicts(a, b)
    assert {t.name: t.change for t in d.tensors} == {
        "w": "reshaped",
        "gone": "removed",
        "new": "added",
        "z": "changed",
    }
    z = next(t for t in d.tensors if t.name == "z")
    assert z.rel_l2 == pytest.approx(2**0.5) and z.max_abs == 1.0  # ||a|| = 0: the absolute distance
    assert "1 reshaped, 1 added, 1 removed" in d.summary()


# --- export ---------------------------------------------------------------------------------------------


def test_export_writes_the_verified_weights_and_never_overwrites_unasked(
    registry: Registry, tmp_path: Path
) -> None:
    rec = registry.add(cnn_state(0), name="clf")
    out = registry.export(rec.ref, tmp_path / "clf.safetensors")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == rec.sha256  # the stored file, checked
    assert registry.add(out, name="again", exist_ok=True).sha256 == rec.sha256
    pt = registry.export("clf", tmp_path / "clf.pt")
    loaded = torch.load(pt, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in registry.load_state_dict(rec).items())
    (tmp_path / "keep.safetensors").write_bytes(b"mine")
    with pytest.raises(zoo.ZooError, match="already exists.*overwrite=True"):
        registry.export(rec.ref, tmp_path / "keep.safetensors")
    assert (tmp_path / "keep.safetensors").read_bytes() == b"mine"
    registry.export(rec.ref, tmp_path / "keep.safetensors", overwrite=True)
    assert hashlib.sha256((tmp_path / "keep.safetensors").read_bytes()).hexdigest() == rec.sha256
    with pytest.raises(zoo.ZooError, match="format='safetensors'"):
        registry.export(rec.ref, tmp_path / "clf.weights")
    assert registry.export(rec.ref, tmp_path / "clf.weights", format="pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_export_of_damaged_weights_writes_nothing(registry: Registry, tmp_path: Path) -> None:
    rec = registry.add(cnn_state(0), name="clf")
    blob = registry.blobs.path(rec.sha256)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(zoo.IntegrityError):
        registry.export(rec.ref, tmp_path / "clf.safetensors")
    assert not any(tmp_path.glob("*clf*"))


# --- datasets: list by dataset, remove ------------------------------------------------------------------


def test_list_by_dataset_and_an_unknown_dataset_refused(registry: Registry) -> None:
    registry.add(cnn_state(0), name="a", dataset="digits")
    registry.add(cnn_state(1), name="b", dataset="other")
    assert [r.ref for r in registry.list(dataset="digits")] == ["a:v1"]
    with pytest.raises(zoo.NotFoundError, match=r"registry\.datasets\(\)"):
        registry.list(dataset="digitz")


def test_dataset_removal_refused_while_used_then_detached(registry: Registry) -> None:
    registry.add(cnn_state(0), name="a", dataset="digits")
    registry.add(cnn_state(1), name="b", dataset="keep")
    before = snapshot(registry)
    impact = registry.dataset_removal_impact("digits")
    assert impact.checkpoints == ("a:v1",)
    with pytest.raises(zoo.ZooError, match=r"dataset of 1 checkpoint\(s\) \(a:v1\); nothing was removed"):
        registry.remove_dataset("digits")
    with pytest.raises(zoo.NotFoundError):
        registry.remove_dataset("digitz")
    assert snapshot(registry) == before
    removal = registry.remove_dataset("digits", detach=True)
    assert removal.checkpoints == ("a:v1",) and removal.to_dict()["detached"] == ["a:v1"]
    assert [d.name for d in registry.datasets()] == ["keep"]  # only the named one
    assert registry.get("a").dataset is None and registry.get("b").dataset == "keep"
    assert registry.history("a")[-1].detail == {"from": "digits", "to": None, "why": "dataset removed"}
    assert registry.history("a")[0].detail["dataset"] == "digits"  # what it was added with


def test_an_unused_dataset_is_removed_with_its_vectors(registry: Registry) -> None:
    x = torch.rand(20, 1, 8, 8)
    y = torch.arange(20) % 2
    registry.register_dataset("tiny", (x, y), encoders=["pixels"])
    assert registry.dataset_removal_impact("tiny").vectors == 1
    assert registry.remove_dataset("tiny").vectors == 1
    assert registry.datasets() == []
    assert registry.repos.vectors.list(subject="dataset") == []
    registry.register_dataset("tiny", (x, y), encoders=["pixels"])  # the name can be registered again


# --- a registry from before the history table -----------------------------------------------------------


@pytest.mark.backends("sqlite")
def test_registry_from_before_0006_gets_a_history(tmp_path: Path) -> None:
    from tests.zoo.old_schema import registry_at

    db_path = tmp_path / "old.db"
    spec = zoo.resolve_arch("cnn-tiny")
    now = "2026-01-01 00:00:00"
    with registry_at(db_path, "0005") as conn:
        conn.exec_driver_sql("INSERT INTO blobs VALUES ('s1', 1, 'live', ?)", (now,))
        conn.exec_driver_sql(
            "INSERT INTO checkpoints (id, name, version, family, arch_name, arch_key, arch_json, "
            "arch_text, sha256, num_params, size_bytes, dataset_id, origin, parent_id, base_id, meta, "
            "created_at) VALUES (1, 'clf', 1, 'cnn', 'cnn-tiny', ?, ?, 't', 's1', 1, 1, NULL, 'trained', "
            "NULL, NULL, '{}', ?)",
            (spec.key, spec.to_json(), now),
        )
        conn.exec_driver_sql("INSERT INTO metrics VALUES (1, 'acc', 0.9)")
    with Registry(db_path, blob_root=tmp_path / "blobs") as reg:
        assert [e.action for e in reg.history("clf")] == ["added"]
        reg.set_metrics("clf", {"acc": 0.95})
        assert reg.history("clf")[-1].detail["set"] == {"acc": [0.9, 0.95]}
