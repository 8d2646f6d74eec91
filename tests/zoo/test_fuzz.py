"""Fuzzing what zoo reads (hypothesis, derandomized, a fixed budget): safetensors files (mutated bytes,
mutated header fields, generated headers) and torch files (mutated zip archives, mutated pickles inside a
well-formed archive, mutated legacy files).

Every outcome must be either a successful add that stored exactly what the file holds, or one of zoo's own
errors with the registry unchanged: never another exception, never a stored row or blob on error.
``ZOO_FUZZ_SCALE`` multiplies every budget (e.g. 20 for a nightly run); bench/bench_reliability.py uses it.
"""

from __future__ import annotations

import copy
import io
import json
import os
import struct
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import zoo
from tests.zoo.hostile import replace_zip_entry, st_bytes, st_compose, st_header, tiny_state, torch_bytes
from zoo.errors import ZooError

SCALE = float(os.environ.get("ZOO_FUZZ_SCALE", "1"))
BUDGET = {
    "safetensors_bytes": 150,
    "safetensors_fields": 150,
    "safetensors_generated": 80,
    "torch_zip": 120,
    "torch_pickle": 120,
    "torch_legacy": 80,
}  # examples per target at scale 1 (about 15 s in all)


def _settings(target: str) -> settings:
    return settings(
        max_examples=max(1, int(BUDGET[target] * SCALE)),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def _state(reg: zoo.Registry) -> tuple[Any, ...]:
    """Cheap fingerprint of a registry's content: counts, and the names and sizes of every blob-store file."""
    files = (
        sorted(
            (str(p.relative_to(reg.blobs.root)), p.stat().st_size)
            for p in reg.blobs.root.rglob("*")
            if p.is_file()
        )
        if reg.blobs.root.exists()
        else []
    )
    return tuple(sorted(reg.stats().items())), tuple(files)


class Target:
    """Adds fuzzed files to one registry and judges each outcome (failing the test on a wrong one)."""

    def __init__(self, reg: zoo.Registry, folder: Path) -> None:
        self.reg = reg
        self.folder = folder
        self.outcomes: Counter[str] = Counter()

    def __call__(self, data: bytes, suffix: str) -> None:
        path = self.folder / f"fuzz{suffix}"
        path.write_bytes(data)
        before = _state(self.reg)
        try:
            rec = self.reg.add(path, name="fuzz")
        except ZooError as exc:
            assert _state(self.reg) == before, f"{type(exc).__name__} but the registry changed"
            assert str(exc) and len(str(exc)) < 2000
            self.outcomes[f"refused:{type(exc).__name__}"] += 1
            return
        # accepted: what is stored is what the file holds (read back through the hash-verified path)
        stored = self.reg.load_state_dict(rec)
        if suffix == ".safetensors":
            read = st_load(data)
            for k, v in stored.items():
                assert torch.equal(read[k], v), f"tensor {k} was not stored as the file holds it"
        self.reg.remove(rec.id)
        assert _state(self.reg)[0] == before[0]
        self.outcomes["accepted"] += 1


@pytest.fixture
def target(tmp_path: Path) -> Target:
    reg = zoo.Registry(tmp_path / "registry.db")
    reg.add(tiny_state(50), name="keep")
    (tmp_path / "in").mkdir()
    t = Target(reg, tmp_path / "in")
    yield t
    assert reg.verify(grace_s=0).clean
    reg.close()


# ----------------------------------------------------------------------------------------------------
# byte-level mutations, focused on the regions that carry structure
# ----------------------------------------------------------------------------------------------------
_MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 2**31), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 2**31)),
    st.tuples(st.just("insert"), st.integers(0, 2**31), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**31), st.integers(1, 64)),
    st.tuples(
        st.just("u64"),
        st.integers(0, 2**31),
        st.sampled_from([0, 1, 2, 7, 8, 2**31, 2**32 + 5, 2**63, 2**64 - 1]),
    ),
)


def mutate(data: bytes, regions: dict[str, range], picks: list[tuple[str, tuple[Any, ...]]]) -> bytes:
    """Apply mutations; each position is taken modulo its region (so most hit structure, not tensor data)."""
    buf = bytearray(data)
    for region, (op, pos, *rest) in picks:
        span = regions[region]
        if not buf:
            break
        at = span.start + pos % max(1, len(span))
        at = min(at, len(buf) - 1)
        if op == "flip":
            buf[at] ^= 1 << rest[0]
        elif op == "set":
            buf[at] = rest[0]
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = rest[0]
        elif op == "delete":
            del buf[at : at + rest[0]]
        elif op == "u64":
            buf[at : at + 8] = struct.pack("<Q", rest[0])
    return bytes(buf)


def _picks(regions: dict[str, range]) -> st.SearchStrategy[list[tuple[str, tuple[Any, ...]]]]:
    return st.lists(st.tuples(st.sampled_from(sorted(regions)), _MUTATION), min_size=1, max_size=4)


SD = tiny_state(60)
ST = st_bytes(SD)
(_H,) = struct.unpack("<Q", ST[:8])
ST_REGIONS = {"length": range(8), "header": range(8, 8 + _H), "anywhere": range(len(ST))}


def byte_fuzzer(name: str, data: bytes, regions: dict[str, range], suffix: str) -> Callable[[Target], None]:
    """A fuzzer feeding ``data`` with seeded mutations in ``regions`` to the target as a ``suffix`` file."""

    def fuzz(t: Target) -> None:
        @_settings(name)
        @given(_picks(regions))
        def run(picks: list[tuple[str, tuple[Any, ...]]]) -> None:
            t(mutate(data, regions, picks), suffix)

        run()

    return fuzz


fuzz_safetensors_bytes = byte_fuzzer("safetensors_bytes", ST, ST_REGIONS, ".safetensors")


# ----------------------------------------------------------------------------------------------------
# safetensors header fields: structured mutations of a real header, and generated headers
# ----------------------------------------------------------------------------------------------------
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)
_DTYPES = (
    st.sampled_from(
        [
            "F32",
            "F16",
            "BF16",
            "F64",
            "I64",
            "I32",
            "I16",
            "I8",
            "U8",
            "BOOL",
            "C64",
            "F8_E4M3",
            "F8_E5M2",
            "U16",
            "U32",
            "U64",
            "F4",
            "XYZ",
            "",
            "f32",
        ]
    )
    | _JSON
)
_DIMS = st.lists(st.integers(0, 12) | st.integers(-2, 2**66), max_size=5) | _JSON
_OFFSETS = st.lists(st.integers(-16, len(ST) + 16) | st.integers(-(2**65), 2**65), max_size=3) | _JSON
_HEADER, _BODY = st_header(ST)
_KEYS = sorted(k for k in _HEADER if k != "__metadata__")


@st.composite
def header_variants(draw: st.DrawFn) -> bytes:
    h = copy.deepcopy(_HEADER)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(["dtype", "shape", "offsets", "rename", "drop", "add", "metadata", "replace"])
        )
        live = [k for k in h if k != "__metadata__"] or ["x"]
        key = draw(st.sampled_from(live))
        entry = h.setdefault(key, {})
        if op == "dtype" and isinstance(entry, dict):
            entry["dtype"] = draw(_DTYPES)
        elif op == "shape" and isinstance(entry, dict):
            entry["shape"] = draw(_DIMS)
        elif op == "offsets" and isinstance(entry, dict):
            entry["data_offsets"] = draw(_OFFSETS)
        elif op == "rename":
            h[draw(st.text(max_size=24))] = h.pop(key)
        elif op == "drop":
            h.pop(key, None)
        elif op == "add":
            h[draw(st.text(max_size=12))] = draw(_JSON)
        elif op == "metadata":
            h["__metadata__"] = draw(_JSON)
        else:
            h[key] = draw(_JSON)
    raw = json.dumps(h, separators=(",", ":")).encode()
    length = len(raw) + draw(st.sampled_from([0, 0, 0, 0, 1, -1, 8, 2**20]))
    body = _BODY[: len(_BODY) + draw(st.integers(-8, 0))] + bytes(draw(st.integers(0, 8)))
    return st_compose(raw, body, length=max(0, length))


def fuzz_safetensors_fields(t: Target) -> None:
    @_settings("safetensors_fields")
    @given(header_variants())
    def run(data: bytes) -> None:
        t(data, ".safetensors")

    run()


_ST_DTYPE = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@st.composite
def generated_files(draw: st.DrawFn) -> bytes:
    """Valid safetensors files holding cnn-tiny's tensors, a few of them with another shape or dtype, dropped,
    or joined by others: the file parses, so architecture detection and checking meet the odd ones. Tensor
    values come from a generator seeded by hypothesis (not torch's global one): an example is the same every
    run."""
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    tensors = {}
    for name in _KEYS:
        fate = draw(st.sampled_from(["keep", "keep", "keep", "keep", "drop", "shape", "dtype", "zero-dim"]))
        if fate == "drop":
            continue
        shape = tuple(SD[name].shape)
        if fate == "shape":
            shape = draw(st.lists(st.integers(0, 9), max_size=4).map(tuple))
        elif fate == "zero-dim":
            shape = shape[:-1] + (0,) if shape else (0,)
        dtype = _ST_DTYPE[draw(st.sampled_from(sorted(_ST_DTYPE)))] if fate == "dtype" else torch.float32
        tensors[name] = (torch.randn(shape, generator=g) * 3).to(dtype)
    for extra in draw(st.lists(st.text(min_size=1, max_size=12).filter(str.isprintable), max_size=2)):
        tensors[extra] = torch.randn(draw(st.lists(st.integers(0, 5), max_size=3).map(tuple)), generator=g)
    if not tensors:
        tensors["x"] = torch.zeros(1)
    meta = draw(st.none() | st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2))
    return st_save(tensors, metadata=meta)


def fuzz_safetensors_generated(t: Target) -> None:
    @_settings("safetensors_generated")
    @given(generated_files())
    def run(data: bytes) -> None:
        t(data, ".safetensors")

    run()


# ----------------------------------------------------------------------------------------------------
# torch files: mutated zip archives, mutated pickles in a well-formed archive, mutated legacy files
# ----------------------------------------------------------------------------------------------------
def _zip_regions(data: bytes) -> dict[str, range]:
    zf = zipfile.ZipFile(io.BytesIO(data))
    pkl = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    start = pkl.header_offset
    first_cd = data.find(b"PK\x01\x02")
    return {
        "pickle": range(start, start + 30 + len(pkl.filename) + pkl.file_size + 64),
        "directory": range(first_cd, len(data)),
        "local-headers": range(128),
        "anywhere": range(len(data)),
    }


ZP = torch_bytes({"state_dict": SD, "epoch": 3, "best_prec1": torch.tensor(91.5)})
ZP_REGIONS = _zip_regions(ZP)
_ZF = zipfile.ZipFile(io.BytesIO(ZP))
PKL = _ZF.read(next(n for n in _ZF.namelist() if n.endswith("data.pkl")))  # the archive's pickle
LEGACY = torch_bytes(SD, legacy=True)
LEGACY_REGIONS = {"pickle-head": range(2048), "anywhere": range(len(LEGACY))}


fuzz_torch_zip = byte_fuzzer("torch_zip", ZP, ZP_REGIONS, ".pt")


def fuzz_torch_pickle(t: Target) -> None:
    regions = {"pickle": range(len(PKL))}

    @_settings("torch_pickle")
    @given(_picks(regions))
    def run(picks: list[tuple[str, tuple[Any, ...]]]) -> None:
        t(replace_zip_entry(ZP, "data.pkl", mutate(PKL, regions, picks)), ".pt")

    run()


fuzz_torch_legacy = byte_fuzzer("torch_legacy", LEGACY, LEGACY_REGIONS, ".pth")


FUZZERS: dict[str, Callable[[Target], None]] = {
    "safetensors_bytes": fuzz_safetensors_bytes,
    "safetensors_fields": fuzz_safetensors_fields,
    "safetensors_generated": fuzz_safetensors_generated,
    "torch_zip": fuzz_torch_zip,
    "torch_pickle": fuzz_torch_pickle,
    "torch_legacy": fuzz_torch_legacy,
}


@pytest.mark.parametrize("name", list(FUZZERS))
def test_fuzz(name: str, target: Target) -> None:
    FUZZERS[name](target)
    assert sum(target.outcomes.values()) >= min(BUDGET[name] * SCALE, 20)
    assert any(k.startswith("refused") for k in target.outcomes)
