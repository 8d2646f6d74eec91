"""Function-preserving adaptation of a checkpoint to a wider or deeper architecture (Net2Net).

Chen, Goodfellow & Shlens, "Net2Net: Accelerating Learning via Knowledge Transfer" (ICLR 2016,
arXiv 1511.05641). When no checkpoint of the requested architecture exists, the nearest trained one is
turned into one of the requested architecture that computes the same function: the honest baseline a weight
generator has to beat on unseen architectures.

:func:`adapt` supports:

- CIFAR ResNets (family ``resnet``, ``style: "cifar"``): **widening** (``width`` w -> w' >= w, Net2WiderNet)
  and **deepening** (``depth`` 6n+2 -> 6n'+2 with n' >= n, Net2DeeperNet), alone or together. Both preserve
  the function exactly (up to float rounding), in eval mode and in a train-mode forward pass alike.
- ``cnn`` networks: widening of every convolution and of the hidden layer; exact. Deepening is not supported
  (a valid convolution followed by pooling cannot be initialised as an identity).

Widening. Every channel group of the target gets a mapping ``g`` from its channels to the source's:
``g(j) = j`` for the source's channels, and each new channel copies a seeded random existing one. A layer's
incoming weights (output rows), bias and BatchNorm parameters and running statistics are copied along ``g``;
its consumer's weights (input columns) are copied along ``g`` and divided by how many target channels copy
each source channel, so the consumer's sum is unchanged. In a ResNet every tensor that writes to the same
residual stream (the stem, and ``conv2``/``bn2`` of every block of a stage) shares one mapping, the inner
channels of each block (``conv1``/``bn1``) get their own. The option-A shortcut entering stages 2 and 3
subsamples and zero-pads: the stream of width ``2n`` is ``[n//2 zero channels | the previous stream's n
channels | zero channels]``. The target's middle channels therefore follow the previous stage's mapping, and
its padding channels map only onto the source's padding channels (left onto left, right onto right), whose
shortcut input is zero in both networks.

Deepening. Each stage keeps the source's blocks (its first block, the one that downsamples, stays first);
the new blocks are identities at initialisation: ``conv1``/``conv2`` Kaiming-normal (seeded), ``bn1`` weight
1, ``bn2`` weight and bias 0 (the "zero-init residual" of Goyal et al. 2017), running statistics 0 and 1.
Then ``bn2`` outputs exactly 0 and the block computes ``relu(0 + x) = x`` on its non-negative (post-ReLU)
input; the Kaiming-initialised convolutions give ``bn2``'s weight a non-zero gradient so the block can learn.
``placement="end"`` (default) appends the new blocks after the source's in each stage; ``"spread"``
spaces the source's blocks evenly (source block i at target position ``round(i * n' / n)``).

Shallowing (n' < n) is not function-preserving: refused unless ``allow_shallower=True``, which keeps the
first n' blocks of each stage and drops the rest; the result is then flagged ``exact=False``. Narrowing is
always refused.

Noise. ``noise > 0`` adds seeded Gaussian noise of standard deviation ``noise * std(W)`` to every
convolution and linear weight ``W`` taken from the source (not biases, BatchNorm or new blocks): it breaks
the symmetry between replicated channels, as in the paper, and with an unchanged architecture it gives the
"checkpoint plus noise" baseline of Zeng et al. (arXiv 2506.07998). The result is then flagged
``exact=False``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from zoo.errors import AdaptationError, ConfigError
from zoo.family import ArchitectureFamily, StateDict
from zoo.plugins import get_family
from zoo.records import ArchSpec

log = logging.getLogger(__name__)

PAPER = "Net2Net (Chen, Goodfellow & Shlens 2016, arXiv 1511.05641)"
Placement = Literal["end", "spread"]
_STAGES = (1, 2, 3)  # the CIFAR ResNet stages, named layer1..layer3 in its state dict
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")  # a BatchNorm's tensors


@dataclass(frozen=True)
class Adapted:
    """A state dict adapted from ``source`` to ``target``, and what was done to it."""

    state_dict: dict[str, torch.Tensor]  # exactly the keys and shapes of family.slots(target), module order
    source: ArchSpec  # the architecture the weights came from
    target: ArchSpec  # the architecture of state_dict
    exact: bool  # True: target computes source's function (up to float rounding); False: approximate
    provenance: str  # in words: what was widened / deepened / dropped, from which spec, seed and noise


def adapt(
    state_dict: StateDict,
    source: ArchSpec,
    target: ArchSpec,
    *,
    seed: int = 0,
    noise: float = 0.0,
    placement: Placement = "end",
    allow_shallower: bool = False,
) -> Adapted:
    """Adapt ``state_dict`` of ``source`` to the wider and/or deeper ``target``, preserving its function.

    Args:
        state_dict: weights of ``source`` (checked and canonicalised by the family; ``module.`` prefixes and
            missing ``num_batches_tracked`` are fine).
        source: the architecture of ``state_dict``.
        target: the architecture wanted: same family, ``num_classes`` and ``in_chans``; wider and/or deeper.
        seed: seeds every random choice (replicated channels, new blocks' convolutions, noise).
        noise: relative standard deviation of the noise added to the weights taken from the source (0: none,
            the result is exact). See the module docstring.
        placement: where a CIFAR ResNet's new blocks go in each stage: ``"end"`` or ``"spread"``.
        allow_shallower: for a shallower CIFAR ResNet, drop the last blocks of each stage (approximate)
            instead of refusing.

    Returns:
        An :class:`Adapted` whose ``state_dict`` loads into ``family.build(target)`` (``strict=True``);
        tensors keep the source's floating dtype.

    Raises:
        AdaptationError: the pair is not supported (another family, other classes or input channels, an
            ImageNet ResNet, an odd ResNet width, narrower, shallower without ``allow_shallower``, a cnn with
            other depth, kernels, input size or activation), naming both specs and the fix; raised before
            the weights are read.
        ArchitectureMismatchError: ``state_dict`` does not fit ``source``.
        ConfigError: ``noise`` is negative or ``placement`` unknown.
    """
    if noise < 0:
        raise ConfigError(f"noise must be >= 0 (a relative standard deviation), got {noise!r}")
    if placement not in ("end", "spread"):
        raise ConfigError(f"placement must be 'end' or 'spread', got {placement!r}")
    if source.family != target.family:
        raise _refuse(
            source,
            target,
            f"they are of different families ({source.family!r}, {target.family!r})",
            "choose a source checkpoint of the target's family",
        )
    family = get_family(source.family)
    source, target = _normalized(family, source), _normalized(family, target)
    pair = _ADAPTERS.get(family.name)
    if pair is None:
        raise _refuse(
            source,
            target,
            f"adaptation supports the families {sorted(_ADAPTERS)}, not {family.name!r}",
            "fine-tune or generate weights for it instead",
        )
    for key in ("num_classes", "in_chans"):
        if source.config.get(key) != target.config.get(key):
            raise _refuse(
                source,
                target,
                f"{key} differs ({source.config.get(key)} -> {target.config.get(key)}); adaptation never "
                "changes the input or the classifier's outputs",
                f"choose a source checkpoint with {key}={target.config.get(key)!r}",
            )
    check, adapter = pair
    check(source, target, allow_shallower=allow_shallower)
    sd = family.canonicalize(source, state_dict)
    gen = torch.Generator().manual_seed(seed)
    work = _Work(gen)
    out = adapter(family, sd, source, target, work, placement=placement)
    touched = _add_noise(out, work.from_source, noise, gen) if noise > 0 else 0
    result = _in_slot_order(family, target, out)
    exact = work.exact and touched == 0
    steps = "; ".join(work.steps) or "identical architecture: the weights are copied unchanged"
    noise_text = (
        f"noise {noise:g} x std added to {touched} weight tensor(s) taken from the source"
        if touched
        else "no noise"
    )
    provenance = f"{PAPER} adaptation of {source} to {target}: {steps}; seed {seed}, {noise_text}; " + (
        "exact: the target computes the source's function"
        if exact
        else "approximate: the target's function differs from the source's"
    )
    log.info("%s", provenance)
    return Adapted(result, source, target, exact, provenance)


# -- shared machinery -------------------------------------------------------------------------------------


class _Work:
    """What one adaptation has done so far: the random generator, the steps in words, exactness, and the
    names of the weights copied from the source (those that noise applies to)."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen
        self.steps: list[str] = []
        self.exact = True
        self.from_source: set[str] = set()


def _normalized(family: ArchitectureFamily, spec: ArchSpec) -> ArchSpec:
    """``spec`` as the family's ``parse`` writes it (every setting present), or ``spec`` if it cannot."""
    return family.parse(spec.name, **dict(spec.config)) or spec


def _refuse(source: ArchSpec, target: ArchSpec, reason: str, fix: str) -> AdaptationError:
    return AdaptationError(source, target, reason, fix)


def _widen_map(n_src: int, n_tgt: int, gen: torch.Generator) -> torch.Tensor:
    """``(n_tgt,)`` source index of each target channel: the identity on the first ``n_src``, then seeded
    random picks (Net2WiderNet's ``g``). Onto every source channel when ``n_tgt >= n_src``."""
    assert n_tgt >= n_src and (n_src >= 1 or n_tgt == 0), f"cannot widen {n_src} channels to {n_tgt}"
    extra = torch.randint(0, max(n_src, 1), (n_tgt - n_src,), generator=gen)
    return torch.cat([torch.arange(n_src), extra])  # (n_tgt,)


def _take_out(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Rows (output channels / units) of ``w`` copied along ``g``: ``(n_src, ...) -> (len(g), ...)``."""
    return w.index_select(0, g)


def _take_in(w: torch.Tensor, g: torch.Tensor, n_src: int) -> torch.Tensor:
    """Columns (input channels) of ``w`` ``(out, n_src, ...)`` copied along ``g`` and divided by how many
    target channels copy each source channel: ``(out, len(g), ...)``; the layer's output is unchanged when its
    input channels are replicated along ``g``."""
    counts = torch.bincount(g, minlength=n_src)
    assert int(counts.min()) >= 1, "a widening map must reach every source channel"
    scale = (1.0 / counts.to(torch.float64))[g].to(w.dtype)  # (len(g),)
    return w.index_select(1, g) * scale.view(1, -1, *([1] * (w.dim() - 2)))


def _add_noise(out: dict[str, torch.Tensor], names: set[str], noise: float, gen: torch.Generator) -> int:
    """Add ``noise * std(W) * N(0, 1)`` to each conv/linear weight in ``names``; the number changed."""
    touched = 0
    for name in sorted(names):
        w = out[name]
        if w.dim() < 2 or w.numel() < 2:
            continue
        std = float(w.double().std())
        eps = torch.randn(w.shape, generator=gen, dtype=torch.float64)
        out[name] = (w.double() + noise * std * eps).to(w.dtype)
        touched += 1
    return touched


def _in_slot_order(
    family: ArchitectureFamily, target: ArchSpec, out: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``out`` in the target's module order, checked against its slots (a failure is a bug here); copies, so
    that the result never shares memory with the caller's state dict."""
    slots = family.slots(target)
    assert set(out) == {s.name for s in slots}, (
        f"adapted keys differ from {target}'s: missing {sorted({s.name for s in slots} - set(out))[:3]}, "
        f"extra {sorted(set(out) - {s.name for s in slots})[:3]}"
    )
    for s in slots:
        assert tuple(out[s.name].shape) == s.shape, f"{s.name}: {tuple(out[s.name].shape)} != {s.shape}"
    return {s.name: out[s.name].detach().clone(memory_format=torch.contiguous_format) for s in slots}


# -- CIFAR ResNets ----------------------------------------------------------------------------------------


def _copy_bn(
    out: dict[str, torch.Tensor], sd: Mapping[str, torch.Tensor], src: str, dst: str, g: torch.Tensor
) -> None:
    """BatchNorm ``src`` of the source as ``dst`` of the target, channels copied along ``g``."""
    for t in _BN:
        v = sd[f"{src}.{t}"]
        out[f"{dst}.{t}"] = v.clone() if t == "num_batches_tracked" else _take_out(v, g)


def _padded_stream(prev: torch.Tensor, n_src: int, gen: torch.Generator) -> torch.Tensor:
    """The mapping of a stage's residual stream (width ``2 n``) from the previous stage's (``prev``: width
    ``n'`` of the target onto ``n_src`` of the source), following the option-A shortcut of
    zoo_families/resnet.py:
    ``[planes // 4 zero channels | previous stream | zero channels up to planes]``."""
    n_tgt = len(prev)
    p_src, p_tgt = (2 * n_src) // 4, (2 * n_tgt) // 4
    q_src, q_tgt = n_src - p_src, n_tgt - p_tgt  # right padding: 2n - n - left
    left = _widen_map(p_src, p_tgt, gen)
    right = p_src + n_src + _widen_map(q_src, q_tgt, gen)
    return torch.cat([left, p_src + prev, right])  # (2 n_tgt,)


def _widen_resnet(
    sd: Mapping[str, torch.Tensor], n: int, w: int, w2: int, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """A CIFAR ResNet of ``n`` blocks per stage widened from width ``w`` to ``w2`` (Net2WiderNet)."""
    out: dict[str, torch.Tensor] = {}
    stream = _widen_map(w, w2, gen)  # (w2,) the stem's output = stage 1's residual stream
    out["conv1.weight"] = _take_out(sd["conv1.weight"], stream)  # (w2, in_chans, 3, 3)
    _copy_bn(out, sd, "bn1", "bn1", stream)
    width_in = w  # source width of the stream entering the stage
    for s in _STAGES:
        planes = w * 2 ** (s - 1)  # the source's channels in this stage
        new_stream = stream if s == 1 else _padded_stream(stream, width_in, gen)  # (w2 * 2**(s-1),)
        for j in range(n):
            g_in, n_in = (stream, width_in) if j == 0 else (new_stream, planes)
            inner = _widen_map(planes, w2 * 2 ** (s - 1), gen)  # the block's own conv1/bn1 channels
            p = f"layer{s}.{j}"
            out[f"{p}.conv1.weight"] = _take_in(_take_out(sd[f"{p}.conv1.weight"], inner), g_in, n_in)
            _copy_bn(out, sd, f"{p}.bn1", f"{p}.bn1", inner)
            out[f"{p}.conv2.weight"] = _take_in(_take_out(sd[f"{p}.conv2.weight"], new_stream), inner, planes)
            _copy_bn(out, sd, f"{p}.bn2", f"{p}.bn2", new_stream)
        stream, width_in = new_stream, planes
    out["linear.weight"] = _take_in(sd["linear.weight"], stream, width_in)  # (num_classes, 4 w2)
    out["linear.bias"] = sd["linear.bias"].clone()
    return out


def _block_positions(n: int, n2: int, placement: Placement) -> list[int]:
    """Target position of each kept source block in a stage of ``n2`` blocks (block 0 stays at 0)."""
    if placement == "spread":
        return [int(round(i * n2 / n)) for i in range(n)]
    return list(range(n))


def _identity_block(
    family: ArchitectureFamily, target: ArchSpec, prefix: str, dtype: torch.dtype, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """A new block's tensors (named from the target's slots) such that it computes ``relu(0 + x) = x``."""
    out: dict[str, torch.Tensor] = {}
    for slot in family.slots(target):
        if not slot.name.startswith(prefix):
            continue
        part = slot.name[len(prefix) :]
        if part.endswith("num_batches_tracked"):
            out[slot.name] = torch.zeros(slot.shape, dtype=slot.dtype)
        elif part.startswith("conv") and len(slot.shape) == 4:
            fan_in = slot.shape[1] * slot.shape[2] * slot.shape[3]
            std = (2.0 / fan_in) ** 0.5  # Kaiming normal (fan_in, ReLU)
            out[slot.name] = (torch.randn(slot.shape, generator=gen) * std).to(dtype)
        elif part in ("bn1.weight", "bn1.running_var", "bn2.running_var"):
            out[slot.name] = torch.ones(slot.shape, dtype=dtype)
        elif part in ("bn1.bias", "bn2.weight", "bn2.bias", "bn1.running_mean", "bn2.running_mean"):
            out[slot.name] = torch.zeros(slot.shape, dtype=dtype)  # bn2 weight and bias 0: the identity
        else:
            raise AssertionError(f"unexpected tensor {slot.name} in a CIFAR ResNet block")
    return out


def _check_resnet(source: ArchSpec, target: ArchSpec, *, allow_shallower: bool) -> None:
    """Raise unless ``source`` -> ``target`` is a supported CIFAR ResNet pair."""
    cs, ct = source.config, target.config
    if cs.get("style") != "cifar" or ct.get("style") != "cifar":
        raise _refuse(
            source,
            target,
            "only CIFAR ResNets (6n+2, option-A shortcuts) are adapted, not ImageNet ResNets",
            "use a CIFAR ResNet on both sides, or fine-tune the ImageNet ResNet",
        )
    n, n2 = (cs["depth"] - 2) // 6, (ct["depth"] - 2) // 6
    w, w2 = cs["width"], ct["width"]
    if w % 2 or w2 % 2:
        raise _refuse(
            source,
            target,
            f"width {w if w % 2 else w2} is odd; the option-A shortcut pads planes // 4 channels on each "
            "side, which fits only even widths",
            "use even widths on both sides",
        )
    if w2 < w:
        raise _refuse(
            source,
            target,
            f"the target is narrower (width {w} -> {w2}); narrowing is not function-preserving",
            f"choose a source checkpoint with width <= {w2}",
        )
    if n2 < n and not allow_shallower:
        raise _refuse(
            source,
            target,
            f"the target is shallower ({n} -> {n2} blocks per stage); dropping blocks is not "
            "function-preserving",
            f"choose a source checkpoint with depth <= {ct['depth']}, or pass allow_shallower=True to "
            "drop the last blocks of each stage (approximate)",
        )


def _adapt_resnet(
    family: ArchitectureFamily,
    sd: dict[str, torch.Tensor],
    source: ArchSpec,
    target: ArchSpec,
    work: _Work,
    *,
    placement: Placement,
) -> dict[str, torch.Tensor]:
    """The CIFAR ResNet ``sd`` of ``source`` widened, then deepened (or cut) to ``target``."""
    cs, ct = source.config, target.config
    n, n2 = (cs["depth"] - 2) // 6, (ct["depth"] - 2) // 6
    w, w2 = cs["width"], ct["width"]
    if cs.get("input_size") != ct.get("input_size"):
        work.steps.append(
            f"input_size {cs.get('input_size')} -> {ct.get('input_size')} (the network is fully "
            "convolutional; its weights do not depend on it)"
        )
    if w2 > w:
        sd = _widen_resnet(sd, n, w, w2, work.gen)
        work.steps.append(
            f"widened width {w} -> {w2} (Net2WiderNet: each new channel copies a seeded random existing "
            "one, consumers' weights divided by the copy counts, one mapping per residual stream)"
        )
    if n2 == n:
        work.from_source = {k for k, v in sd.items() if v.dim() >= 2}
        return dict(sd)
    out = {k: v for k, v in sd.items() if not k.startswith("layer")}
    positions = _block_positions(n, n2, placement) if n2 > n else list(range(n2))  # of source blocks 0, 1..
    new = sorted(set(range(n2)) - set(positions))
    dtype = sd["conv1.weight"].dtype
    for s in _STAGES:
        for i, pos in enumerate(positions):
            src, dst = f"layer{s}.{i}.", f"layer{s}.{pos}."
            out.update({dst + k[len(src) :]: v for k, v in sd.items() if k.startswith(src)})
    work.from_source = {k for k, v in out.items() if v.dim() >= 2}
    for s in _STAGES:
        for pos in new:
            out.update(_identity_block(family, target, f"layer{s}.{pos}.", dtype, work.gen))
    if n2 > n:
        work.steps.append(
            f"deepened {n} -> {n2} blocks per stage (Net2DeeperNet, placement {placement!r}: source "
            f"blocks at positions {positions}, new identity blocks at {new}, their bn2 weight and bias 0)"
        )
    else:
        work.exact = False
        work.steps.append(
            f"made shallower {n} -> {n2} blocks per stage by dropping blocks "
            f"{list(range(n2, n))} of each stage"
        )
    return out


# -- cnn --------------------------------------------------------------------------------------------------


def _check_cnn(source: ArchSpec, target: ArchSpec, *, allow_shallower: bool) -> None:
    """Raise unless ``source`` -> ``target`` is a supported cnn pair (widening only)."""
    cs, ct = source.config, target.config
    if len(cs["channels"]) != len(ct["channels"]):
        raise _refuse(
            source,
            target,
            f"the number of convolutions differs ({len(cs['channels'])} -> {len(ct['channels'])}); "
            "cnn networks are only widened, never deepened (a valid convolution with pooling has no "
            "identity initialisation)",
            f"choose a source checkpoint with {len(ct['channels'])} convolutions",
        )
    for key in ("kernels", "input_size", "activation"):
        if cs[key] != ct[key]:
            raise _refuse(
                source,
                target,
                f"{key} differs ({cs[key]} -> {ct[key]}); only channels and hidden may grow",
                f"choose a source checkpoint with {key}={ct[key]!r}",
            )
    widths = list(zip(cs["channels"], ct["channels"])) + [(cs["hidden"], ct["hidden"])]
    if any(b < a for a, b in widths):
        raise _refuse(
            source,
            target,
            f"the target is narrower (channels {cs['channels']} -> {ct['channels']}, hidden {cs['hidden']} "
            f"-> {ct['hidden']}); narrowing is not function-preserving",
            "choose a source checkpoint no wider than the target in every layer",
        )


def _adapt_cnn(
    family: ArchitectureFamily,
    sd: dict[str, torch.Tensor],
    source: ArchSpec,
    target: ArchSpec,
    work: _Work,
    *,
    placement: Placement,
) -> dict[str, torch.Tensor]:
    """The cnn ``sd`` of ``source`` widened to ``target``."""
    cs, ct = source.config, target.config
    widths = list(zip(cs["channels"], ct["channels"])) + [(cs["hidden"], ct["hidden"])]
    # the layers in module order, from the family's slots: convs (4-d weights), then the two linear layers
    weights = [s.name for s in family.slots(source) if s.name.endswith(".weight")]
    convs = [k for k in weights if sd[k].dim() == 4]
    fc1, fc2 = [k for k in weights if sd[k].dim() == 2]
    out: dict[str, torch.Tensor] = {k: v.clone() for k, v in sd.items()}
    prev: torch.Tensor | None = None  # mapping of the previous layer's output channels (None: the input)
    n_prev = cs["in_chans"]
    for key, (c, c2) in zip(convs, widths):
        g = _widen_map(c, c2, work.gen)
        w = _take_out(sd[key], g)  # (c2, in, k, k)
        out[key] = w if prev is None else _take_in(w, prev, n_prev)
        bias = key[: -len("weight")] + "bias"
        out[bias] = _take_out(sd[bias], g)
        prev, n_prev = g, c
    assert prev is not None
    hidden, hidden2 = widths[-1]
    gh = _widen_map(hidden, hidden2, work.gen)
    side2 = sd[fc1].shape[1] // n_prev  # spatial positions per channel of the flattened features
    w1 = _take_out(sd[fc1], gh).reshape(hidden2, n_prev, side2)  # (hidden2, C, H*W): flatten is (C, H, W)
    out[fc1] = _take_in(w1, prev, n_prev).reshape(hidden2, len(prev) * side2)
    out[fc1[: -len("weight")] + "bias"] = _take_out(sd[fc1[: -len("weight")] + "bias"], gh)
    out[fc2] = _take_in(sd[fc2], gh, hidden)
    work.from_source = {k for k, v in out.items() if v.dim() >= 2}
    if any(b > a for a, b in widths):
        work.steps.append(
            f"widened channels {cs['channels']} -> {ct['channels']}, hidden {cs['hidden']} -> {ct['hidden']} "
            "(Net2WiderNet: each new unit copies a seeded random existing one, consumers' weights divided by "
            "the copy counts)"
        )
    return out


_Check = Callable[..., None]  # (source, target, *, allow_shallower): raises for an unsupported pair
_Adapter = Callable[..., dict[str, torch.Tensor]]  # (family, sd, source, target, work, *, placement)
_ADAPTERS: dict[str, tuple[_Check, _Adapter]] = {  # family name -> its check and adapter
    "resnet": (_check_resnet, _adapt_resnet),  # CIFAR ResNets: widen and deepen
    "cnn": (_check_cnn, _adapt_cnn),  # zoo CNNs: widen only
}

__all__ = ["PAPER", "Adapted", "Placement", "adapt"]
