"""Several processes writing one embedded SQLite registry at once: no lock errors reach users, no lost rows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import zoo

WORKER = textwrap.dedent("""
    import json, sys, torch, zoo
    db, wid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    reg = zoo.Registry(db)
    spec = zoo.resolve_arch("cnn-tiny")
    fam = zoo.get_family("cnn")
    errors = []
    for i in range(n):
        try:
            torch.manual_seed(1000 * wid + i)
            rec = reg.add(fam.build(spec), name="shared", arch=spec, tags=[f"w{wid}"])  # one name: versions race
            reg.alias(rec.ref, "latest")
            reg.get("shared@latest")
            if i % 3 == 0:
                torch.manual_seed(99999)
                reg.add(fam.build(spec), name=f"same-{wid}-{i}", arch=spec)  # identical weights: one shared blob
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps(errors))
""")


def test_parallel_writers_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    zoo.Registry(db).close()  # migrate once up front, as a deployed registry would be
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(db), str(w), "8"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == []
    with zoo.Registry(db) as reg:
        versions = reg.versions("shared")
        assert [r.version for r in versions] == list(range(1, 33))
        assert sorted({r.sha256 for r in versions}).__len__() == 32
        assert len(reg.search(name="same-*")) == 4 * 3
        assert reg.stats()["blobs"] == 33  # 32 distinct + 1 shared by every "same-*" checkpoint
        assert reg.verify().clean
