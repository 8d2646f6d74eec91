"""Permutation alignment of checkpoints: weight matching (Git Re-Basin) and the average of aligned weights.

Two networks of one architecture trained from different seeds compute alike with their hidden units in
another order: permuting a layer's output units and the next layer's input units the same way leaves the
function unchanged. Weight matching (Ainsworth, Hayase and Srinivasa, "Git Re-Basin: Merging Models modulo
Permutation Symmetries", ICLR 2023, arXiv:2209.04836, section 3.2 and algorithm 1) finds, for each hidden
layer, the permutation of one network's units that brings its weights closest to a reference's, maximising
``sum_l <W_l^ref, P_l W_l P_{l-1}^T>`` by coordinate descent: one permutation at a time, the others fixed,
each step a linear assignment problem (:func:`scipy.optimize.linear_sum_assignment`), the permutations
visited in a random order (fixed by ``seed``) until a sweep improves none.

An architecture's symmetries are its family's to declare: :meth:`zoo.ArchitectureFamily.permutation_spec`
returns a :class:`PermutationSpec` (which tensor axes each permutation acts on), None when the family
declares none. The built-in ``cnn`` family declares its conv channels and hidden units; ``resnet`` declares
the inner channels of each residual block (see zoo_families/resnet.py for what it leaves out).

Cost (measured, bench/bench_alignment.py, bench/results/alignment.json; one core of a shared 2-core AMD
EPYC): 50 pairs of cnn-tiny checkpoints align in 0.1-0.2 s (2-3.5 ms a pair, trained or random); a pair of
resnet20s (block-inner channels) in about 15 ms. The cost grows with the cube of a layer's width (the
assignment) and linearly with the number of weights (the similarity matrices).

What it does not do: activation matching and straight-through estimation (the paper's other two methods,
which need data); re-estimating BatchNorm statistics after averaging (REPAIR, Jordan et al. 2023) — an
average of aligned ResNets keeps the mean of their running statistics; symmetries other than permutations
(per-unit scaling of ReLU networks, attention heads); aligning across architectures. Weight matching is a
heuristic: it finds a good permutation, not the best one, and only for the permutations declared.

Use a maintained implementation? The ``rebasin`` package (PyPI, last release 2023-06) traces the model with
torchview and needs the graphviz system package; ``sinkhorn-rebasin`` learns permutations by gradient
descent. Neither reads a state dict or a family's own declaration, so zoo keeps this small one (about 200
lines; the algorithm is the paper's algorithm 1).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from zoo.errors import ArchitectureMismatchError, UnknownFamilyError, ZooError
from zoo.records import ArchSpec

log = logging.getLogger(__name__)

StateDict = Mapping[str, torch.Tensor]
Weights = nn.Module | StateDict


@dataclass(frozen=True)
class PermutationSpec:
    """The permutation symmetries of an architecture: which state-dict tensor axes each permutation acts on.

    ``axes`` maps a tensor's state-dict key to one entry per axis: the name of the permutation that acts on
    that axis, or None. An axis may be ``k`` times longer than its permutation: it is then read as ``n``
    consecutive blocks of ``k`` (channel-major, as ``nn.Flatten`` lays out a conv's ``n`` channels of ``k``
    pixels each) and the blocks are permuted; at least one axis of each permutation has exactly its size
    (it gives the size). Tensors not named are never permuted (the input layer's
    inputs, the classifier's outputs, counters). ``follow`` names tensors that are permuted with their
    layer but not matched on (BatchNorm running statistics).

    Example: an MLP ``fc1 -> fc2`` with one hidden permutation ``"h"``::

        PermutationSpec({"fc1.weight": ("h", None), "fc1.bias": ("h",), "fc2.weight": (None, "h")})
    """

    axes: Mapping[str, tuple[str | None, ...]]  # tensor key -> the permutation acting on each axis, or None
    follow: frozenset[str] = field(default_factory=frozenset)  # permuted with their layer, not matched on

    @property
    def permutations(self) -> dict[str, list[tuple[str, int]]]:
        """Each permutation's name -> the (tensor key, axis) pairs it acts on, in ``axes`` order."""
        out: dict[str, list[tuple[str, int]]] = {}
        for key, perms in self.axes.items():
            for axis, p in enumerate(perms):
                if p is not None:
                    out.setdefault(p, []).append((key, axis))
        return out

    def sizes(self, state_dict: StateDict) -> dict[str, int]:
        """Each permutation's number of units in ``state_dict``; raises when the tensors disagree.

        Raises:
            ArchitectureMismatchError: a tensor of the spec is missing, has another number of axes, or an
                axis whose length is not a multiple of its permutation's size.
        """
        for key, perms in self.axes.items():
            if key not in state_dict:
                raise ArchitectureMismatchError("the permutation spec", missing=[key])
            if state_dict[key].dim() != len(perms):
                raise ArchitectureMismatchError(
                    "the permutation spec",
                    detail=f"tensor {key!r} has {state_dict[key].dim()} axes, the spec names {len(perms)}",
                )
        sizes: dict[str, int] = {}
        for p, where in self.permutations.items():
            n = min(int(state_dict[k].shape[a]) for k, a in where)  # the unblocked axes give the size
            for k, a in where:
                if int(state_dict[k].shape[a]) % n:
                    raise ArchitectureMismatchError(
                        "the permutation spec",
                        detail=f"axis {a} of {k!r} ({state_dict[k].shape[a]}) is not a multiple of the "
                        f"{n} units of permutation {p!r}",
                    )
            sizes[p] = n
        return sizes


def permutation_spec(spec: ArchSpec | str) -> PermutationSpec | None:
    """The permutation symmetries of architecture ``spec`` as its family declares them, None if it declares
    none (:meth:`zoo.ArchitectureFamily.permutation_spec`).

    Raises:
        UnknownFamilyError: an unknown architecture name.
    """
    from zoo.plugins import get_family, resolve_arch

    arch = resolve_arch(spec)
    return get_family(arch.family).permutation_spec(arch)


def _state(weights: Weights) -> dict[str, torch.Tensor]:
    sd = weights.state_dict() if isinstance(weights, nn.Module) else weights
    return {k: v.detach().to("cpu") for k, v in sd.items()}


def _resolve(
    reference: StateDict, spec: ArchSpec | PermutationSpec | str | None
) -> tuple[PermutationSpec, ArchSpec | None]:
    """The permutation spec to align with and the architecture (None when given a PermutationSpec)."""
    if isinstance(spec, PermutationSpec):
        return spec, None
    from zoo.plugins import detect_arch, get_family, resolve_arch

    try:
        arch = detect_arch(reference) if spec is None else resolve_arch(spec)
    except UnknownFamilyError as exc:
        raise UnknownFamilyError(
            exc.what,
            exc.installed,
            "Pass spec= (an architecture name or ArchSpec, or a zoo.PermutationSpec), or install the plugin "
            "for it (see docs/writing-a-plugin.md)",
        ) from None
    family = get_family(arch.family)
    perm_spec = family.permutation_spec(arch)
    if perm_spec is None:
        raise ZooError(
            f"architecture {family.label(arch)} (family {arch.family!r}) declares no permutation symmetry, "
            f"so its checkpoints cannot be aligned; pass spec=zoo.PermutationSpec(...) naming the tensor "
            f"axes its hidden units permute, or implement zoo.ArchitectureFamily.permutation_spec in the "
            f"{arch.family!r} plugin"
        )
    return perm_spec, arch


def _prepared(
    weights: Sequence[Weights], labels: Sequence[str], spec: ArchSpec | PermutationSpec | str | None
) -> tuple[PermutationSpec, list[dict[str, torch.Tensor]]]:
    """The permutation spec and the states (the reference first), checked to be of one architecture."""
    states = [_state(w) for w in weights]
    perm_spec, arch = _resolve(states[0], spec)
    return perm_spec, _check(states, labels, perm_spec, arch)


def _check(
    states: Sequence[dict[str, torch.Tensor]],
    labels: Sequence[str],
    perm_spec: PermutationSpec,
    arch: ArchSpec | None,
) -> list[dict[str, torch.Tensor]]:
    """Every state canonical for ``arch`` (or with the reference's keys and shapes); raises otherwise,
    naming the offending state by its label (``others[1]``)."""
    fix = (
        "align checkpoints of one architecture only (spec= names it; detected from the reference if omitted)"
    )
    if arch is not None:
        from zoo.plugins import get_family

        family = get_family(arch.family)
        out = []
        for label, sd in zip(labels, states):
            err = family.mismatch(arch, sd)
            if err is not None:
                text = err.args[0].replace(
                    "Check the architecture you passed (arch=) or let zoo detect it", fix
                )
                err.args = (f"{label}: {text}", *err.args[1:])
                raise err
            out.append(family.canonicalize(arch, sd))
        return out
    ref = states[0]
    for label, sd in zip(labels[1:], states[1:]):
        if set(sd) != set(ref):
            raise ArchitectureMismatchError(
                f"{labels[0]}'s",
                missing=sorted(set(ref) - set(sd)),
                unexpected=sorted(set(sd) - set(ref)),
                detail=f"{label} has other tensors; {fix}",
            )
        for k, t in sd.items():
            if t.shape != ref[k].shape:
                raise ArchitectureMismatchError(
                    f"{labels[0]}'s", layer=k, expected=ref[k].shape, got=t.shape, detail=f"in {label}; {fix}"
                )
    perm_spec.sizes(ref)
    return [dict(sd) for sd in states]


def _take(t: torch.Tensor, axis: int, perm: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` with the ``n`` units (or blocks of units) of ``axis`` reordered by ``perm``."""
    size = t.shape[axis]
    if size == n:
        return t.index_select(axis, perm)
    k = size // n  # blocks of k: unit i owns positions i*k .. i*k+k-1
    index = (perm[:, None] * k + torch.arange(k)).reshape(-1)
    return t.index_select(axis, index)


def _permuted(
    perm_spec: PermutationSpec,
    perms: Mapping[str, torch.Tensor],
    key: str,
    t: torch.Tensor,
    except_axis: int = -1,
) -> torch.Tensor:
    for axis, p in enumerate(perm_spec.axes.get(key, ())):
        if p is not None and axis != except_axis:
            t = _take(t, axis, perms[p], len(perms[p]))
    return t


def apply_permutations(
    perm_spec: PermutationSpec, state: StateDict, perms: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` with each permutation of ``perms`` applied to every axis it acts on (exact: a reindexing).

    ``perms[p][i]`` is the unit of ``state`` that goes to position ``i``.
    """
    return {k: _permuted(perm_spec, perms, k, t).contiguous() for k, t in state.items()}


def weight_matching(
    perm_spec: PermutationSpec, reference: StateDict, other: StateDict, *, max_iter: int = 100, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The permutations that bring ``other`` closest to ``reference`` (Git Re-Basin's algorithm 1).

    Returns ``{permutation name: index tensor}``, to apply with :func:`apply_permutations`. Deterministic
    given ``seed`` (the order in which the permutations are visited).
    """
    sizes = perm_spec.sizes(reference)
    where = perm_spec.permutations
    perms = {p: torch.arange(n) for p, n in sizes.items()}
    names = sorted(perms)
    ref = {k: t.double() for k, t in reference.items() if k in perm_spec.axes}
    oth = {k: t.double() for k, t in other.items() if k in perm_spec.axes}
    rng = np.random.default_rng(seed)
    for it in range(max_iter):
        progress = False
        for p in (names[i] for i in rng.permutation(len(names))):
            n = sizes[p]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for key, axis in where[p]:
                if key in perm_spec.follow:
                    continue
                w_a = ref[key].movedim(axis, 0).reshape(n, -1)  # (n, rest): blocks stay with their unit
                w_b = (
                    _permuted(perm_spec, perms, key, oth[key], except_axis=axis)
                    .movedim(axis, 0)
                    .reshape(n, -1)
                )
                cost += w_a @ w_b.T  # (n, n): similarity of reference unit i and other unit j
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(cols, dtype=torch.long)
            old_score = cost[torch.arange(n), perms[p]].sum().item()
            new_score = cost[torch.arange(n), new].sum().item()
            if new_score > old_score + 1e-12 * max(1.0, abs(old_score)):
                progress = True
                perms[p] = new
        if not progress:
            log.debug("weight matching converged after %d sweep(s)", it + 1)
            break
    else:
        log.info("weight matching stopped at max_iter=%d before converging", max_iter)
    return perms


def align(
    reference: Weights,
    others: Sequence[Weights],
    spec: ArchSpec | PermutationSpec | str | None = None,
    *,
    max_iter: int = 100,
    seed: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """Each of ``others`` with its hidden units permuted to match ``reference`` (weight matching).

    ``reference`` and ``others``: modules or state dicts of one architecture. ``spec``: that architecture
    (an :class:`ArchSpec` or name; detected from ``reference`` when None), or a :class:`PermutationSpec`
    for a network no family describes. Returns one state dict per other, canonical (every tensor, module
    order, CPU, dtypes kept): each computes the same function as before, only its units reordered.
    Deterministic given ``seed``; ``max_iter``: the most sweeps over the permutations.

    Raises:
        ZooError: the architecture declares no permutation symmetry (the message says how to declare one).
        ArchitectureMismatchError: a checkpoint does not fit the reference's architecture.
        UnknownFamilyError: no installed family recognises the reference (pass ``spec``).
    """
    if isinstance(others, (nn.Module, Mapping)):
        raise ZooError("align takes a list of checkpoints to align: pass others=[network] for one")
    labels = ["the reference", *(f"others[{i}]" for i in range(len(others)))]
    perm_spec, states = _prepared([reference, *others], labels, spec)
    return _aligned(perm_spec, states, max_iter=max_iter, seed=seed)[1:]


def _aligned(
    perm_spec: PermutationSpec, states: list[dict[str, torch.Tensor]], *, max_iter: int, seed: int
) -> list[dict[str, torch.Tensor]]:
    """``states`` with every one after the first aligned to the first (the first as it is)."""
    ref, out = states[0], [states[0]]
    for sd in states[1:]:
        perms = weight_matching(perm_spec, ref, sd, max_iter=max_iter, seed=seed)
        out.append(apply_permutations(perm_spec, sd, perms))
    return out


def average_aligned(
    states: Sequence[Weights],
    spec: ArchSpec | PermutationSpec | str | None = None,
    reference: int = 0,
    *,
    max_iter: int = 100,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """The element-wise mean of ``states`` after aligning each to ``states[reference]`` (:func:`align`).

    Floating tensors are averaged (in float64, returned in their dtype); integer buffers
    (``num_batches_tracked``) are the reference's. BatchNorm running statistics are averaged as they are,
    not re-estimated.

    Raises:
        ZooError: no states, ``reference`` out of range, or an architecture without a permutation spec.
        ArchitectureMismatchError: the states are not of one architecture.
    """
    if not states:
        raise ZooError("average_aligned needs at least one checkpoint; pass a list of modules or state dicts")
    if not -len(states) <= reference < len(states):
        raise ZooError(
            f"reference={reference} is out of range for {len(states)} checkpoints; pass an index from 0 to "
            f"{len(states) - 1}"
        )
    first = reference % len(states)
    order = [first, *(i for i in range(len(states)) if i != first)]
    perm_spec, prepared = _prepared([states[i] for i in order], [f"states[{i}]" for i in order], spec)
    aligned = _aligned(perm_spec, prepared, max_iter=max_iter, seed=seed)
    out: dict[str, torch.Tensor] = {}
    for key, t in aligned[0].items():
        if t.dtype.is_floating_point:
            out[key] = torch.stack([sd[key].double() for sd in aligned]).mean(0).to(t.dtype)
        else:
            out[key] = t.clone()
    return out


__all__ = [
    "PermutationSpec",
    "align",
    "apply_permutations",
    "average_aligned",
    "permutation_spec",
    "weight_matching",
]
