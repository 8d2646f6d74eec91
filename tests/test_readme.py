"""The README's code blocks run as written.

A fenced block right after a ``<!-- readme-test -->`` comment is executed: Python blocks (```python) in README
order in one namespace, shell blocks (```bash, ```shell, ```sh) in README order through ``bash -e -o
pipefail`` with this interpreter's ``zoo`` first on ``PATH``. Each kind runs in a fresh folder of its own
with a fresh registry (no ``ZOO_REGISTRY_URL`` or ``ZOO_BLOB_ROOT``). ``<!-- readme-test needs=PATH -->``
copies ``PATH`` (relative to the shared data folder, ``../shared/data``) into the folder first, and skips the
block, saying so, where the shared data does not hold it. A block that fails fails its test with the
README line and the output; the later blocks of its kind are then skipped (they would fail for the same
reason). Every Python and shell block in a "Quick start" section must be marked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from zoo.shared_data import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
KINDS = {"python": "python", "bash": "shell", "shell": "shell", "sh": "shell"}  # fence language -> kind
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)
MARK = re.compile(r"<!--\s*readme-test\b(?P<opts>[^>]*?)-->\s*$")
SHELL_TIMEOUT = 540  # seconds for one shell block (the suite's per-test timeout is 600)


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    lang: str  # the fence's language ("python", "bash", ...)
    code: str  # the text between the fences
    line: int  # 1-based README line of the opening fence
    section: str  # the nearest heading above it
    marked: bool  # a readme-test comment right above it
    needs: tuple[str, ...] = ()  # shared-data paths copied into the folder first

    @property
    def kind(self) -> str | None:
        return KINDS.get(self.lang)

    @property
    def id(self) -> str:
        return f"{self.kind}-line{self.line}"


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` in order, with its marker options."""
    blocks = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        opts = dict(o.split("=", 1) for o in mark["opts"].split() if "=" in o) if mark else {}
        headings = re.findall(r"^#{1,6} (.+)$", text[: m.start()], re.M)
        blocks.append(
            Block(
                lang=m["lang"],
                code=m["code"],
                line=text.count("\n", 0, m.start()) + 1,
                section=headings[-1] if headings else "",
                marked=mark is not None,
                needs=tuple(p for p in opts.get("needs", "").split(",") if p),
            )
        )
    return blocks


BLOCKS = readme_blocks(README.read_text())
RUN = [b for b in BLOCKS if b.marked]


@dataclass
class Session:
    """The folder, namespace and state the blocks of one kind share."""

    folder: Path
    namespace: dict[str, Any] = field(default_factory=dict)
    failed: str | None = None  # the id of the block that failed


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Session]]:
    made: dict[str, Session] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, kind: str) -> Session:
            made[kind] = self[kind] = Session(tmp_path_factory.mktemp(f"readme-{kind}"))
            return made[kind]

    yield Lazy()
    for s in made.values():
        for value in s.namespace.values():
            close = getattr(value, "close", None)
            if type(value).__name__ == "Registry" and callable(close):
                close()


def _copy_needs(block: Block, folder: Path) -> None:
    data = shared_data_dir()
    for rel in block.needs:
        src = data / rel if data is not None else None
        if src is None or not src.is_file():
            pytest.skip(f"README line {block.line} needs ../shared/data/{rel}, which is not present")
        shutil.copyfile(src, folder / Path(rel).name)


def _shell_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_REGISTRY_URL", "ZOO_BLOB_ROOT")}
    bindir = Path(sys.executable).parent
    if not (bindir / "zoo").is_file():  # no console script beside this interpreter: `python -m zoo`
        bindir = folder.parent / f"{folder.name}-bin"
        bindir.mkdir(exist_ok=True)
        shim = bindir / "zoo"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m zoo "$@"\n')
        shim.chmod(0o755)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def test_every_quick_start_block_is_run() -> None:
    """A quick start is what a newcomer pastes first: every Python and shell block in one is run."""
    quick = [b for b in BLOCKS if b.kind and b.section.lower().startswith("quick start")]
    assert quick, "the README has no quick start blocks"
    unmarked = [b.line for b in quick if not b.marked]
    assert not unmarked, f"quick start blocks at README lines {unmarked} lack <!-- readme-test -->"
    unknown = [b.line for b in RUN if b.kind is None]
    assert not unknown, f"readme-test blocks at lines {unknown} are neither python nor bash/shell/sh"


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_readme_block(block: Block, sessions: dict[str, Session], monkeypatch: pytest.MonkeyPatch) -> None:
    session = sessions[block.kind or "?"]
    if session.failed:
        pytest.skip(f"an earlier {block.kind} block ({session.failed}) failed")
    _copy_needs(block, session.folder)
    monkeypatch.delenv("ZOO_REGISTRY_URL", raising=False)
    monkeypatch.delenv("ZOO_BLOB_ROOT", raising=False)
    session.failed = block.id  # until it passes
    if block.kind == "python":
        monkeypatch.chdir(session.folder)
        exec(compile(block.code, f"README.md:{block.line}", "exec"), session.namespace)
    else:
        res = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.code],
            cwd=session.folder,
            env=_shell_env(session.folder),
            capture_output=True,
            text=True,
            timeout=SHELL_TIMEOUT,
        )
        if res.returncode:
            out = (res.stdout + res.stderr)[-4000:]
            pytest.fail(f"README line {block.line}: the shell block exited {res.returncode}:\n{out}")
    session.failed = None
