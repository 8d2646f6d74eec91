"""Hostile and broken checkpoints, built as real files: shared by tests/zoo/test_hostile_files.py,
tests/zoo/test_fuzz.py and bench/bench_reliability.py (one list of cases, one way of judging an outcome).

Every case is something a user (or an attacker writing into a watch folder) can hand to ``Registry.add``:
pickles whose unpickling would run code, torch files holding more than tensors, truncated and bit-flipped
files, safetensors headers with absurd sizes and offsets, NaN/Inf weights, dtypes zoo does not store or that
do not fit the architecture, and names and paths with separators and control characters.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import pickle
import random
import shlex
import struct
import subprocess
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

import zoo
from zoo.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    InvalidNameError,
    InvalidWeightsError,
    UnsafeCheckpointError,
    ZooError,
)

SPEC = zoo.resolve_arch("cnn-tiny")
FIX_RE = (
    r"(?i)(re-save|re-download|rename|convert|clean the weights|check the|use letters|pass |save |install)"
)


# ----------------------------------------------------------------------------------------------------
# payloads: unpickling any of these runs code that creates ``marker``
# ----------------------------------------------------------------------------------------------------
class ShellPayload:
    """``os.system("touch MARKER")`` on unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


class ExecPayload:
    """``exec("open(MARKER, 'w').close()")`` on unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (f"open({self.marker!r}, 'w').close()",))


class SubprocessPayload:
    """``subprocess.call(["touch", MARKER])`` on unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (subprocess.call, (["touch", self.marker],))


class OpenPayload:
    """``open(MARKER, "w")`` on unpickling (creates the file even if nothing else runs)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


PAYLOADS = (ShellPayload, ExecPayload, SubprocessPayload, OpenPayload)


# ----------------------------------------------------------------------------------------------------
# valid material
# ----------------------------------------------------------------------------------------------------
def tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A real cnn-tiny state dict (2,464 parameters)."""
    torch.manual_seed(seed)
    return dict(zoo.get_family("cnn").build(SPEC).state_dict())


def st_bytes(sd: Mapping[str, torch.Tensor]) -> bytes:
    return st_save({k: v.contiguous() for k, v in sd.items()})


def torch_bytes(obj: Any, *, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def st_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(header, tensor data) of safetensors bytes."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def st_compose(header: Any, body: bytes, *, length: int | None = None) -> bytes:
    """safetensors bytes from a header (an object, or raw text/bytes) and a body; ``length`` overrides the
    8-byte header length."""
    raw = (
        header
        if isinstance(header, bytes)
        else header.encode()
        if isinstance(header, str)
        else json.dumps(header, separators=(",", ":")).encode()
    )
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def replace_zip_entry(data: bytes, suffix: str, new: bytes, *, compress: int = zipfile.ZIP_STORED) -> bytes:
    """A copy of a torch zip archive whose entry ending in ``suffix`` holds ``new``."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = new if info.filename.endswith(suffix) else src.read(info.filename)
            dst.writestr(
                info.filename,
                body,
                compress_type=compress if info.filename.endswith(suffix) else zipfile.ZIP_STORED,
            )
    return out.getvalue()


# ----------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One hostile input and what zoo must do with it."""

    category: str  # a row of the reliability table
    label: str  # unique, readable
    source: Any  # what Registry.add receives: a Path, a state dict or a module
    expect: type[ZooError] | None  # the error it must raise; None: refused, or accepted exactly as it reads
    kwargs: dict[str, Any] = field(default_factory=dict)  # more Registry.add arguments (name=...)
    match: str | None = None  # a regex the message must contain

    @property
    def is_file(self) -> bool:
        return isinstance(self.source, Path)


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def pickle_code_cases(folder: Path, marker: Path) -> list[Case]:
    """Pickles that would run code, in every container zoo reads."""
    sd = tiny_state()
    out: list[Case] = []
    for i, payload_cls in enumerate(PAYLOADS):
        p = payload_cls(marker)
        kind = payload_cls.__name__
        out += [
            Case(
                "pickle-code",
                f"{kind} beside the weights, torch zip .pt",
                _write(folder, f"evil-zip-{i}.pt", torch_bytes({"state_dict": sd, "payload": p})),
                UnsafeCheckpointError,
                match="not a weights-only file",
            ),
            Case(
                "pickle-code",
                f"{kind} as the whole file, torch zip .pth",
                _write(folder, f"evil-top-{i}.pth", torch_bytes(p)),
                UnsafeCheckpointError,
            ),
            Case(
                "pickle-code",
                f"{kind} in a tensor's place, torch zip .bin",
                _write(folder, f"evil-slot-{i}.bin", torch_bytes({**sd, "features.0.weight": p})),
                UnsafeCheckpointError,
            ),
            Case(
                "pickle-code",
                f"{kind} beside the weights, legacy torch format .th",
                _write(
                    folder, f"evil-legacy-{i}.th", torch_bytes({"state_dict": sd, "payload": p}, legacy=True)
                ),
                UnsafeCheckpointError,
            ),
            Case(
                "pickle-code",
                f"{kind} in a hand-made torch archive (data.pkl replaced)",
                _write(
                    folder,
                    f"evil-archive-{i}.pt",
                    replace_zip_entry(torch_bytes(sd), "data.pkl", pickle.dumps(p, protocol=2)),
                ),
                UnsafeCheckpointError,
            ),
            Case(
                "pickle-code",
                f"{kind} raw pickle with a .safetensors name",
                _write(folder, f"evil-{i}.safetensors", pickle.dumps(p, protocol=4)),
                CheckpointError,
                match="never unpickles a .safetensors file",
            ),
        ]
        for proto in range(6):
            expect = (
                UnsafeCheckpointError if proto >= 2 else CheckpointError
            )  # 0/1 have no magic: unknown format
            out.append(
                Case(
                    "pickle-code",
                    f"{kind} raw pickle protocol {proto} .bin",
                    _write(folder, f"evil-raw-{i}-p{proto}.bin", pickle.dumps(p, protocol=proto)),
                    expect,
                )
            )
        nested = {"state_dict": sd, "history": [{"epoch": 1, "hooks": (1, 2, p)}]}
        out.append(
            Case(
                "pickle-code",
                f"{kind} nested in lists and tuples, torch zip .pt",
                _write(folder, f"evil-nested-{i}.pt", torch_bytes(nested)),
                UnsafeCheckpointError,
            )
        )
    return out


class _Config:  # a plain object saved beside weights, as old training scripts do (argparse.Namespace-like)
    def __init__(self) -> None:
        self.lr = 0.1


def not_weights_only_cases(folder: Path) -> list[Case]:
    """Torch files that hold objects other than tensors and plain containers, or no state dict at all."""
    import argparse

    sd = tiny_state()
    model = zoo.get_family("cnn").build(SPEC)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.zeros(1, 1, 28, 28)).sum().backward()
    opt.step()
    U = UnsafeCheckpointError
    return [
        Case(
            "not-weights-only", "whole nn.Module pickled", _write(folder, "module.pt", torch_bytes(model)), U
        ),
        Case(
            "not-weights-only",
            "argparse.Namespace beside the weights",
            _write(
                folder, "namespace.pt", torch_bytes({"state_dict": sd, "args": argparse.Namespace(lr=0.1)})
            ),
            U,
        ),
        Case(
            "not-weights-only",
            "a custom object beside the weights",
            _write(folder, "custom.pt", torch_bytes({"state_dict": sd, "cfg": _Config()})),
            U,
        ),
        Case(
            "not-weights-only",
            "numpy arrays",
            _write(folder, "numpy.pt", torch_bytes({k: v.numpy() for k, v in sd.items()})),
            U,
        ),
        Case(
            "not-weights-only",
            "a lambda-free functools.partial",
            _write(
                folder,
                "partial.pt",
                torch_bytes({"state_dict": sd, "f": __import__("functools").partial(max, 1)}),
            ),
            U,
        ),
        Case(
            "not-weights-only",
            "whole module, legacy format",
            _write(folder, "module-legacy.pth", torch_bytes(model, legacy=True)),
            U,
        ),
        Case(
            "not-weights-only",
            "an optimizer state dict",
            _write(folder, "optimizer.pt", torch_bytes(opt.state_dict())),
            CheckpointError,
        ),
        Case(
            "not-weights-only",
            "a list of tensors",
            _write(folder, "list.pt", torch_bytes(list(sd.values()))),
            CheckpointError,
            match="holds a list",
        ),
        Case(
            "not-weights-only",
            "a string",
            _write(folder, "string.pt", torch_bytes("weights")),
            CheckpointError,
        ),
        Case(
            "not-weights-only",
            "a Counter of ints",
            _write(folder, "counter.pt", torch_bytes(Counter(a=1))),
            CheckpointError,
        ),
        Case(
            "not-weights-only",
            "no tensors at all",
            _write(folder, "empty-dict.pt", torch_bytes({})),
            CheckpointError,
            match="holds no tensors",
        ),
        Case(
            "not-weights-only",
            "an empty safetensors file (header only)",
            _write(folder, "no-tensors.safetensors", st_compose({}, b"")),
            CheckpointError,
            match="holds no tensors",
        ),
        Case(
            "not-weights-only",
            "a sparse tensor",
            _write(
                folder,
                "sparse.pt",
                torch_bytes({**sd, "features.0.weight": sd["features.0.weight"].to_sparse()}),
            ),
            InvalidWeightsError,
        ),
        Case(
            "not-weights-only",
            "a zip bomb (deflated data record)",
            _write(
                folder,
                "zipbomb.pt",
                replace_zip_entry(torch_bytes(sd), "data/0", bytes(64 << 20), compress=zipfile.ZIP_DEFLATED),
            ),
            CheckpointError,
            match="compressed",
        ),
    ]


def truncated_cases(folder: Path, seed: int = 0) -> list[Case]:
    """Valid files cut short at many points (every structural boundary and seeded random ones)."""
    rng = random.Random(seed)
    sd = tiny_state(1)
    out: list[Case] = []
    for fmt, data in (
        ("safetensors", st_bytes(sd)),
        ("pt", torch_bytes(sd)),
        ("th", torch_bytes(sd, legacy=True)),
    ):
        n = len(data)
        cuts = {0, 1, 2, 7, 8, 9, 16, n // 2, n - 1, n - 8, n - 22, n - 100}
        if fmt == "safetensors":
            (h,) = struct.unpack("<Q", data[:8])
            cuts |= {8 + h - 1, 8 + h, 8 + h + 1, 8 + h + 4}
        cuts |= {rng.randrange(1, n) for _ in range(14 if fmt == "safetensors" else 8)}
        for cut in sorted(c for c in cuts if 0 <= c < n):
            out.append(
                Case(
                    "truncated",
                    f"{fmt} cut at byte {cut} of {n}",
                    _write(folder, f"cut-{fmt}-{cut}.{fmt}", data[:cut]),
                    CheckpointError,
                )
            )
    return out


def bit_flip_cases(folder: Path, seed: int = 0) -> list[Case]:
    """One flipped bit in a safetensors header, in safetensors tensor data and in a torch zip's structure.

    A flip may leave a valid file (safetensors has no checksum: a flip in the data is other weights; a flip
    inside a metadata string is other metadata): those cases expect "refused, or accepted exactly as the
    file reads" (``expect=None``). A flip that makes the weights NaN/Inf is refused.
    """
    rng = random.Random(seed)
    sd = tiny_state(2)
    st = st_bytes(sd)
    (h,) = struct.unpack("<Q", st[:8])
    zp = torch_bytes(sd)
    zf = zipfile.ZipFile(io.BytesIO(zp))
    pkl = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    cd_start = zp.rfind(b"PK\x01\x02", 0, len(zp) - 22)
    first_cd = zp.find(b"PK\x01\x02")
    regions = {
        "safetensors-header": (st, range(8 + h)),
        "safetensors-data": (st, range(8 + h, len(st))),
        "torch-pickle": (
            zp,
            range(pkl.header_offset, pkl.header_offset + 30 + len(pkl.filename) + pkl.file_size + 64),
        ),
        "torch-directory": (zp, range(first_cd if first_cd > 0 else cd_start, len(zp))),
    }
    out: list[Case] = []
    for region, (data, span) in regions.items():
        for j in range(12):
            pos = rng.choice(span)
            bit = rng.randrange(8)
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            ext = "safetensors" if region.startswith("safetensors") else "pt"
            out.append(
                Case(
                    "bit-flip",
                    f"{region}: bit {bit} of byte {pos}",
                    _write(folder, f"flip-{region}-{j}.{ext}", bytes(flipped)),
                    None,
                )
            )
    return out


def absurd_header_cases(folder: Path) -> list[Case]:
    """safetensors headers with absurd sizes, offsets, shapes, dtypes and structure."""
    sd = {"features.0.weight": torch.ones(8, 1, 5, 5), "features.0.bias": torch.zeros(8)}
    good = st_bytes(sd)
    header, body = st_header(good)
    w, b = header["features.0.weight"], header["features.0.bias"]
    E = CheckpointError

    def with_entry(**changes: Any) -> dict[str, Any]:
        return {**header, "features.0.weight": {**w, **changes}}

    cases: list[tuple[str, bytes, type[ZooError]]] = [
        ("length field larger than the file", st_compose(header, body, length=len(good) * 10), E),
        ("length field 2**63", st_compose(header, body, length=2**63), E),
        ("length field 2**64-1", st_compose(header, body, length=2**64 - 1), E),
        ("length field 0", st_compose(header, body, length=0), E),
        ("length field 1", st_compose(header, body, length=1), E),
        (
            "length field one byte short",
            st_compose(header, body, length=len(json.dumps(header, separators=(",", ":"))) - 1),
            E,
        ),
        ("header over 100 MB declared", st_compose(header, body, length=200 * 1024 * 1024), E),
        ("header not JSON", st_compose(b"{this is not json}", body), E),
        ("header not UTF-8", st_compose(b'{"\xff\xfe": 1}', body), E),
        ("header a JSON list", st_compose([1, 2, 3], body), E),
        ("header a JSON string", st_compose('"weights"', body), E),
        ("header deeply nested lists", st_compose("[" * 200_000 + "]" * 200_000, body), E),
        ("header deeply nested objects", st_compose('{"a":' * 100_000 + "1" + "}" * 100_000, body), E),
        ("entry not an object", st_compose({**header, "features.0.weight": [1, 2]}, body), E),
        ("offsets past the end", st_compose(with_entry(data_offsets=[0, 10**12]), body), E),
        ("offsets reversed", st_compose(with_entry(data_offsets=[w["data_offsets"][1], 0]), body), E),
        ("offsets negative", st_compose(with_entry(data_offsets=[-800, 0]), body), E),
        (
            "offsets overlapping",
            st_compose(
                {
                    **header,
                    "features.0.bias": {
                        **b,
                        "data_offsets": [w["data_offsets"][0], w["data_offsets"][0] + 32],
                    },
                },
                body,
            ),
            E,
        ),
        (
            "offsets with a gap",
            st_compose(
                with_entry(data_offsets=[w["data_offsets"][0] + 4, w["data_offsets"][1] + 4]), body + bytes(4)
            ),
            E,
        ),
        ("offsets strings", st_compose(with_entry(data_offsets=["0", "800"]), body), E),
        ("offsets three numbers", st_compose(with_entry(data_offsets=[0, 400, 800]), body), E),
        ("offsets floats", st_compose(with_entry(data_offsets=[0.5, 800.5]), body), E),
        (
            "offsets 1e400 (infinite)",
            st_compose(json.dumps(with_entry(data_offsets=[0, 1])).replace("[0, 1]", "[0, 1e400]"), body),
            E,
        ),
        ("shape huge, consistent offsets impossible", st_compose(with_entry(shape=[2**40, 2**40]), body), E),
        ("shape 2**64 overflow", st_compose(with_entry(shape=[2**32, 2**32, 2]), body), E),
        ("shape negative", st_compose(with_entry(shape=[-8, 1, 5, 5]), body), E),
        ("shape a string", st_compose(with_entry(shape="8,1,5,5"), body), E),
        ("shape nested", st_compose(with_entry(shape=[[8], 1, 5, 5]), body), E),
        ("shape 100 dimensions", st_compose(with_entry(shape=[1] * 99 + [200]), body), E),
        ("shape booleans", st_compose(with_entry(shape=[True, 1, 5, 5]), body), E),
        ("dtype unknown", st_compose(with_entry(dtype="Q8"), body), E),
        (
            "dtype missing",
            st_compose(
                {**header, "features.0.weight": {"shape": w["shape"], "data_offsets": w["data_offsets"]}},
                body,
            ),
            E,
        ),
        ("dtype a number", st_compose(with_entry(dtype=4), body), E),
        (
            "dtype complex C64",
            st_compose(with_entry(dtype="C64", shape=[4, 1, 5, 5]), body),
            InvalidWeightsError,
        ),
        (
            "dtype float8 F8_E4M3",
            st_compose(with_entry(dtype="F8_E4M3", shape=[32, 1, 5, 5]), body),
            InvalidWeightsError,
        ),
        ("dtype U32", st_compose(with_entry(dtype="U32"), body), InvalidWeightsError),
        ("metadata not strings", st_compose({**header, "__metadata__": {"epoch": 3}}, body), E),
        ("metadata a list", st_compose({**header, "__metadata__": ["a"]}, body), E),
        ("trailing garbage after the data", good + b"\x00" * 16, E),
        ("data shorter than the header says", good[:-16], E),
        ("only the length field", good[:8], E),
        ("header length field and nothing else valid", struct.pack("<Q", 2) + b"{}", E),
    ]
    return [
        Case("absurd-header", label, _write(folder, f"header-{i:02d}.safetensors", data), err)
        for i, (label, data, err) in enumerate(cases)
    ]


def nonfinite_cases(folder: Path) -> list[Case]:
    """NaN and Inf weights, in files and objects, in parameters and buffers, in every float dtype."""
    out: list[Case] = []
    for i, (value, dtype) in enumerate(
        [
            (float("nan"), torch.float32),
            (float("inf"), torch.float32),
            (float("-inf"), torch.float32),
            (float("nan"), torch.float16),
            (float("inf"), torch.bfloat16),
            (float("nan"), torch.float64),
        ]
    ):
        sd = {k: v.to(dtype) for k, v in tiny_state(3).items()}
        key = list(sd)[(2 * i) % len(sd)]
        sd[key].view(-1)[i] = value
        match = key.replace(".", r"\.")
        out += [
            Case(
                "nonfinite",
                f"{value} {dtype} in {key}, safetensors",
                _write(folder, f"nonfinite-{i}.safetensors", st_bytes(sd)),
                InvalidWeightsError,
                match=match,
            ),
            Case(
                "nonfinite",
                f"{value} {dtype} in {key}, torch zip",
                _write(folder, f"nonfinite-{i}.pt", torch_bytes(sd)),
                InvalidWeightsError,
                match=match,
            ),
            Case(
                "nonfinite",
                f"{value} {dtype} in {key}, state dict",
                sd,
                InvalidWeightsError,
                match=match,
                kwargs={"name": f"nonfinite-{i}"},
            ),
        ]
    return out


def dtype_cases(folder: Path) -> list[Case]:
    """Weights in dtypes zoo does not store, or that do not fit the architecture's tensors."""
    sd = tiny_state(4)
    key = "features.0.weight"
    out: list[Case] = []
    for i, (dtype, err) in enumerate(
        [
            (torch.int64, ArchitectureMismatchError),
            (torch.bool, ArchitectureMismatchError),
            (torch.uint8, ArchitectureMismatchError),
            (torch.complex64, InvalidWeightsError),
            (torch.float8_e4m3fn, InvalidWeightsError),
            (torch.uint32, InvalidWeightsError),
            (torch.uint16, InvalidWeightsError),
        ]
    ):
        bad = {**sd, key: sd[key].to(dtype)}
        out.append(Case("dtype", f"{key} as {dtype}, state dict", bad, err, kwargs={"name": f"dtype-{i}"}))
        out.append(
            Case(
                "dtype",
                f"{key} as {dtype}, torch zip",
                _write(folder, f"dtype-{i}.pt", torch_bytes(bad)),
                err,
            )
        )
        if dtype not in (torch.complex64,):  # safetensors writes the others
            out.append(
                Case(
                    "dtype",
                    f"{key} as {dtype}, safetensors",
                    _write(folder, f"dtype-{i}.safetensors", st_bytes(bad)),
                    err,
                )
            )
    out.append(
        Case(
            "dtype",
            "a quantized tensor, torch zip",
            _write(
                folder,
                "dtype-q.pt",
                torch_bytes({**sd, key: torch.quantize_per_tensor(sd[key], 0.1, 0, torch.qint8)}),
            ),
            InvalidWeightsError,
        )
    )
    out.append(
        Case(
            "dtype",
            "float weights where the layout has an integer counter",
            {**{k: v.double() for k, v in sd.items()}},
            None,
            kwargs={"name": "dtype-float64"},
        )
    )  # float64 is fine: kept
    return out


BAD_NAMES = [
    "a/b",
    "../etc/passwd",
    "..",
    ".",
    "a\\b",
    "..\\windows",
    "x\x00y",
    "bad\nname",
    "trail\n",
    "tab\tname",
    "\x1b[31mred",
    "",
    " ",
    "x" * 129,
    "-lead",
    "name with space",
    "ünïcode",
    "a:b",
    "a@b",
    "😀",
]


def name_cases(folder: Path) -> list[Case]:
    """Checkpoint, tag, alias and dataset names with separators, traversal, control characters, empty, too
    long; tensor names with NUL and control characters or absurd length."""
    sd = tiny_state(5)
    out: list[Case] = []
    for i, bad in enumerate(BAD_NAMES):
        for arg in ("name", "tags", "alias", "dataset"):
            value: Any = [bad] if arg == "tags" else bad
            kwargs = {"name": f"ok-{i}"} if arg != "name" else {}
            out.append(Case("name", f"{arg}={bad!r}", sd, InvalidNameError, kwargs={**kwargs, arg: value}))
    key = "features.0.weight"
    for j, tname in enumerate([key + "\x00", "features.0\n.weight", "\x1b]0;pwned\x07" + key, key * 200]):
        bad_sd = {**{k: v for k, v in sd.items() if k != key}, tname: sd[key]}
        out.append(
            Case(
                "name",
                f"tensor name {tname[:30]!r}..., safetensors",
                _write(folder, f"tensor-name-{j}.safetensors", st_bytes(bad_sd)),
                CheckpointError,
            )
        )
        out.append(
            Case(
                "name",
                f"tensor name {tname[:30]!r}..., torch zip",
                _write(folder, f"tensor-name-{j}.pt", torch_bytes(bad_sd)),
                CheckpointError,
            )
        )
    for j, tname in enumerate(["", "../../etc/passwd", "a/b/c", "C:\\x"]):
        bad_sd = {**{k: v for k, v in sd.items() if k != key}, tname: sd[key]}
        out.append(
            Case(
                "name",
                f"tensor name {tname!r}, safetensors",
                _write(folder, f"tensor-path-{j}.safetensors", st_bytes(bad_sd)),
                ArchitectureMismatchError,
            )
        )
    return out


def path_cases(folder: Path) -> list[Case]:
    """Paths that are not regular checkpoint files."""
    fifo = folder / "fifo.pt"
    if not fifo.exists():
        os.mkfifo(fifo)
    loop = folder / "loop.pt"
    if not loop.is_symlink():
        loop.symlink_to(loop)
    (folder / "a-folder.pt").mkdir(exist_ok=True)
    zero = folder / "zero.pt"
    if not zero.is_symlink():
        zero.symlink_to("/dev/zero")
    return [
        Case("path", "does not exist", folder / "missing.pt", CheckpointError, match="no such file"),
        Case("path", "a folder", folder / "a-folder.pt", CheckpointError),
        Case("path", "a FIFO (would block a reader)", fifo, CheckpointError),
        Case("path", "a symlink loop", loop, CheckpointError),
        Case("path", "/dev/zero (endless)", Path("/dev/zero"), CheckpointError),
        Case("path", "a symlink to /dev/zero", zero, CheckpointError),
        Case("path", "a NUL byte in the path", Path(str(folder / "nul\x00.pt")), CheckpointError),
        Case("path", "empty file", _write(folder, "empty.pt", b""), CheckpointError, match="empty"),
        Case(
            "path",
            "unknown format",
            _write(folder, "text.bin", b"hello, these are not weights\n" * 10),
            CheckpointError,
            match="unknown format",
        ),
    ]


CATEGORIES: dict[str, Callable[[Path, Path], list[Case]]] = {  # table row -> builder(folder, marker)
    "pickle-code": pickle_code_cases,
    "not-weights-only": lambda folder, marker: not_weights_only_cases(folder),
    "truncated": lambda folder, marker: truncated_cases(folder),
    "bit-flip": lambda folder, marker: bit_flip_cases(folder),
    "absurd-header": lambda folder, marker: absurd_header_cases(folder),
    "nonfinite": lambda folder, marker: nonfinite_cases(folder),
    "dtype": lambda folder, marker: dtype_cases(folder),
    "name": lambda folder, marker: name_cases(folder),
    "path": lambda folder, marker: path_cases(folder),
}


def build_cases(folder: Path, marker: Path, categories: Iterator[str] | None = None) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Case] = []
    for cat in categories or CATEGORIES:
        out += CATEGORIES[cat](folder, marker)
    return out


# ----------------------------------------------------------------------------------------------------
# judging outcomes
# ----------------------------------------------------------------------------------------------------
def snapshot(reg: zoo.Registry) -> tuple[Any, ...]:
    """Everything observable about a registry's content: rows, counts, and every file under the blob root."""
    files: list[tuple[str, int, str]] = []
    if reg.blobs.root.exists():
        for p in sorted(reg.blobs.root.rglob("*")):
            if p.is_file():
                files.append(
                    (
                        str(p.relative_to(reg.blobs.root)),
                        p.stat().st_size,
                        hashlib.sha256(p.read_bytes()).hexdigest(),
                    )
                )
    recs = [(r.ref, r.sha256, tuple(sorted(r.metrics.items())), r.tags) for r in reg.list()]
    return recs, reg.stats(), files, reg.aliases(), [d.name for d in reg.datasets()]


@dataclass
class Outcome:
    case: Case
    error: BaseException | None  # what add raised (None: it succeeded)
    stored: bool  # whether the registry changed
    problem: str | None  # why the outcome is wrong, or None


def try_add(reg: zoo.Registry, case: Case, marker: Path | None = None) -> Outcome:
    """Hand ``case`` to ``Registry.add`` and judge what happened (never raises for the case's own reasons)."""
    before = snapshot(reg)
    err: BaseException | None = None
    rec = None
    try:
        rec = reg.add(case.source, **case.kwargs)
    except Exception as exc:  # judged below: only ZooErrors are acceptable
        err = exc
    after = snapshot(reg)
    stored = after != before
    problem = judge(case, err, stored)
    if marker is not None and marker.exists():
        problem = f"pickled code ran: {marker} exists"
    if rec is not None and problem is None:
        problem = faithful(reg, case, rec)
        reg.remove(rec.id)
        if snapshot(reg)[:2] != before[:2]:
            problem = "removing the accepted checkpoint did not restore the registry"
    return Outcome(case, err, stored and err is None, problem)


def judge(case: Case, err: BaseException | None, stored: bool) -> str | None:
    import re

    if err is None:
        if case.expect is not None:
            return f"accepted, expected {case.expect.__name__}"
        return None
    if not isinstance(err, ZooError):
        return f"raised {type(err).__name__} (not a zoo error): {str(err)[:300]}"
    if stored:
        return f"raised {type(err).__name__} but the registry changed"
    if case.expect is not None and not isinstance(err, case.expect):
        return f"raised {type(err).__name__}, expected {case.expect.__name__}: {str(err)[:300]}"
    msg = str(err)
    if case.match and not re.search(case.match, msg):
        return f"message does not match {case.match!r}: {msg[:300]}"
    if case.is_file and case.source.name not in msg and repr(case.source.name)[1:-1] not in msg:
        return f"message does not name the file {case.source.name}: {msg[:300]}"
    if not re.search(FIX_RE, msg):
        return f"message says no fix: {msg[:300]}"
    if len(msg) > 1500:
        return f"message is {len(msg)} characters long"
    return None


def faithful(reg: zoo.Registry, case: Case, rec: Any) -> str | None:
    """An accepted input must be stored exactly as it reads (the same tensors, bit for bit)."""
    from zoo.checkpoint_io import read_checkpoint

    expected = read_checkpoint(case.source).state_dict
    got = reg.load_state_dict(rec)
    for k, v in got.items():
        if k in expected and not torch.equal(expected[k].to(v.dtype), v):
            return f"accepted, but tensor {k} was not stored as read"
    return None
