"""Window-by-window generation of big networks on CPU: time and peak memory against the network's size.

An untrained generator (random tokenizer and prior, default ``PriorConfig``: 256 chunk positions per
window, half a window of overlap) samples one network of each architecture through ``Generator.sample``:
the prior produces the chunk codes window by window with a KV cache, the tokenizer decodes them, and the
family rebuilds a module. Random weights measure the mechanism, not the quality: time and memory do not
depend on what the prior has learnt. The per-layer statistics that un-normalise the decoded chunks are
those of a freshly initialised network of the architecture (what ``Generator.collect_stats`` would keep of
one checkpoint), so that the result is a working module: BatchNorm running variances stay positive.

Each architecture runs in a fresh subprocess. Reported per architecture:
  time        wall seconds of ``Generator.sample``, split into setup (layout template and chunk coordinates,
              up to the first prior position), prior (all positions) and decode (tokenizer decode, unchunk,
              rebuild); positions/s, codes/s and parameters/s over the whole call, next to the rate of
              one window of the prior alone measured just before in the same process and the load
              average (the machine may be shared: a lower rate with a higher load is the load);
  memory      ``ru_maxrss`` of the child (whole process: interpreter, torch, the models, everything); the
              resident set right before ``sample`` and the peak above it, per stage (VmHWM reset through
              /proc/self/clear_refs at each stage boundary); compared with the network's float32 size and
              with one window's KV cache;
  windows     the resident set sampled every ``--rss-every`` positions during the prior stage: flat when
              memory is bounded by the window, not by the number of windows;
  check       the generated module's forward on one input (ImageNet ResNets: 1x3x224x224) gives finite
              logits of the right shape.

Step-by-step decoding runs many tiny ops, so it is sensitive to OpenMP threads competing with other
processes for the cores; ``--threads`` (default 1) sets the children's torch threads, and the parent first
times the prior alone at 1 and 2 threads (``--threads-probe`` positions each; 0 skips).

Prints JSON; ``--out FILE`` also writes it, ``--plot FILE`` draws time and peak memory against parameters.

    python bench/bench_window.py --k 1024 --out bench/results/window.json --plot bench/results/window.png
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import emit, machine

import zoo
from igpg.generator import ArchStats, Generator
from igpg.prior import ChunkCoords, PriorConfig, WeightPrior
from igpg.tokenizer import TokenizerConfig, WeightTokenizer
from zoo.chunking import STD_FLOOR

log = logging.getLogger("bench_window")

ARCHS = ("cnn-small", "resnet-18", "resnet-50", "resnet-101")
MB = 2**20


# -- helpers ---------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current VmRSS


def layer_stats(arch: str) -> tuple[list[float], list[float]]:
    """Per generated layer, mean and std (floored as the chunker does) of a freshly initialised network."""
    spec = zoo.resolve_arch(arch)
    family = zoo.get_family(spec.family)
    torch.manual_seed(0)
    state = family.build(spec).state_dict()
    means, stds = [], []
    for slot in family.layout(spec).generated:
        std, mean = torch.std_mean(state[slot.name].float(), correction=0)
        means.append(float(mean))
        stds.append(max(float(std), STD_FLOOR))
    return means, stds


def make_generator(k: int, spec_key: str, means: list[float], stds: list[float], seed: int = 0) -> Generator:
    """An untrained generator (random tokenizer and prior) that knows ``spec_key``'s statistics."""
    torch.manual_seed(seed)
    pc = PriorConfig()
    tok = WeightTokenizer(TokenizerConfig(k=k, levels=pc.levels, codebook_size=pc.vocab_size)).eval()
    prior = WeightPrior(pc).eval()
    stats = {
        spec_key: ArchStats(torch.tensor(means, dtype=torch.float64), torch.tensor(stds, dtype=torch.float64))
    }
    return Generator(tok, prior, k, "random", "random", stats, {"untrained": True})


def kv_cache_bytes(pc: PriorConfig, batch: int = 1) -> int:
    """Keys and values of one full window (2 conditioning + block_size positions), every block, float32."""
    return pc.n_layer * 2 * batch * (2 + pc.block_size) * pc.n_embd * 4


class Progress:
    """Receives Generator.sample's per-position updates: tqdm bar, stage boundaries, RSS samples."""

    def __init__(self, total: int, rss_every: int, desc: str) -> None:
        from tqdm import tqdm

        self.total, self.rss_every, self.done = total, rss_every, 0
        self.bar = tqdm(total=total, desc=desc, unit="pos", mininterval=2.0, file=sys.stderr)
        self.t_first = self.t_last = 0.0
        self.rss_first_kb = self.hwm_setup_kb = self.hwm_prior_kb = 0
        self.rss_series: list[tuple[int, float]] = []  # (positions done, VmRSS MB)

    def update(self, n: int = 1) -> None:
        if self.done == 0:  # the first position is out: the template exists, the prior stage runs
            self.t_first = time.perf_counter()
            self.hwm_setup_kb = _status_kb("VmHWM")
            self.rss_first_kb = _status_kb("VmRSS")
            _reset_hwm()
        self.done += n
        self.bar.update(n)
        if self.done % self.rss_every == 0 or self.done == 1:
            self.rss_series.append((self.done, _status_kb("VmRSS") / 1024))
        if self.done >= self.total:  # last position: the prior stage ends, decoding begins
            self.t_last = time.perf_counter()
            self.hwm_prior_kb = _status_kb("VmHWM")
            self.rss_series.append((self.done, _status_kb("VmRSS") / 1024))
            _reset_hwm()
            self.bar.close()


# -- one architecture, in a fresh process ------------------------------------------------------------------
def run_child(
    arch: str, k: int, stats_file: Path, temperature: float, rss_every: int, seed: int
) -> dict[str, Any]:
    spec = zoo.resolve_arch(arch)
    family = zoo.get_family(spec.family)
    layout = family.layout(spec)
    family.slots(spec)  # the family's meta template exists before measuring (a one-off per process)
    means, stds = json.loads(stats_file.read_text())
    gen = make_generator(k, spec.key, means, stds, seed)
    pc = gen.prior.config
    g = torch.Generator().manual_seed(seed)
    ds, arch_emb = torch.randn(pc.ds_dim, generator=g), torch.randn(pc.arch_dim, generator=g)
    positions = sum(-(-s.numel // k) for s in layout.generated)
    # warm-up: one window of the prior alone, so one-off costs (thread pool, kernels) fall outside the
    # measurement; its rate, taken moments before, is the reference for this process's positions/s
    load_start = [round(x, 2) for x in os.getloadavg()]
    n_warm = min(pc.block_size, positions)
    warm = ChunkCoords(
        torch.zeros(n_warm, dtype=torch.long), torch.arange(n_warm), torch.full((n_warm,), n_warm)
    )
    gen.prior.generate(warm.slice(0, 8), ds[None], arch_emb[None], temperature=temperature)
    t = time.perf_counter()
    gen.prior.generate(warm, ds[None], arch_emb[None], temperature=temperature)
    warm_rate = n_warm / (time.perf_counter() - t)
    gc.collect()
    rss_before_kb = _status_kb("VmRSS")
    progress = Progress(positions, rss_every, arch)
    _reset_hwm()
    t0 = time.perf_counter()
    (net,) = gen.sample(spec, ds, arch_emb, n=1, temperature=temperature, seed=seed, progress=progress)
    t_end = time.perf_counter()
    hwm_decode_kb = _status_kb("VmHWM")
    rss_after_kb = _status_kb("VmRSS")
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    assert progress.done == positions, (progress.done, positions)
    # the generated network works
    cfg = dict(spec.config)
    x = torch.randn(
        1,
        int(cfg.get("in_chans", 3)),
        int(cfg.get("input_size", 224)),
        int(cfg.get("input_size", 224)),
        generator=g,
    )
    net.eval()
    with torch.no_grad():
        logits = net(x)
    n_params = sum(p.numel() for p in net.parameters())
    weights_bytes = layout.num_generated * 4
    total = t_end - t0
    base = rss_before_kb
    return {
        "arch": arch,
        "spec": spec.key,
        "params": layout.num_params,
        "generated_values": layout.num_generated,
        "layers": len(layout.generated),
        "k": k,
        "positions": positions,
        "windows": _windows(positions, pc.block_size, pc.block_size // 2),
        "codes": positions * pc.levels,
        "time_s": {
            "total": total,
            "setup": progress.t_first - t0,
            "prior": progress.t_last - progress.t_first,
            "decode_rebuild": t_end - progress.t_last,
        },
        "positions_per_s": positions / total,
        "prior_positions_per_s": positions / max(progress.t_last - progress.t_first, 1e-9),
        "one_window_positions_per_s": warm_rate,
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "codes_per_s": positions * pc.levels / total,
        "params_per_s": layout.num_params / total,
        "memory_mb": {
            "network_float32": weights_bytes / MB,
            "kv_cache_one_window": kv_cache_bytes(pc) / MB,
            "ru_maxrss_child": maxrss_kb / 1024,
            "rss_before_sample": base / 1024,
            "rss_after_sample": rss_after_kb / 1024,
            "peak_above_before": (max(progress.hwm_setup_kb, progress.hwm_prior_kb, hwm_decode_kb) - base)
            / 1024,
            "setup_peak_above_before": (progress.hwm_setup_kb - base) / 1024,
            "prior_peak_above_stage_start": (progress.hwm_prior_kb - progress.rss_first_kb) / 1024,
            "decode_peak_above_before": (hwm_decode_kb - base) / 1024,
        },
        "peak_x_network": (max(progress.hwm_setup_kb, progress.hwm_prior_kb, hwm_decode_kb) - base)
        * 1024
        / weights_bytes,
        "rss_during_prior_mb": [[p, round(r, 2)] for p, r in progress.rss_series],
        "module_check": {
            "input": list(x.shape),
            "logits_shape": list(logits.shape),
            "finite": bool(torch.isfinite(logits).all()),
            "module_params": n_params,
            "logit_std": float(logits.float().std()),
        },
    }


def _windows(total: int, block: int, overlap: int) -> int:
    """Windows ``WeightPrior.generate`` opens for ``total`` positions (the first, then one per slide)."""
    if total <= block:
        return 1
    return 1 + math.ceil((total - block) / (block - overlap))


def measure(arch: str, args: argparse.Namespace, stats_file: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        arch,
        str(stats_file),
        "--k",
        str(args.k),
        "--threads",
        str(args.threads),
        "--temperature",
        str(args.temperature),
        "--rss-every",
        str(args.rss_every),
        "--seed",
        str(args.seed),
    ]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)  # stderr (tqdm) passes through
    return json.loads(res.stdout.strip().splitlines()[-1])


def threads_probe(n: int) -> dict[str, Any]:
    """Prior positions/s at 1 and 2 torch threads, back to back, on the same coordinates."""
    torch.manual_seed(0)
    pc = PriorConfig()
    prior = WeightPrior(pc).eval()
    coords = ChunkCoords(torch.zeros(n, dtype=torch.long), torch.arange(n), torch.full((n,), n))
    ds, arch = torch.randn(1, pc.ds_dim), torch.randn(1, pc.arch_dim)
    before = torch.get_num_threads()
    out: dict[str, Any] = {"positions": n}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        prior.generate(coords.slice(0, 16), ds, arch)  # warm-up
        t = time.perf_counter()
        prior.generate(coords, ds, arch)
        out[f"positions_per_s_{threads}_threads"] = n / (time.perf_counter() - t)
        out[f"loadavg_after_{threads}_threads"] = [round(x, 2) for x in os.getloadavg()]
        log.info(
            "prior alone, %d thread(s): %.1f positions/s", threads, out[f"positions_per_s_{threads}_threads"]
        )
    torch.set_num_threads(before)
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = report["results"]
    params = [r["params"] for r in rs]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    ax.loglog(params, [r["time_s"]["total"] for r in rs], "o-", label="Generator.sample total")
    ax.loglog(params, [r["time_s"]["prior"] for r in rs], "s--", label="prior (window by window)")
    ax.loglog(params, [max(r["time_s"]["decode_rebuild"], 1e-3) for r in rs], "^:", label="decode + rebuild")
    for r in rs:
        ax.annotate(
            r["arch"],
            (r["params"], r["time_s"]["total"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set(xlabel="network parameters", ylabel="seconds", title=f"time (K={report['k']}, 1 network)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1]
    m = [r["memory_mb"] for r in rs]
    ax.loglog(params, [x["network_float32"] for x in m], "k-", alpha=0.5, label="network, float32")
    ax.loglog(
        params, [max(x["peak_above_before"], 0.1) for x in m], "o-", label="peak RSS above start of sample"
    )
    ax.loglog(
        params,
        [max(x["prior_peak_above_stage_start"], 0.1) for x in m],
        "s--",
        label="prior stage: peak RSS growth",
    )
    ax.loglog(params, [x["kv_cache_one_window"] for x in m], "k:", label="KV cache of one window")
    ax.loglog(params, [x["ru_maxrss_child"] for x in m], "d-.", label="ru_maxrss of the process")
    ax.set(xlabel="network parameters", ylabel="MiB", title="peak memory")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[2]
    for r in rs:
        s = r["rss_during_prior_mb"]
        if len(s) > 2:
            ax.plot(
                [p for p, _ in s], [v - s[0][1] for _, v in s], label=f"{r['arch']} ({r['windows']} windows)"
            )
    ax.set(
        xlabel="chunk positions generated",
        ylabel="RSS above the first position (MiB)",
        title="resident set during the prior stage",
    )
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"window-by-window generation on CPU ({report['machine']['cpu']}, {report['machine']['cores']} "
        f"cores, torch {report['machine']['torch']}, load avg at start "
        f"{report['machine']['loadavg_at_start'][0]})",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", action="append", help=f"architectures (default: {', '.join(ARCHS)})")
    ap.add_argument("--k", type=int, default=1024, help="chunk size (values per chunk position)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the generating processes")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--rss-every", type=int, default=256, help="sample the RSS every this many positions")
    ap.add_argument("--threads-probe", type=int, default=200, help="positions per thread count (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--child", nargs=2, metavar=("ARCH", "STATS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        res = run_child(
            args.child[0], args.k, Path(args.child[1]), args.temperature, args.rss_every, args.seed
        )
        print(json.dumps(res))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    host = machine()
    t_start = time.perf_counter()
    probe = threads_probe(args.threads_probe) if args.threads_probe > 0 else None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch or ARCHS:
            stats_file = Path(tmp) / "stats.json"
            stats_file.write_text(json.dumps(layer_stats(arch)))
            r = measure(arch, args, stats_file)
            mem = r["memory_mb"]
            log.info(
                "%s: %d positions in %.1f s (%.0f pos/s; one window alone %.0f pos/s; "
                "load %s; %.0f params/s); peak %.0f MiB above start "
                "(%.2fx the network's %.0f MiB), prior stage +%.1f MiB; ru_maxrss %.0f MiB; "
                "logits %s finite=%s",
                arch,
                r["positions"],
                r["time_s"]["total"],
                r["positions_per_s"],
                r["one_window_positions_per_s"],
                r["loadavg_start"][0],
                r["params_per_s"],
                mem["peak_above_before"],
                r["peak_x_network"],
                mem["network_float32"],
                mem["prior_peak_above_stage_start"],
                mem["ru_maxrss_child"],
                r["module_check"]["logits_shape"],
                r["module_check"]["finite"],
            )
            results.append(r)
    pc = PriorConfig()
    report = {
        "benchmark": "window",
        "machine": {**host, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "k": args.k,
        "threads": args.threads,
        "temperature": args.temperature,
        "prior_config": pc.to_dict(),
        "prior_params": sum(p.numel() for p in WeightPrior(pc).parameters()),
        "kv_cache_one_window_mb": kv_cache_bytes(pc) / MB,
        "threads_probe": probe,
        "wall_s": time.perf_counter() - t_start,
        "results": results,
    }
    emit(report, args.out)
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
