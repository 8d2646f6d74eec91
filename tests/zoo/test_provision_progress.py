"""Generation shows a progress bar on a terminal (the generator kind's steps, time left), and nothing when
stderr is not one."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from tests.zoo_families.test_third_party_plugin import guide_generator_example


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def kinds() -> Iterator[dict[str, Any]]:
    """The guide's ``meanweights`` kind (reports no steps) and a subclass that reports 7 steps per sample
    call, registered as a run-time plugin; and a registry with two cnn-tiny checkpoints of ``noise``."""
    module = type(sys)("zoo_meanweights")
    sys.modules["zoo_meanweights"] = module
    exec(compile(guide_generator_example(), "zoo_meanweights.py", "exec"), module.__dict__)

    class Stepping(module.MeanWeightsKind):  # type: ignore[name-defined,misc]
        name = "stepping"
        calls: list[int] = []

        def sample_steps(self, generator: Any, spec: zoo.ArchSpec) -> int:
            return 7

        def sample(self, *args: Any, progress: Any = None, **kwargs: Any) -> list[torch.nn.Module]:
            for _ in range(7):
                progress.update(1)
            self.calls.append(7)
            return super().sample(*args, **kwargs)

    class Plugin:
        @zoo.hookimpl
        def zoo_register_generators(self, register: Any) -> None:
            register(module.MeanWeightsKind())
            register(Stepping())

    name = zoo.register_plugin(Plugin(), name="progress-kinds")
    try:
        yield {
            "meanweights": zoo.get_generator_kind("meanweights"),
            "stepping": zoo.get_generator_kind("stepping"),
        }
    finally:
        zoo.unregister_plugin(name)
        sys.modules.pop("zoo_meanweights", None)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[zoo.Registry]:
    spec = zoo.resolve_arch("cnn-tiny")
    reg = zoo.Registry(tmp_path / "registry.db")
    g = torch.Generator().manual_seed(0)
    reg.register_dataset(
        "noise",
        zoo.as_dataset((torch.rand(20, 1, 28, 28, generator=g), torch.arange(20) % 10)),
        encoders=["pixels"],
    )
    for seed in range(2):
        torch.manual_seed(seed)
        reg.add(zoo.get_family("cnn").build(spec), name=f"noise-s{seed}", arch=spec, dataset="noise")
    try:
        yield reg
    finally:
        reg.close()


@pytest.mark.parametrize("kind", ["stepping", "meanweights"])
def test_generation_shows_a_progress_bar_on_a_terminal(
    kinds: dict[str, Any], registry: zoo.Registry, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, rec = kinds[kind].train(registry, arch="cnn-tiny", name=kind, config={"noise": 0.0})
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    p = zoo.generate("cnn-tiny", "noise", registry=registry, generator=rec.ref)
    assert p.source == "generated" and p.generator is not None and p.generator.ref == rec.ref
    shown = err.getvalue()
    assert "generate cnn-tiny x1" in shown, shown
    if kind == "stepping":  # a kind that counts its steps gets a bar of them
        assert "0/7 [" in shown and kinds["stepping"].calls == [7]  # (updates within 0.1 s are not drawn)
    else:  # the guide's kind reports none: it is called without progress=, and the bar shows the time
        assert "/" not in shown.split("generate cnn-tiny x1", 1)[1].split("[", 1)[0]


def test_no_bar_when_stderr_is_not_a_terminal(
    kinds: dict[str, Any], registry: zoo.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, rec = kinds["stepping"].train(registry, arch="cnn-tiny", name="stepping", config={"noise": 0.0})
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    p = zoo.generate("cnn-tiny", "noise", registry=registry, generator=rec.ref)
    assert p.source == "generated" and err.getvalue() == ""
