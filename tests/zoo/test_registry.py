"""Registry behaviour through the public API, on real databases (a SQLite file; a PostgreSQL database where a
server can be had: tests/pgserver.py) and real safetensors blobs. Tests taking ``registry`` run on both."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo import Registry

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def tiny_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))


def snapshot(reg: Registry) -> tuple:
    """Everything observable about a registry's content: rows and blob files."""
    files = (
        sorted(p.name for p in reg.blobs.root.rglob("*") if p.is_file()) if reg.blobs.root.exists() else []
    )
    recs = [(r.ref, r.sha256, tuple(sorted(r.metrics.items())), r.tags) for r in reg.list()]
    return recs, reg.stats(), files, reg.aliases(), [d.name for d in reg.datasets()]


# --- the real pretrained CIFAR ResNets ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fname, arch, params",
    [("resnet20-12fca82f.th", "resnet20", 269_722), ("resnet56-4bfd9763.th", "resnet56", 853_018)],
)
def test_real_pretrained_resnets_round_trip_bitwise(
    registry: Registry, pretrained: Path, fname: str, arch: str, params: int
) -> None:
    path = pretrained / fname
    rec = registry.add(path, dataset="cifar10", metrics={"top1": 91.0})
    assert rec.arch.family == "resnet" and rec.arch.name == arch
    assert rec.num_params == params
    assert rec.meta["source_extra"]["best_prec1"] > 90
    assert [r.ref for r in registry.list()] == [rec.ref]
    module = registry.load(rec.name)
    original = torch.load(path, weights_only=True, map_location="cpu")["state_dict"]
    loaded = module.state_dict()
    for key, tensor in original.items():
        got = loaded[key.removeprefix("module.")]
        assert got.dtype == tensor.dtype and torch.equal(got, tensor), key
    # the blob on disk is a real safetensors file holding the same tensors
    blob = registry.blobs.path(rec.sha256)
    assert blob.suffix == ".safetensors" and blob.is_file()
    assert rec.size_bytes == blob.stat().st_size


def test_pretrained_resnet_forward_is_sane(registry: Registry, pretrained: Path) -> None:
    rec = registry.add(pretrained / "resnet20-12fca82f.th")
    module = registry.load(rec)
    out = module(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


# --- inputs: files, modules, state dicts ----------------------------------------------------------------


def test_add_module_state_dict_and_safetensors_file_dedupe_one_blob(
    registry: Registry, tmp_path: Path
) -> None:
    model = tiny_cnn()
    a = registry.add(model, name="a")
    b = registry.add(model.state_dict(), name="b")
    st = tmp_path / "w.safetensors"
    save_file(model.state_dict(), st)
    c = registry.add(st, name="c")
    assert a.sha256 == b.sha256 == c.sha256
    assert registry.stats()["blobs"] == 1
    assert len(list(registry.blobs.iter_shas())) == 1
    assert a.arch == zoo.resolve_arch("cnn-tiny") and a.num_params == 2464


def test_checkpoint_dict_nested_state_dict_and_module_prefix(registry: Registry, tmp_path: Path) -> None:
    model = tiny_cnn()
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    rec = registry.add(path)
    assert rec.name == "ckpt" and rec.meta["source_extra"] == {"epoch": 3}
    assert all(
        torch.equal(x, y)
        for x, y in zip(registry.load(rec).state_dict().values(), model.state_dict().values())
    )


def test_versions_aliases_and_refs(registry: Registry) -> None:
    v1 = registry.add(tiny_cnn(0), name="net", metrics={"accuracy": 0.5})
    v2 = registry.add(tiny_cnn(1), name="net", metrics={"accuracy": 0.7})
    assert (v1.version, v2.version) == (1, 2)
    assert registry.get("net").ref == "net:v2"
    assert registry.get("net:v1").id == v1.id
    registry.alias("net:v1", "best")
    assert registry.get("net@best").id == v1.id
    registry.alias("net:v2", "best")  # aliases move
    assert registry.get("net@best").id == v2.id
    assert [a.version for a in registry.aliases("net")] == [2]
    assert [r.ref for r in registry.versions("net")] == ["net:v1", "net:v2"]
    assert registry.get(v1.id).ref == "net:v1"


def test_lineage_records_parent_and_origin(registry: Registry) -> None:
    registry.add(tiny_cnn(0), name="base", origin="trained")
    ft = registry.add(tiny_cnn(1), name="ft", origin="fine-tuned", parent="base")
    gen = registry.add(tiny_cnn(2), name="gen", origin="generated", parent=ft.id)
    assert [r.ref for r in registry.lineage("gen")] == ["gen:v1", "ft:v1", "base:v1"]
    assert [r.origin for r in registry.lineage(gen.id)] == ["generated", "fine-tuned", "trained"]
    registry.remove("ft")
    assert registry.get("gen").parent_id is None


def test_search_filters(registry: Registry, pretrained: Path) -> None:
    registry.add(tiny_cnn(0), name="d0", dataset="digits", metrics={"accuracy": 0.91}, tags=["zoo", "seed0"])
    registry.add(tiny_cnn(1), name="d1", dataset="digits", metrics={"accuracy": 0.80}, tags=["zoo"])
    registry.add(tiny_cnn(2), name="m0", dataset="mnist", metrics={"accuracy": 0.95})
    registry.add(pretrained / "resnet20-12fca82f.th", dataset="cifar10")
    names = lambda recs: sorted(r.name for r in recs)  # noqa: E731
    assert names(registry.search(family="cnn")) == ["d0", "d1", "m0"]
    assert names(registry.search(family="resnet")) == ["resnet20-12fca82f"]
    assert names(registry.search(arch="resnet20")) == ["resnet20-12fca82f"]
    assert names(registry.search(arch=zoo.resolve_arch("cnn-tiny"))) == ["d0", "d1", "m0"]
    assert names(registry.search(dataset="digits")) == ["d0", "d1"]
    assert names(registry.search(tags=["zoo"])) == ["d0", "d1"]
    assert names(registry.search(tags=["zoo", "seed0"])) == ["d0"]
    assert names(registry.search(metrics=["accuracy>=0.9"])) == ["d0", "m0"]
    assert names(registry.search(metrics={"accuracy": "<0.9"})) == ["d1"]
    assert names(registry.search(dataset="digits", metrics=["accuracy>0.85"])) == ["d0"]
    assert names(registry.search(name="d*")) == ["d0", "d1"]
    with pytest.raises(zoo.ZooError, match="accuracy>=0.9"):
        registry.search(metrics=["accuracy => high"])


# --- bad input: a clear error, and the registry unchanged ---------------------------------------------


class _Evil:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_pickle_that_is_not_weights_only_is_refused_and_never_runs(
    registry: Registry, tmp_path: Path
) -> None:
    registry.add(tiny_cnn(), name="keep")
    before = snapshot(registry)
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny_cnn().state_dict(), "payload": _Evil(marker)}, path)
    with pytest.raises(zoo.UnsafeCheckpointError, match="not a weights-only file") as err:
        registry.add(path)
    assert "evil.pt" in str(err.value) and "safetensors" in str(err.value)
    assert not marker.exists()
    assert snapshot(registry) == before


@pytest.mark.parametrize("fmt", ["th", "safetensors"])
def test_truncated_file_is_refused(registry: Registry, tmp_path: Path, fmt: str) -> None:
    registry.add(tiny_cnn(), name="keep")
    before = snapshot(registry)
    good = tmp_path / f"good.{fmt}"
    if fmt == "th":
        torch.save(tiny_cnn(3).state_dict(), good)
    else:
        save_file(tiny_cnn(3).state_dict(), good)
    data = good.read_bytes()
    bad = tmp_path / f"truncated.{fmt}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(zoo.CheckpointError, match="truncated"):
        registry.add(bad)
    assert snapshot(registry) == before


def test_unknown_architecture_names_installed_families(registry: Registry) -> None:
    before = snapshot(registry)
    sd = {"encoder.weight": torch.randn(4, 4), "decoder.weight": torch.randn(4, 4)}
    with pytest.raises(zoo.UnknownFamilyError) as err:
        registry.add(sd, name="mystery")
    for fam in zoo.list_families():
        assert fam in str(err.value)
    with pytest.raises(zoo.UnknownFamilyError):
        registry.add(tiny_cnn(), arch="transformer-xl-9000")
    assert snapshot(registry) == before


def test_wrong_architecture_and_wrong_shape_name_the_layer(registry: Registry, pretrained: Path) -> None:
    before = snapshot(registry)
    with pytest.raises(zoo.ArchitectureMismatchError, match="missing"):
        registry.add(pretrained / "resnet20-12fca82f.th", arch="resnet56")
    sd = tiny_cnn().state_dict()
    sd["classifier.1.weight"] = torch.randn(21, 36)
    with pytest.raises(zoo.ArchitectureMismatchError) as err:
        registry.add(sd, arch="cnn-tiny", name="bad")
    assert err.value.layer == "classifier.1.weight"
    assert "[21, 36]" in str(err.value) and "[20, 36]" in str(err.value)
    assert snapshot(registry) == before


def test_duplicate_weights_under_same_name_is_refused(registry: Registry) -> None:
    rec = registry.add(tiny_cnn(), name="dup")
    before = snapshot(registry)
    with pytest.raises(zoo.DuplicateError, match=r"dup:v1"):
        registry.add(tiny_cnn(), name="dup")
    assert snapshot(registry) == before
    assert registry.add(tiny_cnn(), name="dup", exist_ok=True).id == rec.id


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "bad\nname", "", "x" * 200, "-lead"])
def test_invalid_names_are_refused(registry: Registry, name: str) -> None:
    with pytest.raises(zoo.InvalidNameError):
        registry.add(tiny_cnn(), name=name)
    assert registry.stats()["checkpoints"] == 0 and registry.stats()["blobs"] == 0


def test_nan_weights_are_refused(registry: Registry) -> None:
    sd = tiny_cnn().state_dict()
    sd["features.0.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(zoo.InvalidWeightsError, match="features.0.weight"):
        registry.add(sd, name="nan")
    assert registry.stats()["checkpoints"] == 0


def test_not_found_errors_say_what_to_do(registry: Registry) -> None:
    with pytest.raises(zoo.NotFoundError, match=r"registry.list\(\)") as err:  # Python: a call
        registry.get("nope")
    assert "`zoo list`" in str(err.value.for_cli())  # the command line: a command to paste
    registry.add(tiny_cnn(), name="x")
    with pytest.raises(zoo.NotFoundError, match=r"registry.alias\(") as err:
        registry.get("x@best")
    assert "`zoo alias x:vN best`" in str(err.value.for_cli())


# --- removal, integrity ---------------------------------------------------------------------------------


def test_remove_deletes_blob_only_when_unreferenced(registry: Registry) -> None:
    a = registry.add(tiny_cnn(0), name="a")
    registry.add(tiny_cnn(0), name="b")  # same weights: shares a's blob
    registry.remove("a")
    assert registry.blobs.exists(a.sha256)
    registry.remove("b")
    assert not registry.blobs.exists(a.sha256)
    assert registry.stats() == {**registry.stats(), "checkpoints": 0, "blobs": 0}
    assert registry.verify().clean


def test_corrupt_blob_is_detected_never_served(registry: Registry) -> None:
    rec = registry.add(tiny_cnn(), name="c")
    path = registry.blobs.path(rec.sha256)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one flipped bit in the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.IntegrityError, match="does not match its hash"):
        registry.load("c")
    with pytest.raises(zoo.IntegrityError):
        registry.load_state_dict("c")
    rep = registry.verify()
    assert rep.corrupt == (rec.sha256,) and not rep.clean
    path.unlink()
    with pytest.raises(zoo.IntegrityError, match="missing"):
        registry.load("c")
    assert registry.verify().missing == (rec.sha256,)


def test_verify_repair_cleans_orphans(registry: Registry) -> None:
    rec = registry.add(tiny_cnn(), name="c")
    orphan_sha, _ = registry.blobs.put(registry.blobs.serialize({"w": torch.ones(3)}))
    (registry.blobs.tmp).mkdir(exist_ok=True)
    (registry.blobs.tmp / "dead.123.tmp").write_bytes(b"partial")
    rep = registry.verify(grace_s=0)
    assert orphan_sha in rep.orphan_files and "dead.123.tmp" in rep.orphan_files
    assert registry.verify(repair=True, grace_s=0).repaired
    assert not registry.blobs.exists(orphan_sha)
    assert registry.verify(grace_s=0).clean
    assert registry.blobs.exists(rec.sha256)


# --- storage ----------------------------------------------------------------------------------------------


def test_embedded_default_is_a_real_sqlite_file_in_wal_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_REGISTRY_URL", raising=False)
    with Registry() as reg:
        reg.add(tiny_cnn(), name="x")
    assert (tmp_path / "registry.db").is_file() and (tmp_path / "registry.blobs").is_dir()
    con = sqlite3.connect(tmp_path / "registry.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT name, version FROM checkpoints").fetchall() == [("x", 1)]
    con.close()


def test_registry_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_REGISTRY_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with Registry() as reg:
        reg.add(tiny_cnn(), name="x")
        assert reg.blobs.root == tmp_path / "elsewhere.blobs"
    assert (tmp_path / "elsewhere.db").is_file()
    with Registry(tmp_path / "elsewhere.db") as again:  # reopening keeps everything
        assert again.get("x").version == 1
        assert again.load("x") is not None


def test_migrated_schema_matches_models(registry: Registry) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from zoo.store import pgvector
    from zoo.store.db import current_revision, head_revision
    from zoo.store.models import Base

    def ours(name, type_, parent_names) -> bool:  # type: ignore[no-untyped-def]
        # pgvector's copy of the vectors: not a model
        return not (type_ == "table" and name == pgvector.TABLE)

    assert current_revision(registry.db.write_engine) == head_revision()
    with registry.db.read_engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"include_name": ours}), Base.metadata)
    assert diffs == []


def test_records_are_plain_frozen_dataclasses(registry: Registry) -> None:
    rec = registry.add(tiny_cnn(), name="x", metrics={"accuracy": 0.5})
    with pytest.raises(Exception):
        rec.name = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rec.metrics["accuracy"] = 1.0  # type: ignore[index]
    assert rec.to_dict()["ref"] == "x:v1"
    assert not any(type(v).__module__.startswith("sqlalchemy") for v in vars(rec).values())


def test_two_registries_in_one_process_do_not_share_blobs(tmp_path: Path) -> None:
    with Registry(tmp_path / "one.db") as a, Registry(tmp_path / "two.db") as b:
        a.add(tiny_cnn(), name="x")
        assert b.stats()["checkpoints"] == 0
        assert os.listdir(tmp_path / "one.blobs") and not (tmp_path / "two.blobs").exists()


def test_detection_with_one_wrong_shape_names_the_layer(registry: Registry) -> None:
    sd = tiny_cnn().state_dict()
    sd["classifier.1.bias"] = torch.zeros(19)
    with pytest.raises(zoo.ArchitectureMismatchError) as err:
        registry.add(sd, name="bad")  # no arch=: detection finds the nearest family and says what differs
    assert err.value.layer == "classifier.1.bias" and "[19]" in str(err.value)
    assert registry.stats()["checkpoints"] == 0


# --- identifiers are never reused ---------------------------------------------------------------------


def test_removed_newest_version_is_never_handed_out_again(registry: Registry) -> None:
    registry.add(tiny_cnn(0), name="clf")
    v2 = registry.add(tiny_cnn(1), name="clf")
    registry.alias(v2.ref, "prod")
    registry.remove("clf:v2")
    v3 = registry.add(tiny_cnn(2), name="clf")
    assert v3.ref == "clf:v3" and v3.id > v2.id
    with pytest.raises(zoo.NotFoundError, match="clf:v2 was removed"):
        registry.get("clf:v2")  # a pinned clf:v2 never serves other weights
    with pytest.raises(zoo.NotFoundError):
        registry.get("clf@prod")  # the alias went with its version; it does not slide onto v3


def test_a_name_removed_entirely_continues_its_numbering(registry: Registry) -> None:
    registry.add(tiny_cnn(0), name="clf")
    registry.remove("clf:v1")
    assert registry.add(tiny_cnn(1), name="clf").ref == "clf:v2"
    gen1 = registry.add_generator(b"x" * 64, name="g", families=["cnn"], config={}, metrics={}, trained_on=[])
    assert (
        registry.add_generator(
            b"y" * 64, name="g", families=["cnn"], config={}, metrics={}, trained_on=[]
        ).version
        == gen1.version + 1
    )


def test_removed_newest_id_is_never_reused_so_watermarks_hold(registry: Registry) -> None:
    a = registry.add(tiny_cnn(0), name="a")
    b = registry.add(tiny_cnn(1), name="b")
    gen = registry.add_generator(b"g" * 64, families=["cnn"], config={}, metrics={}, trained_on=[a.id, b.id])
    registry.remove(b.ref)
    c = registry.add(tiny_cnn(2), name="c")
    assert c.id > b.id  # SQLite handed the deleted newest rowid out again before AUTOINCREMENT
    assert [r.ref for r in registry.search(after=gen.watermark)] == ["c:v1"]  # the watermark sees the new add
    assert registry.get_many(gen.trained_on) == [registry.get("a")]  # trained_on never points at c
    with pytest.raises(zoo.NotFoundError, match=f"with id {b.id}"):
        registry.get(b.id)


def test_old_sqlite_registry_is_migrated_without_reusing_kept_ids(tmp_path: Path) -> None:
    """A registry made before migration 0004 (at 0003), whose newest checkpoint was removed while a generator
    and the import log still name its id: after the upgrade, new adds take fresh ids and versions, and nothing
    that was stored (tags, metrics, aliases, lineage) is lost to the table rebuild."""
    from tests.zoo.old_schema import registry_at

    db_path = tmp_path / "old.db"
    url = f"sqlite:///{db_path}"
    with registry_at(db_path, "0003") as conn:
        now = "2026-01-01 00:00:00"
        spec = zoo.resolve_arch("cnn-tiny")
        conn.exec_driver_sql(
            "INSERT INTO blobs VALUES ('s1', 1, 'live', ?), ('s2', 1, 'live', ?)", (now, now)
        )
        for cid, version, parent in ((1, 1, None), (2, 2, 1)):
            conn.exec_driver_sql(
                "INSERT INTO checkpoints (id, name, version, family, arch_name, arch_key, arch_json, "
                "arch_text, sha256, num_params, size_bytes, dataset_id, origin, parent_id, base_id, meta, "
                "created_at) VALUES (?, 'clf', ?, 'cnn', 'cnn-tiny', ?, ?, 't', ?, 1, 1, NULL, 'trained', ?, "
                "NULL, '{}', ?)",
                (cid, version, spec.key, spec.to_json(), f"s{cid}", parent, now),
            )
        conn.exec_driver_sql("INSERT INTO tags VALUES (2, 'keep'), (1, 'old')")
        conn.exec_driver_sql("INSERT INTO metrics VALUES (2, 'acc', 0.9)")
        conn.exec_driver_sql("INSERT INTO aliases VALUES ('clf', 'prod', 2, ?)", (now,))
        # checkpoint 3 was the newest and is gone, but a generator trained on it and the import log
        # remember it
        conn.exec_driver_sql("INSERT INTO blobs VALUES ('s9', 1, 'live', ?)", (now,))
        conn.exec_driver_sql(
            "INSERT INTO generators (id, name, version, families, sha256, config, metrics, "
            "watermark, status, created_at) VALUES (1, 'igpg', 1, 'cnn', 's9', '{}', '{}', "
            "3, 'promoted', ?)",
            (now,),
        )
        conn.exec_driver_sql("INSERT INTO generator_checkpoints VALUES (1, 3)")
    reg = Registry(url, blob_root=tmp_path / "blobs")
    kept = reg.get("clf:v2")
    assert kept.tags == ("keep",) and kept.metrics == {"acc": 0.9} and kept.parent_id == 1
    assert reg.get("clf@prod").id == 2 and reg.get("clf:v1").tags == ("old",)
    new = reg.add(tiny_cnn(0), name="clf")
    assert new.id == 4 and new.ref == "clf:v3"  # above the id the generator kept, after the versions stored
    with sqlite3.connect(db_path) as con:
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        assert (
            "AUTOINCREMENT"
            in con.execute("SELECT sql FROM sqlite_master WHERE name='checkpoints'").fetchone()[0]
        )
    reg.close()


# --- what add stores, search finds ---------------------------------------------------------------------


def test_every_metric_name_add_stores_is_searchable(registry: Registry) -> None:
    names = {
        "acc@1": 0.9,
        "val acc": 0.8,
        "top-1 (%)": 91.5,
        "loss/val": 0.3,
        "精度": 0.7,
        "f1_macro.v2": 0.6,
    }
    rec = registry.add(tiny_cnn(0), name="m", metrics=names)
    for key, value in names.items():
        for query in ([f"{key}>={value}"], f"{key} == {value}", {key: f"<={value}"}, {key: value}):
            assert [r.ref for r in registry.search(metrics=query)] == [rec.ref], (key, query)
        assert registry.search(metrics=[f"{key}>{value}"]) == []


@pytest.mark.parametrize("bad", ["acc>=1", "a=b", "x<y", "not!", " acc", "acc "])
def test_metric_names_a_filter_cannot_read_are_refused_before_anything_is_stored(
    registry: Registry, bad: str
) -> None:
    before = snapshot(registry)
    with pytest.raises(zoo.ZooError, match="cannot be searched: .*; rename it"):
        registry.add(tiny_cnn(0), name="m", metrics={bad: 0.5})
    assert snapshot(registry) == before


@pytest.mark.parametrize(
    "bad", ["acc>=", ">=0.5", "acc>=1e", "acc>=nan", "acc>=inf", "acc~0.5", "acc>=0.5>=1"]
)
def test_unreadable_metric_filters_get_a_clear_error(registry: Registry, bad: str) -> None:
    with pytest.raises(zoo.ZooError, match="cannot read metric filter"):
        registry.search(metrics=[bad])


def test_threshold_values_of_any_numeric_type_and_truth_values(registry: Registry) -> None:
    import numpy as np

    rec = registry.add(tiny_cnn(0), name="m", metrics={"acc@1": np.float32(0.75)})
    for cond in (0.5, np.float32(0.5), "0.5", ">=0.5"):
        assert [r.ref for r in registry.search(metrics={"acc@1": cond})] == [rec.ref], cond
    with pytest.raises(zoo.ZooError, match="truth value"):
        registry.add(tiny_cnn(1), name="b", metrics={"acc": True})


def test_a_single_string_filter_is_one_filter_not_its_characters(registry: Registry) -> None:
    rec = registry.add(tiny_cnn(0), name="m", metrics={"acc": 0.9}, tags=["pretrained"])
    assert [r.ref for r in registry.search(metrics="acc>=0.5", tags="pretrained")] == [rec.ref]


# --- removal says what it touches ----------------------------------------------------------------------


def test_removal_reports_children_aliases_and_generators(registry: Registry) -> None:
    parent = registry.add(tiny_cnn(0), name="digits-s5")
    registry.alias(parent.ref, "prod")
    child = registry.add(tiny_cnn(1), name="digits-s5-ft", parent=parent.ref, origin="fine-tuned")
    gen = registry.add_generator(b"g" * 64, families=["cnn"], config={}, metrics={}, trained_on=[parent.id])
    impact = registry.removal_impact(parent.ref)
    assert impact.children == (child.ref,) and impact.aliases == ("digits-s5@prod",)
    assert impact.generators == (gen.ref,) and impact.base_of == ()
    assert registry.remove(parent.ref) == impact
    assert registry.get(child.ref).parent_id is None and registry.aliases() == []
    assert registry.get_generator(gen.ref).trained_on == (parent.id,)


# --- read-only use never creates a registry -----------------------------------------------------------


def test_opening_a_missing_registry_read_only_fails_naming_it(registry_url: str, tmp_path: Path) -> None:
    if registry_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'with-a-typo' / 'registry.db'}"
        with pytest.raises(zoo.RegistryMissingError, match="with-a-typo"):
            Registry(url, create=False)
        assert not (tmp_path / "with-a-typo").exists()
        (tmp_path / "empty.db").touch()
        with pytest.raises(zoo.RegistryMissingError, match="empty"):
            Registry(tmp_path / "empty.db", create=False)
        assert (tmp_path / "empty.db").stat().st_size == 0  # not even the WAL header was written
        return
    from sqlalchemy import create_engine, text  # an empty PostgreSQL database is not a registry

    engine = create_engine(zoo.store.db.with_driver(registry_url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    zoo.store.db._migrated.discard(registry_url)
    with pytest.raises(zoo.RegistryMissingError, match="holds no zoo registry"):
        Registry(registry_url, create=False)


def test_a_database_of_something_else_is_never_written_into(registry_url: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect, text

    if registry_url.startswith("sqlite"):
        registry_url = f"sqlite:///{tmp_path / 'other-app.db'}"
    engine = create_engine(zoo.store.db.with_driver(registry_url))
    with engine.begin() as conn:
        conn.execute(
            text("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            if "postgresql" in registry_url
            else text("SELECT 1")
        )
        conn.execute(text("CREATE TABLE their_data (x INTEGER)"))
    zoo.store.db._migrated.discard(registry_url)
    before = tmp_path.joinpath("other-app.db").read_bytes() if "sqlite" in registry_url else None
    for create in (False, True):
        with pytest.raises(
            zoo.ConfigError, match="is not a zoo registry: it holds other tables \\(their_data\\)"
        ):
            Registry(registry_url, create=create, blob_root=tmp_path / "blobs")
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == ["their_data"]
    engine.dispose()
    if before is not None:
        assert tmp_path.joinpath("other-app.db").read_bytes() == before
    text_file = tmp_path / "notes.db"
    text_file.write_text("not a database")
    with pytest.raises(zoo.ConfigError, match="not a SQLite database"):
        Registry(text_file)


def test_a_database_another_program_migrates_with_alembic_is_never_written_into(
    registry_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import create_engine, text

    if registry_url.startswith("sqlite"):
        registry_url = f"sqlite:///{tmp_path / 'their-app.db'}"
    engine = create_engine(zoo.store.db.with_driver(registry_url))
    with engine.begin() as conn:
        if "postgresql" in registry_url:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('deadbeef1234')"))
        conn.execute(text("CREATE TABLE users (id INTEGER)"))
    engine.dispose()
    zoo.store.db._migrated.discard(registry_url)
    before = tmp_path.joinpath("their-app.db").read_bytes() if "sqlite" in registry_url else None
    for create in (False, True):
        with pytest.raises(
            zoo.ConfigError, match="is not a zoo registry: its schema revision 'deadbeef1234'"
        ):
            Registry(registry_url, create=create, blob_root=tmp_path / "blobs")
    if before is not None:
        assert tmp_path.joinpath("their-app.db").read_bytes() == before


def test_store_repositories_answer_the_reads_of_reindexing_and_provision(registry: Registry) -> None:
    """The store owns these sessions too: blob users, watched files, live index files, scoring candidates."""
    spec = zoo.resolve_arch("cnn-tiny")
    a = registry.add(tiny_cnn(0), name="a", arch=spec, dataset="d", metrics={"accuracy": 0.5, "other": 1.0})
    b = registry.add(tiny_cnn(1), name="b", arch=spec)
    repos = registry.repos
    assert repos.blobs.users([a.sha256, "0" * 64]) == {a.sha256: [(a.id, "a:v1")], "0" * 64: []}
    now = a.created_at
    row = {
        "path": "/w/a.safetensors",
        "size": 3,
        "mtime_ns": 7,
        "sha256": "f" * 64,
        "status": "imported",
        "checkpoint_id": a.id,
        "message": "",
        "seen_at": now,
        "sidecar_sha256": "",
    }
    repos.watched.remember([row])
    repos.watched.remember([{**row, "size": 4}])  # the same path again: replaced, not added
    assert repos.watched.known() == ({"/w/a.safetensors": (4, 7, "imported", "")}, {"f" * 64: a.id})
    assert repos.vectors.index_files() == set()
    found = repos.vectors.scoring_candidates(spec, ["accuracy"], "pixels", "1")
    assert sorted(found.checkpoints) == [(a.id, "a", "d"), (b.id, "b", None)]
    assert found.metrics == {a.id: {"accuracy": 0.5}, b.id: {}}
    assert found.vectors == {}  # "d" is known by name only: no vector


def test_a_registry_file_deleted_and_made_again_in_one_process_works(tmp_path: Path) -> None:
    """Replayed: after `rm registry.db` a new Registry at the same path in the same process had no tables
    (the schema check was remembered per path)."""
    path = tmp_path / "registry.db"
    with Registry(path) as reg:
        reg.add(tiny_cnn(0), name="first")
    for p in tmp_path.glob("registry.db*"):
        p.unlink()
    with Registry(path) as again:
        assert again.list() == []
        assert again.add(tiny_cnn(1), name="second").ref == "second:v1"
