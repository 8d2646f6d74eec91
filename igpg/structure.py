"""Where a chunk sits, in terms that carry over between architectures: slot features and pooled statistics.

A family describes every generated tensor ("slot") with a :class:`zoo.SlotDescriptor` (role, kind, stage,
relative depths, shape, fans). The generator reads them in two places:

- **coordinates** (:class:`SlotVocab`, :func:`slot_table`, :class:`SlotEncoder`): in ``"descriptor"`` mode
  the tokenizer and the prior locate a chunk by its slot's role embedding (a vocabulary of
  ``family/role`` strings built at training time), its kind's embedding, and the numbers
  ``stage / (num_stages + 1)``, ``depth_in_stage``, ``depth``, ``log fan_in``, ``log fan_out``,
  ``log numel`` and the tensor's rank, plus the chunk's position within its tensor. None of these is an
  absolute layer index, so an unseen depth or width of a family has coordinates the models have met.
  A role the vocabulary lacks (a module the training architectures did not have) maps to the shared
  *unknown-role* row plus its kind's embedding (an unknown kind to the *unknown-kind* row); both rows are
  trained by replacing a small share of the training chunks' roles by them (``role_dropout``).
- **normalisation** (:class:`SlotStats`): per-slot mean and std for a spec, from the statistics of the
  training architectures. An architecture trained on (or one with exactly the same layout: names and
  shapes) gets its exact per-architecture statistics; any other slot gets statistics pooled over the
  same-role slots of the trained architectures, from the most specific group that has any: the same
  (family, role, stage, shape) (exact pooled sums: an unseen depth at a seen width), then (family, role,
  stage), (family, role) and (family, kind), where mean and log std are fitted as lines in log fan-in over
  the group's architectures (the scale of a trained weight follows its fan-in, so an unseen width is
  interpolated, or extrapolated, rather than averaged).
- **model space** (:func:`to_model_space`): tensors of the kinds in :data:`LOG_KINDS` (BatchNorm running
  variances) are modelled, normalised and pooled as their logarithm, so a generated variance is positive.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from zoo import ArchSpec, Chunks, SlotDescriptor, get_family

NUM_FEATURES = 7  # numeric slot features (see slot_features)
FOURIER = 4  # sinusoid octaves per numeric feature in SlotEncoder
LEVELS = ("arch", "shape", "stage", "role", "kind")  # normalisation sources, most specific first
LOG_KINDS = ("running_var",)  # positive tensors modelled as their logarithm (see to_model_space)


# -- coordinates ------------------------------------------------------------------------------------------
class SlotInputs(NamedTuple):
    """Slot coordinates of chunks: role (...,) long, kind (...,) long, feats (..., NUM_FEATURES) float32."""

    role: torch.Tensor
    kind: torch.Tensor
    feats: torch.Tensor

    def to(self, device: torch.device | str) -> SlotInputs:
        return SlotInputs(self.role.to(device), self.kind.to(device), self.feats.to(device))

    def index(self, idx: Any) -> SlotInputs:
        return SlotInputs(self.role[idx], self.kind[idx], self.feats[idx])


class ChunkCoords:
    """Where each chunk of a network sits: layer, position in layer, chunks in that layer (all (N,) long)
    and, in descriptor mode, its slot's coordinates (:class:`SlotInputs`, one row per chunk).

    Training batches stack several networks' windows: then every tensor has a leading batch dimension
    (B, T) (see :meth:`stack`).
    """

    def __init__(
        self,
        layer: torch.Tensor,
        position: torch.Tensor,
        count: torch.Tensor,
        slots: SlotInputs | None = None,
    ) -> None:
        self.layer, self.position, self.count, self.slots = layer, position, count, slots

    def __len__(self) -> int:
        return int(self.layer.shape[-1])

    def to(self, device: torch.device | str) -> ChunkCoords:
        slots = self.slots.to(device) if self.slots is not None else None
        return ChunkCoords(self.layer.to(device), self.position.to(device), self.count.to(device), slots)

    def slice(self, start: int, end: int) -> ChunkCoords:
        """Chunks ``start:end`` (of every window, when batched)."""
        idx: Any = slice(start, end) if self.layer.dim() == 1 else (slice(None), slice(start, end))
        slots = self.slots.index(idx) if self.slots is not None else None
        return ChunkCoords(self.layer[idx], self.position[idx], self.count[idx], slots)

    @staticmethod
    def stack(parts: Sequence[ChunkCoords]) -> ChunkCoords:
        """Equal-length coordinates of several windows as one batch: every tensor (B, T, ...)."""
        slots = None
        if parts[0].slots is not None:
            slots = SlotInputs(*(torch.stack(t) for t in zip(*(p.slots for p in parts))))  # type: ignore[misc]
        return ChunkCoords(
            torch.stack([p.layer for p in parts]),
            torch.stack([p.position for p in parts]),
            torch.stack([p.count for p in parts]),
            slots,
        )


@dataclass(frozen=True)
class SlotTable:
    """One network's slot coordinates, one row per generated tensor: role, kind (L,) long; feats (L, F)."""

    role: torch.Tensor
    kind: torch.Tensor
    feats: torch.Tensor

    def per_chunk(self, layer: torch.Tensor) -> SlotInputs:
        """The coordinates of chunks of layers ``layer`` (N,) long: (N,), (N,), (N, F)."""
        return SlotInputs(self.role[layer], self.kind[layer], self.feats[layer])


@dataclass(frozen=True, eq=False)
class SlotChunks(Chunks):
    """:class:`zoo.Chunks` that also carry their network's :class:`SlotTable` (what a descriptor-mode
    tokenizer reads besides layer and position). ``with_data`` keeps it."""

    slots: SlotTable | None = None


def chunk_slots(chunks: Chunks) -> SlotInputs | None:
    """The slot coordinates of every chunk of ``chunks`` (None for plain :class:`zoo.Chunks`)."""
    table = getattr(chunks, "slots", None)
    return table.per_chunk(chunks.layer) if table is not None else None


@dataclass(frozen=True)
class SlotVocab:
    """The roles and kinds a generator has embeddings for. Index 0 of each is the shared unknown row."""

    roles: tuple[str, ...]  # "family/role" strings, e.g. "resnet/block.conv1.weight"
    kinds: tuple[str, ...]  # descriptor kinds, shared by families: "weight", "bias", "running_var", ...

    @classmethod
    def build(cls, specs: Iterable[ArchSpec]) -> SlotVocab:
        """Every role and kind of the given architectures (sorted, so the vocabulary is reproducible)."""
        roles: set[str] = set()
        kinds: set[str] = set()
        for spec in specs:
            for d in descriptors(spec):
                roles.add(role_key(spec.family, d.role))
                kinds.add(d.kind)
        return cls(tuple(sorted(roles)), tuple(sorted(kinds)))

    @property
    def num_roles(self) -> int:
        """Rows of the role embedding (the unknown row included)."""
        return len(self.roles) + 1

    @property
    def num_kinds(self) -> int:
        """Rows of the kind embedding (the unknown row included)."""
        return len(self.kinds) + 1

    def to_dict(self) -> dict[str, list[str]]:
        return {"roles": list(self.roles), "kinds": list(self.kinds)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlotVocab:
        return cls(tuple(d["roles"]), tuple(d["kinds"]))


def role_key(family: str, role: str) -> str:
    """A role as the vocabulary names it: ``"resnet/block.conv1.weight"``."""
    return f"{family}/{role}"


def descriptors(spec: ArchSpec) -> tuple[SlotDescriptor, ...]:
    """The family's descriptors of ``spec``'s generated tensors, in layout order."""
    return tuple(get_family(spec.family).descriptors(spec))


def slot_features(descs: Sequence[SlotDescriptor]) -> torch.Tensor:
    """The numeric features of each slot, all of order 1: (L, NUM_FEATURES) float32.

    ``stage / (num_stages + 1)``, ``depth_in_stage``, ``depth``, ``log(1 + fan_in) / 10``,
    ``log(1 + fan_out) / 10``, ``log(1 + numel) / 15``, ``ndim / 4``.
    """
    rows = [
        [
            d.stage / (d.num_stages + 1),
            d.depth_in_stage,
            d.depth,
            math.log1p(d.fan_in) / 10,
            math.log1p(d.fan_out) / 10,
            math.log1p(d.numel) / 15,
            len(d.shape) / 4,
        ]
        for d in descs
    ]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), NUM_FEATURES)


def slot_table(spec: ArchSpec, vocab: SlotVocab) -> SlotTable:
    """``spec``'s slot coordinates under ``vocab``; unknown roles and kinds map to row 0."""
    descs = descriptors(spec)
    roles = {r: i + 1 for i, r in enumerate(vocab.roles)}
    kinds = {k: i + 1 for i, k in enumerate(vocab.kinds)}
    return SlotTable(
        torch.tensor([roles.get(role_key(spec.family, d.role), 0) for d in descs], dtype=torch.long),
        torch.tensor([kinds.get(d.kind, 0) for d in descs], dtype=torch.long),
        slot_features(descs),
    )


class SlotEncoder(nn.Module):
    """Slot coordinates -> one vector per chunk: role and kind embeddings plus an MLP of the numeric
    features (each with sinusoids of ``FOURIER`` octaves, so nearby depths stay distinguishable).

    In training, each chunk's role is replaced by the unknown row with probability ``role_dropout``
    (and its kind, independently, with half that), so those rows learn what an unseen role should map to.
    """

    def __init__(self, num_roles: int, num_kinds: int, dim: int, role_dropout: float = 0.05) -> None:
        super().__init__()
        self.role_dropout = role_dropout
        self.role_emb = nn.Embedding(num_roles, dim)
        self.kind_emb = nn.Embedding(num_kinds, dim)
        width = NUM_FEATURES * (1 + 2 * FOURIER)
        self.feat_mlp = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim))
        self.register_buffer("octaves", math.pi * 2.0 ** torch.arange(FOURIER), persistent=False)

    def forward(self, slots: SlotInputs) -> torch.Tensor:
        """(..., dim) from role, kind (...,) long and feats (..., F) float."""
        role, kind = slots.role, slots.kind
        if self.training and self.role_dropout > 0:
            role = role.masked_fill(torch.rand(role.shape, device=role.device) < self.role_dropout, 0)
            kind = kind.masked_fill(torch.rand(kind.shape, device=kind.device) < self.role_dropout / 2, 0)
        x = slots.feats.float()
        angles = x[..., None] * self.octaves  # (..., F, FOURIER)
        fourier = torch.cat([x[..., None], angles.sin(), angles.cos()], -1).flatten(-2)  # (..., F * (1 + 2f))
        return self.role_emb(role) + self.kind_emb(kind) + self.feat_mlp(fourier)


# -- model space ---------------------------------------------------------------------------------------------
def log_slots(spec: ArchSpec, log_kinds: Sequence[str]) -> list[bool]:
    """Per generated tensor of ``spec``: whether it is modelled as its logarithm (its kind is in
    ``log_kinds``)."""
    if not log_kinds:
        return [False] * len(get_family(spec.family).layout(spec).generated)
    return [d.kind in log_kinds for d in descriptors(spec)]


def to_model_space(
    spec: ArchSpec, tensors: Sequence[torch.Tensor], log_kinds: Sequence[str]
) -> list[torch.Tensor]:
    """The values the generator models: tensors of kinds in ``log_kinds`` (BatchNorm running variances) as
    their natural logarithm (floored at 1e-12), the others as they are.

    A running variance must stay positive: modelled as it is, quantisation error of a few percent of the
    layer's spread turns small variances negative and the network's outputs into NaN; in log space an error
    is a relative one and the inverse (:func:`from_model_space`) is always positive.
    """
    return [t.clamp_min(1e-12).log() if log else t for t, log in zip(tensors, log_slots(spec, log_kinds))]


def from_model_space(
    spec: ArchSpec, tensors: Sequence[torch.Tensor], log_kinds: Sequence[str]
) -> list[torch.Tensor]:
    """The inverse of :func:`to_model_space`."""
    return [t.exp() if log else t for t, log in zip(tensors, log_slots(spec, log_kinds))]


# -- normalisation -----------------------------------------------------------------------------------------
def arch_label(key: str) -> str:
    """An architecture key (``family:name:config JSON``) as :class:`zoo.ArchSpec` prints it."""
    try:
        family, name, config = key.split(":", 2)
        return str(ArchSpec(family, name, json.loads(config)))
    except ValueError:  # not a key of that form: as it is
        return key


def layout_signature(spec: ArchSpec) -> str:
    """A hash of the family and the generated tensors' names and shapes: specs with equal signatures have
    the same layout (e.g. two specs that differ only in ``input_size``)."""
    slots = [(s.name, list(s.shape)) for s in get_family(spec.family).layout(spec).generated]
    return hashlib.sha256(json.dumps([spec.family, slots]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SlotObservation:
    """One slot of one trained architecture: where it sits and its statistics over that architecture's
    training checkpoints."""

    arch: str  # the architecture's key
    family: str
    role: str
    kind: str
    stage: int
    shape: tuple[int, ...]
    fan_in: int
    mean: float
    std: float
    count: float  # values pooled into mean and std (numel x checkpoints)

    def to_list(self) -> list[Any]:
        return [
            self.arch,
            self.family,
            self.role,
            self.kind,
            self.stage,
            list(self.shape),
            self.fan_in,
            self.mean,
            self.std,
            self.count,
        ]

    @classmethod
    def from_list(cls, row: Sequence[Any]) -> SlotObservation:
        a, fam, role, kind, stage, shape, fan_in, mean, std, count = row
        return cls(a, fam, role, kind, int(stage), tuple(shape), int(fan_in), mean, std, count)


@dataclass
class SlotStats:
    """Per-slot normalisation statistics for any architecture of the trained families (see the module
    docstring for the pooling order). Built at training time from the per-architecture statistics."""

    observations: list[SlotObservation] = field(default_factory=list)
    layouts: dict[str, str] = field(default_factory=dict)  # layout signature -> a trained arch key
    std_floor: float = 1e-8

    def __post_init__(self) -> None:
        self._groups: dict[tuple[Any, ...], list[SlotObservation]] = {}
        for o in self.observations:
            for key in self._keys(o.family, o.role, o.kind, o.stage, o.shape):
                self._groups.setdefault(key, []).append(o)

    @staticmethod
    def _keys(family: str, role: str, kind: str, stage: int, shape: tuple[int, ...]) -> list[tuple[Any, ...]]:
        """Group keys from most to least specific, one per pooled level (LEVELS[1:])."""
        return [
            ("shape", family, role, stage, tuple(shape)),
            ("stage", family, role, stage),
            ("role", family, role),
            ("kind", family, kind),
        ]

    @classmethod
    def build(
        cls, archs: Iterable[tuple[ArchSpec, torch.Tensor, torch.Tensor, int]], std_floor: float = 1e-8
    ) -> SlotStats:
        """From (spec, per-slot mean (L,), per-slot std (L,), number of checkpoints) per architecture."""
        obs: list[SlotObservation] = []
        layouts: dict[str, str] = {}
        for spec, mean, std, n in archs:
            layouts.setdefault(layout_signature(spec), spec.key)
            for d, m, s in zip(descriptors(spec), mean.tolist(), std.tolist()):
                where = (spec.key, spec.family, d.role, d.kind, d.stage, tuple(d.shape), d.fan_in)
                obs.append(SlotObservation(*where, m, s, d.numel * n))
        return cls(obs, layouts, std_floor)

    @property
    def families(self) -> set[str]:
        return {o.family for o in self.observations}

    def architectures(self, family: str) -> set[str]:
        """Keys of the trained architectures of ``family``, one per distinct layout."""
        of_family = {o.arch for o in self.observations if o.family == family}
        return {a for a in self.layouts.values() if a in of_family}

    def same_layout(self, spec: ArchSpec) -> str | None:
        """The key of a trained architecture with exactly ``spec``'s layout, or None."""
        return self.layouts.get(layout_signature(spec))

    def _pooled(self, group: list[SlotObservation], level: str, fan_in: int) -> tuple[float, float]:
        if level == "shape":  # same tensor shape: pool the sums exactly
            n = sum(o.count for o in group)
            mean = sum(o.mean * o.count for o in group) / n
            second = sum((o.std**2 + o.mean**2) * o.count for o in group) / n
            return mean, math.sqrt(max(second - mean**2, 0.0))
        # other shapes: mean and log std as lines in log fan-in over the group (one point per slot)
        xs = [math.log(max(o.fan_in, 1)) for o in group]
        x = math.log(max(fan_in, 1))
        return _line(xs, [o.mean for o in group], x), math.exp(
            _line(xs, [math.log(max(o.std, self.std_floor)) for o in group], x)
        )

    def lookup(self, spec: ArchSpec) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
        """Pooled (mean (L,) float64, std (L,) float64, level per slot) for ``spec``; None when some slot's
        kind is unknown in its family (nothing to pool from)."""
        means, stds, levels = [], [], []
        for d in descriptors(spec):
            for key in self._keys(spec.family, d.role, d.kind, d.stage, tuple(d.shape)):
                group = self._groups.get(key)
                if group:
                    m, s = self._pooled(group, key[0], d.fan_in)
                    means.append(m)
                    stds.append(max(s, self.std_floor))
                    levels.append(key[0])
                    break
            else:
                return None
        return (
            torch.tensor(means, dtype=torch.float64),
            torch.tensor(stds, dtype=torch.float64),
            levels,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "observations": [o.to_list() for o in self.observations],
            "layouts": self.layouts,
            "std_floor": self.std_floor,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlotStats:
        return cls(
            [SlotObservation.from_list(r) for r in d["observations"]],
            dict(d["layouts"]),
            float(d.get("std_floor", 1e-8)),
        )


def _line(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """The least-squares line through (xs, ys) at ``x``; the mean of ys when the xs do not vary."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((a - mx) ** 2 for a in xs)
    if sxx < 1e-12:
        return my
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sxx
    return my + slope * (x - mx)


__all__ = [
    "LEVELS",
    "LOG_KINDS",
    "NUM_FEATURES",
    "ChunkCoords",
    "SlotChunks",
    "SlotEncoder",
    "SlotInputs",
    "SlotObservation",
    "SlotStats",
    "SlotTable",
    "SlotVocab",
    "descriptors",
    "from_model_space",
    "arch_label",
    "chunk_slots",
    "layout_signature",
    "log_slots",
    "role_key",
    "slot_features",
    "slot_table",
    "to_model_space",
]
