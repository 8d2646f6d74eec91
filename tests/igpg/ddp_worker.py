"""The program every rank runs for tests/igpg/test_distributed.py (a helper, not a test module).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/igpg/ddp_worker.py REGISTRY OUT

On the gloo backend (CPU) it checks the EMA quantizer's cross-rank statistics, trains a generator on the
registry with :func:`igpg.train_on_registry` (rank 0 stores it), checks that training interrupted in either
stage resumes exactly, and writes what it ended with to ``OUT/rank<r>.pt`` for the test to compare.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from igpg import distributed
from igpg.prior import PriorConfig
from igpg.quantizers import EMAQuantizer
from igpg.tokenizer import TokenizerConfig
from igpg.train import TrainConfig

ARCH = "cnn-tiny"
K = 64
QUANT = {"size": 16, "dim": 8, "decay": 0.9, "dead_threshold": 1.15}  # codes used at most twice die
QUANT_BATCH = 48  # vectors per rank


def config(
    checkpoint_dir: str | None = None, tokenizer_steps: int = 30, prior_steps: int = 16
) -> TrainConfig:
    """The tiny training set-up of the test (global batches: 64 chunks, 4 sequences)."""
    return TrainConfig(
        tokenizer=TokenizerConfig(codebook_size=16, levels=2, hidden=32),
        prior=PriorConfig(block_size=32, n_layer=1, n_head=2, n_embd=32),
        tokenizer_steps=tokenizer_steps,
        prior_steps=prior_steps,
        tokenizer_batch=64,
        prior_batch=4,
        device="cpu",
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=5,
    )


def quantizer_vectors() -> torch.Tensor:
    """(ranks=2, QUANT_BATCH, dim) vectors: rank r quantizes row r. Also the test's reference data."""
    torch.manual_seed(0)
    return torch.randn(2, QUANT_BATCH, QUANT["dim"])


def quantizer_step() -> dict[str, torch.Tensor]:
    """One training step of an EMA quantizer, each rank on its own vectors and its own random stream."""
    xs = quantizer_vectors()
    q = EMAQuantizer(**QUANT)  # type: ignore[arg-type]
    torch.manual_seed(100 + distributed.rank())  # without syncing, initial and re-seeded codes would differ
    q.train()
    q(xs[distributed.rank()])
    return {k: v.clone() for k, v in q.state_dict().items()}


def resume_checks(registry: Any, out: Path) -> dict[str, bool]:
    """Interrupt training after step 5 of each stage, rerun, and compare with an uninterrupted run."""
    import zoo
    from igpg import train as tr
    from igpg.data import load_zoo

    data = load_zoo(
        registry, [r for r in registry.search(arch=zoo.resolve_arch(ARCH)) if r.dataset], k=K, progress=False
    )
    cpu = torch.device("cpu")

    def run(directory: Path) -> list[dict[str, torch.Tensor]]:
        c = config(str(directory), tokenizer_steps=10, prior_steps=10)
        tok, _ = tr.train_tokenizer(data, c, cpu, progress=False)
        prior, _ = tr.train_prior(data, tr.encode_zoo(tok, data), c, cpu, progress=False)
        return [tok.state_dict(), prior.state_dict()]

    straight = run(out / "resume-straight")
    original = tr._Resume.save
    results = {}
    for target in ("stage1", "stage2"):

        def crash(self, step, *args, _target=target, **kwargs):  # type: ignore[no-untyped-def]
            original(self, step, *args, **kwargs)
            if step == 5 and _target in self.path.name:
                raise KeyboardInterrupt  # every rank dies right after the save

        tr._Resume.save = crash  # type: ignore[method-assign]
        try:
            run(out / f"resume-{target}")
            results[target] = False  # it should have been interrupted
            continue
        except KeyboardInterrupt:
            pass
        finally:
            tr._Resume.save = original  # type: ignore[method-assign]
        resumed = run(out / f"resume-{target}")
        results[target] = all(torch.equal(a[k], b[k]) for a, b in zip(straight, resumed) for k in a)
    return results


def main(registry_path: str, out_dir: str) -> None:
    import zoo
    from igpg import train_on_registry

    out = Path(out_dir)
    distributed.init_from_env("cpu")  # held for the whole program, so ranks can be compared at the end
    try:
        assert distributed.is_distributed() and distributed.backend() == "gloo"
        result: dict[str, Any] = {
            "rank": distributed.rank(),
            "world": distributed.world_size(),
            "quantizer": quantizer_step(),
        }
        reg = zoo.Registry(registry_path)
        cfg = config(str(out / "train-state"))
        gen, rec = train_on_registry(reg, arch=ARCH, k=K, config=cfg, progress=False)
        result.update(
            tokenizer=gen.tokenizer.state_dict(), prior=gen.prior.state_dict(), ref=rec.ref, info=gen.info
        )
        result["resume"] = resume_checks(reg, out)
        torch.save(result, out / f"rank{distributed.rank()}.pt")
        distributed.barrier()
        reg.close()
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
