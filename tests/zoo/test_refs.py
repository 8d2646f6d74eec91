"""One grammar for references (zoo/refs.py), and every command that acts acts only on what was named.

Replayed from public bug reports: a checkpoint named ``1`` and another whose id is 1 (``reg.get("1")`` served
the other one, ``zoo rm 1 --yes`` removed it), and ``zoo show 2024`` saying "no checkpoint named 'id 2024'".
Each runs on SQLite and PostgreSQL, through Python and the CLI.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli
from zoo.refs import Ref, parse_ref

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def tiny_cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return zoo.get_family("cnn").build(zoo.resolve_arch("cnn-tiny"))


def cli_run(url: str, blobs: str, *args: str, code: int = 0) -> str:
    res = CliRunner().invoke(cli, ["--registry", url, "--blob-root", blobs, *args])
    assert res.exit_code == code, res.output
    return res.output


@pytest.mark.parametrize(
    "text, ref",
    [
        ("net", Ref(name="net")),
        ("net:v3", Ref(name="net", version=3)),
        ("net@best", Ref(name="net", alias="best")),
        ("id:12", Ref(id=12)),
        (12, Ref(id=12)),
        ("12", Ref(name="12")),
        ("2024:v1", Ref(name="2024", version=1)),
        ("id", Ref(name="id")),
        ("id:v2", Ref(name="id", version=2)),
    ],
)
def test_each_reference_reads_one_way(text: str | int, ref: Ref) -> None:
    assert parse_ref(text) == ref
    assert parse_ref(str(ref)) == ref  # what a record prints reads back as itself


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "net:3",
        "net:v",
        "net@",
        "id:",
        "id:-1",
        "a b",
        "net:v1@x",
        "id:0",
        0,
        -3,
        True,
        1.5,
        None,
        "x" * 200,
        "id:99999999999999999999",
    ],
)
def test_malformed_references_name_the_grammar(bad: object) -> None:
    with pytest.raises(zoo.NotFoundError, match="name:vN|integers from 1|id:N") as err:
        parse_ref(bad)
    if isinstance(bad, int) and not isinstance(bad, bool) or str(bad).startswith("id:-"):
        assert f"with id {bad if isinstance(bad, int) else bad[3:]}" in str(err.value)  # an id, not a name


def test_a_digit_string_is_a_name_and_ids_are_explicit(
    registry: zoo.Registry, registry_url: str, tmp_path
) -> None:
    prod = registry.add(tiny_cnn(0), name="production-model")
    one = registry.add(tiny_cnn(1), name="1")
    assert prod.id == 1 and one.id != 1  # the collision the bug report had
    assert registry.get("1").ref == "1:v1"
    assert registry.get("id:1").ref == "production-model:v1" == registry.get(1).ref
    assert registry.get(f"id:{one.id}").ref == "1:v1"
    torch.testing.assert_close(registry.load("1").state_dict(), tiny_cnn(1).state_dict())
    registry.alias("1", "best")  # alias acts on the checkpoint named 1
    assert registry.get("1@best").id == one.id
    child = registry.add(tiny_cnn(2), name="child", parent="1")
    assert child.parent_id == one.id
    out = cli_run(registry_url, str(registry.blobs.root), "rm", "1", "--yes")
    assert "removed 1:v1" in out and "production-model" not in out
    assert registry.get("production-model").id == prod.id
    with pytest.raises(zoo.NotFoundError, match="no checkpoint named '1'") as err:
        registry.get("1")
    assert "id:1" in str(err.value)  # the hint says how to mean the id


def test_missing_names_and_ids_are_reported_as_what_was_asked(
    registry: zoo.Registry, registry_url: str
) -> None:
    registry.add(tiny_cnn(0), name="net")
    blobs = str(registry.blobs.root)
    out = cli_run(registry_url, blobs, "show", "2024", code=1)
    assert "no checkpoint named '2024'" in out and "id 2024" not in out
    assert "no checkpoint with id 2024" in cli_run(registry_url, blobs, "show", "id:2024", code=1)
    assert "no checkpoint named 'net:v7'" in cli_run(registry_url, blobs, "show", "net:v7", code=1)
    assert json.loads(cli_run(registry_url, blobs, "show", "id:1", "--json"))["ref"] == "net:v1"
    for args in (["alias", "2024", "best"], ["load-check", "2024"], ["rm", "2024", "--yes"]):
        out = cli_run(registry_url, blobs, *args, code=1)
        assert "2024" in out and "net" not in out.split("named")[0]
    assert [r.ref for r in registry.list()] == ["net:v1"]


def test_generator_references_follow_the_same_grammar(registry: zoo.Registry) -> None:
    first = registry.add_generator(
        b"a" * 64, name="g", families=["cnn"], config={}, metrics={}, trained_on=[]
    )
    named_by_digits = registry.add_generator(
        b"b" * 64, name=str(first.id), families=["cnn"], config={}, metrics={}, trained_on=[]
    )
    assert registry.get_generator(str(first.id)).id == named_by_digits.id  # "1" is a name
    assert registry.get_generator(f"id:{first.id}").id == first.id == registry.get_generator(first.id).id
    with pytest.raises(zoo.NotFoundError, match="no generator with id 999"):
        registry.get_generator("id:999")


def test_destructive_actions_refuse_a_bare_name_with_several_versions(
    registry: zoo.Registry, registry_url: str
) -> None:
    registry.add(tiny_cnn(0), name="net")
    registry.add(tiny_cnn(1), name="net")
    with pytest.raises(zoo.ZooError, match="net has 2 versions .*net:v2"):
        registry.remove("net")
    out = cli_run(registry_url, str(registry.blobs.root), "rm", "net", "--yes", code=1)
    assert "name the one to act on" in out
    assert [r.ref for r in registry.list()] == ["net:v2", "net:v1"]
    assert registry.remove("net:v2").checkpoint.ref == "net:v2"
    assert registry.remove("net").checkpoint.ref == "net:v1"  # one version left: the name is unambiguous


def test_hints_say_what_is_true(registry: zoo.Registry) -> None:
    registry.add(tiny_cnn(0), name="net")
    registry.add(tiny_cnn(1), name="net")
    registry.remove("net:v2")
    with pytest.raises(zoo.NotFoundError, match="net:v2 was removed"):
        registry.get("net:v2")
    with pytest.raises(zoo.NotFoundError, match="from v1 to v2"):
        registry.get("net:v0")
    with pytest.raises(zoo.NotFoundError, match=r"set it with registry.alias\('net:vN', 'best'\)") as alias:
        registry.get("net@best")
    assert "set it with `zoo alias net:vN best`" in str(alias.value.for_cli())
    with pytest.raises(zoo.NotFoundError, match="no checkpoint named 'gone'") as err:
        registry.get("gone@best")  # no such name: no advice to alias it
    assert "alias" not in str(err.value)


def test_ids_elsewhere_follow_the_grammar(registry: zoo.Registry) -> None:
    other = registry.add(tiny_cnn(0), name="foo")
    registry.add(tiny_cnn(1), name=str(other.id))  # a checkpoint *named* like foo's id
    assert [r.ref for r in registry.get_many([other.id, f"id:{other.id}"])] == ["foo:v1"]
    for bad in ([str(other.id)], [True], ["foo"]):
        with pytest.raises(zoo.ZooError, match="takes checkpoint ids"):
            registry.get_many(bad)
    assert len(registry.search(after=f"id:{other.id}")) == 1 and len(registry.search(after=0)) == 2
    with pytest.raises(zoo.ZooError, match="takes checkpoint ids"):
        registry.search(after=str(other.id))
