"""Killing real processes in the middle of registry writes, and checking what they leave behind.

A *zygote* process imports torch, zoo and igpg once and then forks a worker per round, on request, so that a
round costs a fork instead of a Python start-up (the kills are what is being tested, not start-up time).
Workers open their own registry after the fork (no connection crosses it) and then:

- ``add``: loop forever over adds (new weights, the same weights under another name, several names with
  versions), removals and generator blobs, in a seeded random order, appending one byte to a progress file
  (``progress_path``) after each operation; :func:`run_kill_rounds` waits until the worker has finished a
  seeded number of operations and only then starts the seeded random delay before its SIGKILL, so every kill
  lands inside the endless loop of writes, however fast or slow the machine is;
- ``die:POINT``: run one operation and SIGKILL themselves at a named point inside it (``temp-written``,
  ``blob-renamed``, ``row-inserted``, ``removed-row``, ``file-deleted``, ``generator-renamed``), so that the
  narrowest windows are hit every time, not only by chance;
- ``train``: train a tiny generator with a ``checkpoint_dir`` and store it; ``train-die:STAGE:STEP:WHEN`` does
  the same and SIGKILLs itself at training step STEP of STAGE (``stage1``/``stage2``): ``before`` saving that
  step's state, or while ``renaming`` the state file written for it into place;
- ``reindex``: one re-indexing run over a watch folder; ``reindex-die:POINT:N`` the same, SIGKILLed at the
  N-th passage through a named point of the run (:data:`REINDEX_POINTS`, in the order a run passes them; at
  the import points, the N-th file this run imports).

A kill point that is never reached makes the worker exit with code 3 (not -SIGKILL), which the tests count
as a failure: a kill is never silently skipped because the work ended first.

After every kill, :func:`check` asserts the invariants: every row's blob exists with the right hash; every
blob file under its final name hashes to its name (nothing half-written is ever in place); SQLite's
integrity check passes; ``verify()`` reports nothing but orphans, which ``verify(repair=True, grace_s=0)``
(or ``zoo verify --repair --grace 0``) removes, leaving the registry clean; and checkpoints still load.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zoo

ZYGOTE = textwrap.dedent(r'''
    import os, random, signal, sys, time
    import torch
    torch.set_num_threads(1)
    import zoo, igpg
    from zoo.store.blobs import BlobStore
    from zoo.store.blobrows import BlobRepository
    from zoo.store.checkpoints import CheckpointRepository
    from zoo.registry import Registry

    SPEC = zoo.resolve_arch("cnn-tiny")
    FAM = zoo.get_family("cnn")
    torch.manual_seed(0)
    BASE = FAM.build(SPEC).state_dict()
    FAM.canonicalize(SPEC, BASE)  # plugins loaded, templates cached: children start warm ...
    BlobStore.serialize(BASE)
    from zoo.store.db import head_revision
    head_revision()  # ... and the migration scripts parsed (no database is opened before the fork)

    import hashlib
    import numpy as np
    from zoo.encoders.base import TextEncoder
    from zoo.plugins import register_plugin

    class HashText(TextEncoder):
        """A text encoder that needs no model: training workers start in a blink."""
        id = "crash-hash"
        version = "1"
        dim = 16

        def embed(self, texts):
            v = np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:16], np.uint8) for t in texts])
            v = v.astype(np.float32) + 1.0
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    class TextPlugin:
        @zoo.hookimpl
        def zoo_register_text_encoders(self, register):
            register(HashText())

    register_plugin(TextPlugin(), name="crash-text")

    def weights(i):
        return {k: v + i * 1e-4 if v.dtype.is_floating_point else v for k, v in BASE.items()}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(owner, attr, before=False, nth=1, counts=None):
        """SIGKILL this process at the ``nth`` call of ``owner.attr``: before it runs, or after it returns;
        then only calls whose result ``counts(result)`` says yes are counted (a call that raises never is)."""
        original = getattr(owner, attr)
        calls = [0]
        def hooked(*a, **k):
            if before:
                calls[0] += 1
                if calls[0] >= nth:
                    die()
                return original(*a, **k)
            out = original(*a, **k)
            calls[0] += counts is None or bool(counts(out))
            if calls[0] >= nth:
                die()
            return out
        setattr(owner, attr, hooked)

    POINTS = {  # name -> (owner, attribute, kill before calling it)
        # temp file written, not yet renamed into place
        "temp-written": (BlobStore, "_commit", True),
        # blob in place, no row yet
        "blob-renamed": (BlobStore, "put_tensors", False),
        # rows written, transaction not committed
        "row-inserted": (CheckpointRepository, "insert_rows", False),
        # checkpoint row gone, blob row 'deleting'
        "removed-row": (BlobRepository, "drop_if_unreferenced", True),
        # blob file deleted, its row's deletion not committed
        "file-deleted": (BlobStore, "delete", False),
        # generator blob in place, no row yet
        "generator-renamed": (BlobStore, "put", False),
    }

    import zoo.reindexing.importing as importing  # where each patched function of a run lives
    import zoo.reindexing.runner as runner
    import zoo.reindexing.stage as reindex_stage

    def new_blob(out):  # put_tensors: (sha256, a new file was written, size)
        return out[1]

    def new_row(rec):  # insert_rows and add: a checkpoint this run made (not one found again by exist_ok)
        return rec.id > NEWEST[0]

    NEWEST = [0]  # the newest checkpoint id when the run starts
    # name -> (owner, attribute, kill before calling it, which calls count), counted over one re-indexing run;
    # the import points count new imports only, so that the N-th one is the N-th file this run imports
    REINDEX_POINTS = {
        # a new import's blob in place, no row
        "import-blob-renamed": (BlobStore, "put_tensors", False, new_blob),
        # rows written, not committed
        "import-row-inserted": (CheckpointRepository, "insert_rows", False, new_row),
        # a file imported, not yet remembered
        "imported": (Registry, "add", False, new_row),
        # every file imported, none remembered
        "files-flushed": (importing, "_flush", True, None),
        # blobs hashed, orphans repaired, not saved
        "verified": (Registry, "verify", False, None),
        # all work done, the outcome not recorded
        "run-finished": (runner, "finish_run", True, None),
    }

    def train_die(stage, step, when):
        """SIGKILL at training step ``step`` of ``stage``: before its state is saved,
        or mid-rename of the file."""
        import igpg.train as tr
        import zoo.atomic as atomic  # every state file is written through zoo.atomic.atomic_write
        original = tr._Resume.save
        def save(self, at, *a, **k):
            if self.path is not None and self.path.name.startswith(stage) and at == step:
                if when == "before":
                    die()
                def replace(src, dst):  # torch.save wrote the temporary file; it is not renamed into place
                    die()
                atomic.os.replace = replace  # this process dies inside the call: nothing else will rename
            return original(self, at, *a, **k)
        tr._Resume.save = save

    def op(reg, rng, i, r):
        """One random registry write."""
        if r < 0.55:
            reg.add(weights(i), arch=SPEC, name=f"net{rng.randrange(6)}", dataset="d0",
                    metrics={"accuracy": rng.random()}, tags=["crash"])
        elif r < 0.7:
            reg.add(weights(7), arch=SPEC, name=f"same{rng.randrange(3)}", exist_ok=True)  # one shared blob
        elif r < 0.85:
            recs = reg.list(limit=20)
            if recs:
                reg.remove(rng.choice(recs).id)
        elif r < 0.93:
            newest = reg.list(name=f"net{rng.randrange(6)}", limit=1)  # an alias names one version
            if newest:
                reg.alias(newest[0].ref, "best")
        else:
            data = BlobStore.serialize({"w": torch.full((64,), float(i))})
            reg.add_generator(data, families=["cnn"], config={}, metrics={}, trained_on=[])

    def worker(db, seed, mode, arg):
        rng = random.Random(seed)
        reg = Registry(db)
        if mode == "add":
            i = seed * 100_000
            with open(arg or os.devnull, "ab", buffering=0) as progress:
                while True:
                    i += 1
                    try:
                        op(reg, rng, i, rng.random())
                    except zoo.NotFoundError:  # the name it picked was removed meanwhile
                        pass
                    progress.write(b".")  # one byte per finished operation: the parent waits for these
        elif mode.startswith("die:"):
            point = mode[4:]
            owner, attr, before = POINTS[point]
            if point in ("removed-row", "file-deleted"):
                rec = reg.add(weights(seed * 100_000 + 99_999), arch=SPEC, name=f"doomed{seed}")
                wrap(owner, attr, before)
                reg.remove(rec.id)
            elif point == "generator-renamed":
                wrap(owner, attr, before)
                reg.add_generator(BlobStore.serialize({"w": torch.full((64,), float(seed))}),
                                  families=["cnn"], config={}, metrics={}, trained_on=[])
            else:
                wrap(owner, attr, before)
                reg.add(weights(seed * 100_000 + 99_999), arch=SPEC, name=f"die{seed}")
            raise SystemExit(f"{point} was never reached")
        elif mode == "train" or mode.startswith("train-die:"):
            if mode != "train":
                stage, step, when = mode.split(":")[1:]
                train_die(stage, int(step), when)
            cfg = igpg.TrainConfig(
                tokenizer=igpg.TokenizerConfig(codebook_size=16, levels=1, hidden=32),
                prior=igpg.PriorConfig(block_size=32, n_layer=1, n_head=2, n_embd=32),
                tokenizer_steps=40, prior_steps=24, tokenizer_batch=128, prior_batch=2, device="cpu",
                checkpoint_dir=arg, checkpoint_every=1)
            igpg.train_on_registry(reg, arch="cnn-tiny", k=64, config=cfg, progress=False,
                                   text_encoder="crash-hash")
            if mode != "train":
                raise SystemExit(f"{mode} was never reached")
        elif mode == "reindex" or mode.startswith("reindex-die:"):
            if mode != "reindex":
                point, nth = mode.split(":")[1:]
                owner, attr, before, counts = REINDEX_POINTS[point]
                NEWEST[0] = reindex_stage.newest_id(reg)
                wrap(owner, attr, before, int(nth), counts)
            zoo.reindex(reg, watch=[arg], embeddings=False, retrain=False)
            if mode != "reindex":
                raise SystemExit(f"{mode} was never reached")
        reg.close()

    ended = {}  # pid -> how it ended, for workers reaped by "poll" before the parent asked to "wait"

    def status_code(status):
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        return os.WEXITSTATUS(status) if not sig else -sig

    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "fork":
            db, seed, mode, arg = args[0], int(args[1]), args[2], (args[3] if len(args) > 3 else "")
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    sys.stdin.close()
                    worker(db, seed, mode, arg)
                except BaseException as exc:  # an error is a finding: the parent sees exit code 3
                    import traceback
                    traceback.print_exc()
                    code = 3
                finally:
                    os._exit(code)
            print(pid, flush=True)
        elif cmd == "wait":
            pid = int(args[0])
            if pid not in ended:
                ended[pid] = status_code(os.waitpid(pid, 0)[1])
            print(ended.pop(pid), flush=True)
        elif cmd == "poll":
            pid = int(args[0])
            if pid not in ended:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    ended[pid] = status_code(status)
            print(ended.get(pid, "running"), flush=True)
''')


# the named kill points of the workers, as the tests name them (the zygote script defines what each one hooks)
POINTS = ("temp-written", "blob-renamed", "row-inserted", "removed-row", "file-deleted", "generator-renamed")
REINDEX_POINTS = (
    "import-blob-renamed",
    "import-row-inserted",
    "imported",
    "files-flushed",
    "verified",
    "run-finished",
)  # in the order a re-indexing run passes them


class Zygote:
    """The forking parent of kill rounds (a real process; its children are real processes)."""

    def __init__(self, workdir: Path) -> None:
        script = workdir / "zygote.py"
        script.write_text(ZYGOTE)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        line = self._read()
        if line != "ready":
            raise RuntimeError(f"zygote did not start: {line!r}")

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"zygote exited with {self.proc.wait()}")
        return line.strip()

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def fork(self, db: Path, seed: int, mode: str, arg: str = "") -> int:
        """Start a worker on the registry at ``db`` (paths without spaces); returns its pid."""
        self._send(f"fork {db} {seed} {mode} {arg}".strip())
        return int(self._read())

    def wait(self, pid: int) -> int:
        """The worker's exit code, or minus the signal that ended it."""
        self._send(f"wait {pid}")
        return int(self._read())

    def poll(self, pid: int) -> int | None:
        """How the worker ended (as :meth:`wait` says), or None while it runs."""
        self._send(f"poll {pid}")
        answer = self._read()
        return None if answer == "running" else int(answer)

    def wait_for_progress(self, pid: int, progress: Path, ops: int) -> int | None:
        """Block until an ``add`` worker has finished ``ops`` operations (its progress file holds that many
        bytes); None then, or how it ended if it ended first (an error: the loop never ends by itself). No
        deadline: however slow the machine, the wait ends when the work is there (pytest-timeout guards
        hangs)."""
        while not (progress.exists() and progress.stat().st_size >= ops):
            code = self.poll(pid)
            if code is not None:
                return code
            time.sleep(0.005)
        return None

    def kill_after(self, pid: int, delay_s: float) -> int:
        """SIGKILL the worker after ``delay_s`` (unless it ended first); returns how it ended."""
        time.sleep(delay_s)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.wait(pid)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Findings:
    """What one check found: debris a kill may leave (cleaned by repair) and
    inconsistencies (must be none)."""

    orphan_files: int = 0  # blob files no row references (and stale temp files)
    orphan_rows: int = 0  # blob rows nothing references
    inconsistencies: list[str] = field(default_factory=list)


def sqlite_integrity(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def check(reg: zoo.Registry, *, repair: str = "api", load: int = 3) -> Findings:
    """Assert-free check of every invariant after a kill (nothing else may be writing); repairs orphans with
    the API (``repair="api"``) or the command line (``"cli"``, ``zoo verify --repair --grace 0``)."""
    out = Findings()
    db = Path(reg.url.removeprefix("sqlite:///"))
    integrity = sqlite_integrity(db)
    if integrity != "ok":
        out.inconsistencies.append(f"sqlite integrity_check: {integrity}")
    rep = reg.verify(grace_s=0)
    if rep.missing or rep.corrupt:
        out.inconsistencies.append(f"rows without a sound blob: missing {rep.missing}, corrupt {rep.corrupt}")
    for sha in reg.blobs.iter_shas():  # nothing half-written under a final name, referenced or not
        if hashlib.sha256(reg.blobs.path(sha).read_bytes()).hexdigest() != sha:
            out.inconsistencies.append(f"blob file {sha[:12]} does not hash to its name")
    out.orphan_files, out.orphan_rows = len(rep.orphan_files), len(rep.orphan_rows)
    if repair == "cli":
        from click.testing import CliRunner

        from zoo.cli import cli

        res = CliRunner().invoke(
            cli,
            [
                "--registry",
                reg.url,
                "--blob-root",
                str(reg.blobs.root),
                "verify",
                "--repair",
                "--grace",
                "0",
                "--json",
            ],
        )
        text = res.output[res.output.find("{") :]  # log lines on stderr may come first
        if res.exit_code != 0 or not json.JSONDecoder().raw_decode(text)[0]["repaired"]:
            out.inconsistencies.append(f"zoo verify --repair failed ({res.exit_code}): {res.output[-500:]}")
    else:
        reg.verify(repair=True, grace_s=0)
    after = reg.verify(grace_s=0)
    if not after.clean:
        out.inconsistencies.append(f"not clean after repair: {after.to_dict()}")
    stats = reg.stats()
    referenced = {r.sha256 for r in reg.list()} | {g.sha256 for g in reg.generators()}
    if stats["blobs"] != len(referenced) or set(reg.blobs.iter_shas()) != referenced:
        out.inconsistencies.append(
            f"{stats['blobs']} blob rows, {len(referenced)} referenced blobs, "
            f"{len(set(reg.blobs.iter_shas()))} blob files after repair"
        )
    for rec in reg.list(limit=load):
        try:
            reg.load(rec)
        except Exception as exc:  # a finding, reported by the caller
            out.inconsistencies.append(f"{rec.ref} does not load: {type(exc).__name__}: {exc}")
    return out


def run_kill_rounds(
    reg: zoo.Registry,
    zygote: Zygote,
    *,
    random_kills: int,
    seed: int = 0,
    points: tuple[str, ...] = (
        "temp-written",
        "blob-renamed",
        "row-inserted",
        "removed-row",
        "file-deleted",
        "generator-renamed",
    ),
    max_delay_s: float = 0.4,
    max_ops_first: int = 5,
) -> dict[str, Any]:
    """Deterministic kills at every named point, then ``random_kills`` kills of the endless ``add`` loop, each
    once the worker has finished a seeded number of operations (1 to ``max_ops_first``) and then a seeded
    random delay (up to ``max_delay_s``) later; checks after each. Returns counts and every inconsistency
    found (there must be none). Where a random kill lands depends on the machine's speed; that it lands inside
    the loop of writes, and what is checked afterwards, do not."""
    import random

    rng = random.Random(seed)
    db = Path(reg.url.removeprefix("sqlite:///"))
    result: dict[str, Any] = {
        "kills": 0,
        "point_kills": {},
        "orphan_files_repaired": 0,
        "orphan_rows_repaired": 0,
        "inconsistencies": [],
        "worker_errors": [],
        "ops_between_kills": [],
        "ops_before_kill": [],
    }
    rounds: list[tuple[str, int, float]] = [(f"die:{p}", 0, 0.0) for p in points]
    rounds += [
        ("add", rng.randint(1, max_ops_first), rng.uniform(0.0, max_delay_s)) for _ in range(random_kills)
    ]
    for i, (mode, ops, delay) in enumerate(rounds):
        before = reg.stats()["checkpoints"]
        if mode == "add":
            progress = db.parent / f"progress-{seed}-{i}"
            pid = zygote.fork(db, seed * 1000 + i, mode, str(progress))
            code = zygote.wait_for_progress(pid, progress, ops)
            if code is None:  # working: it cannot end by itself, so only this kill ends it
                code = zygote.kill_after(pid, delay)
            result["ops_before_kill"].append(progress.stat().st_size if progress.exists() else 0)
        else:
            pid = zygote.fork(db, seed * 1000 + i, mode)
            code = zygote.wait(pid)
        if code != -signal.SIGKILL:
            result["worker_errors"].append(f"round {i} ({mode}): worker ended with {code}")
            continue
        result["kills"] += 1
        if mode != "add":
            result["point_kills"][mode[4:]] = result["point_kills"].get(mode[4:], 0) + 1
        found = check(reg, repair="cli" if i % 4 == 3 else "api")
        result["orphan_files_repaired"] += found.orphan_files
        result["orphan_rows_repaired"] += found.orphan_rows
        result["inconsistencies"] += [
            f"round {i} ({mode}, {ops} ops + {delay:.3f}s): {x}" for x in found.inconsistencies
        ]
        result["ops_between_kills"].append(reg.stats()["checkpoints"] - before)
    return result
