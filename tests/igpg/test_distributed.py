"""DDP training for real: two CPU processes on the gloo backend, launched by torch.distributed.run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import zoo
from igpg import distributed
from igpg.prior import WeightPrior
from igpg.quantizers import EMAQuantizer
from igpg.registry_io import load_generator
from igpg.tokenizer import TokenizerConfig, WeightTokenizer
from tests.igpg import ddp_worker as worker
from zoo.embeddings import embed_arch, get_embedding

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with gloo is not available",
)


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A registry of three (untrained) tiny CNNs, and the two ranks' results of the worker run on it."""
    root = tmp_path_factory.mktemp("ddp")
    reg = zoo.Registry(root / "registry.db")
    reg.register_dataset("digits", "digits")
    spec, family = zoo.resolve_arch(worker.ARCH), zoo.get_family("cnn")
    for seed in range(3):
        torch.manual_seed(seed)
        reg.add(family.build(spec), name=f"tiny-s{seed}", arch=spec, dataset="digits")
    out = root / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ZOO_REGISTRY_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(Path(worker.__file__)),
        str(root / "registry.db"),
        str(out),
    ]
    # no timeout of its own: a slow machine is not a failure; a hung rendezvous is ended by pytest-timeout
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("[rank")]
    assert proc.returncode == 0, "\n".join(errors[-40:]) or proc.stderr[-4000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    yield reg, out, ranks
    reg.close()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_both_ranks_end_with_the_same_trained_models(launched) -> None:  # type: ignore[no-untyped-def]
    _, _, (r0, r1) = launched
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    assert _same(r0["tokenizer"], r1["tokenizer"]) and _same(r0["prior"], r1["prior"])
    codebooks = [k for k in r0["tokenizer"] if k.endswith(("codebook", "cluster_size", "embed_sum"))]
    assert len(codebooks) == 3 * 2  # two EMA levels
    assert all(torch.equal(r0["tokenizer"][k], r1["tokenizer"][k]) for k in codebooks)
    assert r0["info"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert r0["info"]["prior_final_loss"] == r1["info"]["prior_final_loss"]  # a mean over ranks

    # training moved everything away from the initialisation (the same on every rank: the config's seed)
    cfg = worker.config()
    gen = load_generator(launched[0], r0["ref"])
    vocab = {"num_roles": gen.vocab.num_roles, "num_kinds": gen.vocab.num_kinds}  # the zoo's roles and kinds
    expected = {**cfg.tokenizer.to_dict(), "k": worker.K, "coords": cfg.coords, **vocab}
    assert gen.tokenizer.config == TokenizerConfig(**expected)  # what training built (its seed's init below)
    torch.manual_seed(cfg.seed)
    tok0 = WeightTokenizer(gen.tokenizer.config).state_dict()
    assert all(not torch.equal(tok0[k], r0["tokenizer"][k]) for k in tok0 if not k.endswith("initted"))
    torch.manual_seed(cfg.seed + 1)
    prior0 = WeightPrior(gen.prior.config).state_dict()
    changed = [k for k in prior0 if not torch.equal(prior0[k], r0["prior"][k])]
    assert len(changed) == len(prior0)


def test_rank_zero_alone_stores_a_generator_that_samples(launched) -> None:  # type: ignore[no-untyped-def]
    reg, _, (r0, r1) = launched
    assert r0["ref"] == r1["ref"] == "igpg:v1"
    assert [g.ref for g in reg.generators()] == ["igpg:v1"]
    gen = load_generator(reg, "igpg:v1")
    assert _same(gen.tokenizer.state_dict(), r0["tokenizer"]) and _same(gen.prior.state_dict(), r0["prior"])
    spec = zoo.resolve_arch(worker.ARCH)
    ds = torch.tensor(get_embedding(reg, "dataset", "digits", gen.dataset_encoder).vector)
    arch = torch.tensor(embed_arch(reg, spec).vector)
    (net,) = gen.sample(spec, ds, arch, n=1, top_k=8, seed=0)
    out = net(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_training_state_holds_every_ranks_random_streams_and_resumes_exactly(launched) -> None:  # type: ignore[no-untyped-def]
    _, out, (r0, r1) = launched
    for stage in ("stage1-tokenizer", "stage2-prior"):
        state = torch.load(out / "train-state" / f"{stage}.pt", weights_only=True)
        assert len(state["rank_states"]) == 2
        assert not torch.equal(state["rank_states"][0][0], state["rank_states"][1][0])  # own data streams
        assert torch.equal(state["rank_states"][0][0], state["generator"])
    assert r0["resume"] == r1["resume"] == {"stage1": True, "stage2": True}


def test_ema_statistics_are_those_of_the_global_batch_on_every_rank(launched) -> None:  # type: ignore[no-untyped-def]
    _, _, (r0, r1) = launched
    q0, q1 = r0["quantizer"], r1["quantizer"]
    assert _same(q0, q1)  # the same codebook everywhere, dead-code replacements included
    # the single-process reference: rank 0's initial codebook, updated with both ranks' vectors at once
    xs = worker.quantizer_vectors()
    ref = EMAQuantizer(**worker.QUANT)  # type: ignore[arg-type]
    torch.manual_seed(100)
    ref._init(xs[0])
    both = xs.reshape(-1, xs.shape[-1])
    ref._update(both, ref.nearest(both))
    dead = ref.cluster_size == 1.0  # replaced codes restart at 1.0; used ones are above it
    assert dead.any() and (~dead).any()
    assert torch.equal(q0["cluster_size"], ref.cluster_size)  # integer counts sum exactly
    assert torch.allclose(q0["embed_sum"][~dead], ref.embed_sum[~dead], atol=1e-6)
    assert torch.allclose(q0["codebook"][~dead], ref.codebook[~dead], atol=1e-6)
    # replacements are vectors of rank 0's batch (drawn there and broadcast)
    assert all((xs[0] == row).all(1).any() for row in q0["codebook"][dead])


def test_single_process_needs_no_process_group() -> None:
    assert not distributed.is_initialized() or not distributed.is_distributed()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.shard(7) == 7 and distributed.rank_seed(3) == 3
    assert distributed.mean_over_ranks(2.5) == 2.5 and distributed.broadcast_object([1]) == [1]
    assert distributed.gather_objects("x") == ["x"] and distributed.main_first(lambda: 4) == 4
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model
