"""The command line starts light: help, listing and showing import neither torch nor the built-in families.

Each command runs in a fresh interpreter (a subprocess, as a user's shell would start it), which then reports
the modules it imported. How fast that is goes in ``bench/bench_cli.py``, not here (no timing in tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo

_RUN = """
import json, sys
from zoo.cli import main
sys.argv = ["zoo", *json.loads(sys.argv[1])]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
heavy = ("torch", "safetensors.torch", "alembic", "sklearn", "transformers", "timm",
         "zoo_families", "igpg.generator", "igpg.train", "zoo_demo.job", "zoo.encoders", "zoo.family")
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print("\\n@@" + json.dumps({"code": code, "heavy": loaded}))
"""


def start(args: list[str], db: Path, **env: str) -> tuple[str, list[str]]:
    """Run ``zoo --registry db ARGS`` in a fresh interpreter: (its output, the heavy modules it imported)."""
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(["--registry", str(db), *args])],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    out, _, tail = proc.stdout.rpartition("\n@@")
    assert tail, proc.stderr
    result = json.loads(tail)
    assert result["code"] == 0, proc.stderr + out
    return out, result["heavy"]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "registry.db"
    with zoo.Registry(path) as reg:
        torch.manual_seed(0)
        spec = zoo.resolve_arch("cnn-tiny")
        reg.add(zoo.get_family("cnn").build(spec), name="net", arch=spec, dataset="digits")
    return path


@pytest.mark.parametrize(
    "args",
    [["--help"], ["list"], ["list", "--json"], ["show", "net"], ["show", "net:v1", "--json"], ["jobs"]],
    ids=" ".join,
)
def test_help_list_and_show_import_no_torch(db: Path, args: list[str]) -> None:
    out, heavy = start(args, db)
    assert heavy == [], f"`zoo {' '.join(args)}` imported {heavy}"
    if args[0] == "--help":  # the plugins' commands are listed all the same
        assert {"train", "demo", "list", "show"} <= {
            line.split()[0] for line in out.splitlines() if line[:2] == "  "
        }
    elif args[0] != "jobs":
        assert "net" in out


def test_a_plugin_command_still_runs_and_loads_what_it_needs(db: Path) -> None:
    out, heavy = start(["train", "--help"], db)
    assert "Train the generator" in out and heavy == []  # its help is light too
    out, heavy = start(["plugins"], db)
    assert "cnn" in out and "torch" in heavy  # listing families loads them (and torch)


def test_without_autoload_the_plugins_commands_are_not_there(db: Path) -> None:
    out, heavy = start(["--help"], db, ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    commands = {line.split()[0] for line in out.splitlines() if line[:2] == "  "}
    assert "list" in commands and "train" not in commands and heavy == []


def test_no_built_in_plugin_adds_commands() -> None:
    """:func:`zoo.plugins.register_commands` skips the built-in plugins (so that help does not load the
    families): this holds only while none of them implements ``zoo_register_commands``."""
    from zoo.plugins import BUILTIN_PLUGINS

    builtin = [p for p in zoo.list_plugins() if p.name in BUILTIN_PLUGINS]
    assert builtin and all("zoo_register_commands" not in p.hooks for p in builtin)


def test_every_public_name_of_zoo_imports() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import zoo\nfor n in zoo.__all__: getattr(zoo, n)\nprint(len(zoo.__all__))"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and int(proc.stdout) == len(zoo.__all__), proc.stderr
    assert set(zoo.__all__) <= set(dir(zoo))


def test_a_run_time_plugin_adds_a_command() -> None:
    import click
    from click.testing import CliRunner

    from zoo.cli import cli

    class Hello:
        @zoo.hookimpl
        def zoo_register_commands(self, cli: click.Group) -> None:
            cli.add_command(click.Command("hello", callback=lambda: click.echo("hello from a plugin")))

    name = zoo.register_plugin(Hello(), name="hello")
    try:
        res = CliRunner().invoke(cli, ["hello"])
        assert res.exit_code == 0 and res.output == "hello from a plugin\n", res.output
    finally:
        zoo.unregister_plugin(name)
        cli.commands.pop("hello", None)
