"""The architecture-family contract: what a plugin implements to teach zoo a new kind of network.

A family subclasses :class:`ArchitectureFamily`, sets :attr:`~ArchitectureFamily.name`, and implements four
methods: :meth:`~ArchitectureFamily.variants`, :meth:`~ArchitectureFamily.parse`,
:meth:`~ArchitectureFamily.describe` and :meth:`~ArchitectureFamily.build`. Everything else (detection from
a state dict, canonical state dicts, the layout of generated tensors, flattening, chunking and rebuilding)
has a working default built on those four, which a family overrides where it knows better.

Structure: :meth:`~ArchitectureFamily.descriptors` gives each generated tensor a :class:`SlotDescriptor`, its
place in the network in terms that carry over between architectures of a family (a role such as
``block.conv1.weight``, a stage, relative depths, fans), where the layout's index only says "tensor 17". The
default reads them from state-dict keys and shapes; a family overrides
:meth:`~ArchitectureFamily.compute_descriptors` where it knows its structure better.

Speed: a family's module is built once per spec on the ``meta`` device (no memory, no init) and cached as
a template; :meth:`~ArchitectureFamily.load` and :meth:`~ArchitectureFamily.rebuild` copy the template and
assign the given tensors to it, so loading costs about what ``load_state_dict`` costs and never runs the
random initialisation. See docs/writing-a-plugin.md.
"""

from __future__ import annotations

import copy as _copy
import functools
import itertools
import logging
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from zoo import chunking
from zoo.errors import ArchitectureMismatchError, ZooError
from zoo.records import ArchSpec

log = logging.getLogger(__name__)

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class TensorSlot:
    """One tensor of an architecture's state dict."""

    name: str  # state-dict key
    shape: tuple[int, ...]
    dtype: torch.dtype
    is_parameter: bool  # an nn.Parameter (True) or a buffer (False)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Layout:
    """Which tensors of an architecture the generator produces, in order, and how the rest are handled.

    ``generated`` lists the tensors a generator must produce, in generation order. ``fixed`` lists the
    tensors it does not produce; ``fixed_policy`` says in words where they come from when a module is
    rebuilt (e.g. "num_batches_tracked: zero", "base weights: the referenced base checkpoint").
    """

    arch: ArchSpec
    generated: tuple[TensorSlot, ...]
    fixed: tuple[TensorSlot, ...]
    fixed_policy: str

    @property
    def num_generated(self) -> int:
        """Number of scalar values the generator produces for this architecture."""
        return sum(s.numel for s in self.generated)

    @property
    def num_params(self) -> int:
        """Number of parameters (nn.Parameter elements) among the generated tensors."""
        return sum(s.numel for s in self.generated if s.is_parameter)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.generated)


@dataclass(frozen=True)
class SlotDescriptor:
    """Where one generated tensor sits in its network, in terms that carry over between architectures.

    A layout's index says only "the 17th tensor"; a descriptor says "the first conv weight of the first block
    of stage 2, a third of the way through the network". Slots that play the same part in two architectures
    of a family (``layer2.0.conv1.weight`` of a resnet8 and of a resnet20, at width 8 or 16) get the same
    ``role``, ``kind``, ``stage`` and ``depth_in_stage``, and nearby ``depth``; only ``shape`` and the fans
    change with width.

    Fields:

    - ``name``: the state-dict key (``"layer2.0.conv1.weight"``), the layout slot's name.
    - ``role``: what the tensor is, without indices: the module's role, a dot, then ``kind``
      (``"block.conv1.weight"``, ``"stem.bn.running_var"``, ``"classifier.bias"``). Built-in module roles:
      ``stem.conv``, ``stem.bn``, ``block.conv{1,2,3}``, ``block.bn{1,2,3}``, ``block.shortcut.conv``,
      ``block.shortcut.bn`` (resnet); ``features.conv``, ``head.fc`` (cnn); ``embed`` (class token, position
      embedding), ``embed.patch``, ``block.norm{1,2}``, ``block.attn.qkv``, ``block.attn.proj``,
      ``block.mlp.fc{1,2}``, ``head.norm`` (vit); ``classifier`` (the last linear layer, every family). A
      LoRA factor takes its adapted module's role (``block.attn.qkv.lora_A``). The default role is the key's
      module path with its indices removed (``layers.0.weight`` -> ``layers.weight``).
    - ``kind``: the key's last component: ``"weight"``, ``"bias"``, ``"running_mean"``, ``"running_var"``,
      ``"lora_A"``, ``"lora_B"``, ``"cls_token"``, ``"pos_embed"``, ...
    - ``stage``: 0 for the stem (tensors before the first stage: stem convolution, embeddings), 1 to
      ``num_stages`` for the stages, ``num_stages + 1`` for the head (tensors after the last stage: final
      norm, classifier). A network without stages is one stage: every tensor is stage 1 of 1.
      Non-decreasing in layout order.
    - ``num_stages``: how many stages the network has (at least 1): 3 for a CIFAR ResNet, 4 for an ImageNet
      ResNet, 1 for a ViT (its blocks) or a CNN (its convolutions).
    - ``depth_in_stage``: the position of the tensor's block among the blocks of its stage, in [0, 1]: block
      ``j`` of ``n`` is ``j / (n - 1)``, so the first block is 0.0 and the last 1.0; a stage of one block
      (the stem, the head, the single block of a resnet8's stage) is 0.0. Every tensor of a block shares it.
    - ``depth``: the position of the tensor's layer among the network's layers, in [0, 1]: layer ``i`` of
      ``L`` is ``i / (L - 1)`` (0.0 when ``L == 1``). In the built-in families a layer is a convolution or
      linear map (a patch embedding counts, the class token and position embedding sit with it at 0.0); a
      normalisation layer counts with the layer it normalises (a BatchNorm with the convolution before it, a
      pre-norm LayerNorm with the linear after it); a projection shortcut with its block's last convolution.
      The default counts every module that holds tensors as a layer. Non-decreasing in layout order.
    - ``shape``: the tensor's shape, the layout slot's.
    - ``fan_in``, ``fan_out``: the fans of the tensor's layer, in scalars, in torch's convention (what
      ``nn.init.kaiming_*`` uses): for a weight of 2 or more dims, ``fan_in = shape[1] * receptive field``
      and ``fan_out = shape[0] * receptive field`` (a conv weight (out, in, k, k): ``in * k * k``,
      ``out * k * k``; a linear weight (out, in): ``in``, ``out``). The other tensors of a module with such a
      weight (its bias) share the weight's fans; any other tensor uses its own shape: n features give
      (n, n), a scalar (1, 1).
    """

    name: str  # state-dict key, e.g. "layer2.0.conv1.weight"
    role: str  # module role + "." + kind, e.g. "block.conv1.weight"; the same across a family's architectures
    kind: str  # the key's last component: "weight", "bias", "running_mean", "running_var", "lora_A", ...
    stage: int  # 0 stem, 1..num_stages the stages, num_stages + 1 head
    num_stages: int  # stages of the network, at least 1
    depth_in_stage: float  # position of the tensor's block in its stage, in [0, 1] (0.0 for one block)
    depth: float  # position of the tensor's layer in the network, in [0, 1]
    shape: tuple[int, ...]  # the tensor's shape
    fan_in: int  # fan-in of the tensor's layer, in scalars (torch's convention)
    fan_out: int  # fan-out of the tensor's layer, in scalars (torch's convention)

    @property
    def module_role(self) -> str:
        """``role`` without its trailing ``.kind`` (``"block.conv1"``); empty for a top-level tensor."""
        suffix = "." + self.kind
        if self.role.endswith(suffix):
            return self.role[: -len(suffix)]
        return "" if self.role == self.kind else self.role

    @property
    def numel(self) -> int:
        """Number of scalar values of the tensor."""
        return math.prod(self.shape)


def _is_float(t: torch.Tensor) -> bool:
    return t.dtype.is_floating_point


class ArchitectureFamily(ABC):
    """Base class of an architecture-family plugin.

    Subclasses set :attr:`name` (the family's unique name) and implement :meth:`variants`, :meth:`parse`,
    :meth:`describe` and :meth:`build`. Instances must be cheap to create and stateless apart from caches.
    """

    name: ClassVar[str]  # unique family name, e.g. "resnet"
    summary: ClassVar[str] = ""  # one line for `zoo plugins`

    # -- what a family must implement ---------------------------------------------------------------
    @abstractmethod
    def variants(self) -> list[str]:
        """Names of the named architectures this family offers (each accepted by :meth:`parse`)."""

    @abstractmethod
    def parse(self, name: str, **overrides: Any) -> ArchSpec | None:
        """Turn a name (and optional settings such as ``num_classes``) into a spec, or None if not ours.

        Raise :class:`~zoo.errors.ZooError` for a name that is clearly ours but invalid (e.g. a ResNet depth
        that is not 6n+2), naming the fix.
        """

    @abstractmethod
    def describe(self, spec: ArchSpec) -> str:
        """Canonical text of the architecture: what the architecture text encoder reads."""

    @abstractmethod
    def build(self, spec: ArchSpec) -> nn.Module:
        """A freshly initialised module of this architecture (random init, never a download)."""

    def input_shape(self, spec: ArchSpec) -> tuple[int, ...] | None:
        """Shape of one input sample (e.g. ``(3, 32, 32)``), for scoring and smoke tests; None if not
        fixed."""
        return None

    def label(self, spec: ArchSpec) -> str:
        """A short name of ``spec`` for messages. Default: ``str(spec)``."""
        return str(spec)

    # -- recognition --------------------------------------------------------------------------------
    def candidates(self, state_dict: StateDict) -> list[ArchSpec]:
        """Specs worth trying when detecting a state dict's architecture. Default: none.

        Families override this to infer settings (depth, widths, classes) from keys and shapes cheaply;
        :meth:`detect` then keeps the first candidate whose expected shapes match exactly.
        """
        return []

    def detect(self, state_dict: StateDict) -> ArchSpec | None:
        """The spec whose state-dict layout matches ``state_dict`` exactly, or None.

        Wrapper prefixes (``module.``, ``_orig_mod.``) are ignored.
        """
        sd = strip_wrapper_prefixes(state_dict)
        for spec in self.candidates(sd):
            if spec is not None and self.mismatch(spec, sd) is None:
                return spec
        return None

    # -- state dicts --------------------------------------------------------------------------------
    def slots(self, spec: ArchSpec) -> tuple[TensorSlot, ...]:
        """Every tensor of the architecture's state dict, in module order (cached, built on 'meta')."""
        return _slots_cached(self, spec)

    def optional_keys(self, spec: ArchSpec) -> frozenset[str]:
        """State-dict keys a checkpoint may omit (filled by :meth:`canonicalize`). Default: BN counters."""
        return frozenset(s.name for s in self.slots(spec) if s.name.endswith("num_batches_tracked"))

    def ignored_keys(self, spec: ArchSpec, state_dict: StateDict) -> frozenset[str]:
        """Keys of ``state_dict`` that are not part of ``spec`` and silently dropped. Default: none.

        LoRA uses this to accept an adapted module's full state dict and keep only the adapters.
        """
        return frozenset()

    def mismatch(self, spec: ArchSpec, state_dict: StateDict) -> ArchitectureMismatchError | None:
        """Why ``state_dict`` does not fit ``spec`` (missing/unexpected keys, a wrong shape), or None."""
        state_dict = strip_wrapper_prefixes(state_dict)
        expected = {s.name: s for s in self.slots(spec)}
        optional = self.optional_keys(spec)
        ignored = self.ignored_keys(spec, state_dict)
        missing = [k for k in expected if k not in state_dict and k not in optional]
        unexpected = [k for k in state_dict if k not in expected and k not in ignored]
        if missing or unexpected:
            return ArchitectureMismatchError(self.label(spec), missing=missing, unexpected=unexpected)
        for key, tensor in state_dict.items():
            slot = expected.get(key)
            if slot is None:
                continue
            if tuple(tensor.shape) != slot.shape:
                return ArchitectureMismatchError(
                    self.label(spec), layer=key, expected=slot.shape, got=tuple(tensor.shape)
                )
            if tensor.dtype.is_floating_point != slot.dtype.is_floating_point:
                return ArchitectureMismatchError(
                    self.label(spec), detail=f"tensor {key!r} has dtype {tensor.dtype}, expected {slot.dtype}"
                )
        return None

    def canonicalize(self, spec: ArchSpec, state_dict: StateDict) -> dict[str, torch.Tensor]:
        """A complete state dict for ``spec`` in module order, contiguous, on CPU; raises on a mismatch.

        Wrapper prefixes are stripped, ignored keys dropped, and optional keys that are absent (e.g.
        ``num_batches_tracked``) filled with zeros. Tensors that are already contiguous CPU tensors are
        returned as they are (no copy); dtypes are kept (a float16 checkpoint stays float16).
        """
        state_dict = strip_wrapper_prefixes(state_dict)
        err = self.mismatch(spec, state_dict)
        if err is not None:
            raise err
        out: dict[str, torch.Tensor] = {}
        for slot in self.slots(spec):
            t = state_dict.get(slot.name)
            if t is None:
                t = torch.zeros(slot.shape, dtype=slot.dtype)
            out[slot.name] = t.detach().to("cpu").contiguous()
        return out

    def load(
        self, spec: ArchSpec, state_dict: StateDict, base: nn.Module | None = None, *, copy: bool = False
    ) -> nn.Module:
        """A module of ``spec`` (eval mode) holding exactly ``state_dict``; ``base``: for families needing
        one.

        Without ``copy`` the module takes the tensors as they are: its parameters share memory with
        ``state_dict`` (no copy, no random init: fast). Pass ``copy=True`` when the source tensors stay in
        use (e.g. another module's ``state_dict()``). Tensors in another dtype are cast to the module's.
        """
        state = self.canonicalize(spec, state_dict)
        slots = {s.name: s for s in self.slots(spec)}
        state = {k: (v if v.dtype == slots[k].dtype else v.to(slots[k].dtype)) for k, v in state.items()}
        return self._materialize(spec, state, copy=copy).eval()

    def _materialize(self, spec: ArchSpec, state: dict[str, torch.Tensor], *, copy: bool) -> nn.Module:
        """A module of ``spec`` holding ``state`` (complete, canonical, module dtypes)."""
        template = _template_cached(self, spec)
        if template is None:  # the slow path: a module that cannot live on 'meta'
            module = self.build(spec)
            module.load_state_dict(state, strict=True)
            return module
        if copy:
            state = {k: v.clone() for k, v in state.items()}
        if template.structural:
            module = _clone_assigned(template.module, state)
            if module is not None:
                return module
        module = _copy.deepcopy(template.module)
        module.load_state_dict(state, strict=True, assign=True)
        return module

    def requires_base(self, spec: ArchSpec) -> bool:
        """Whether weights of ``spec`` apply on top of a base checkpoint (e.g. LoRA). Default: False."""
        return False

    def base_spec(self, spec: ArchSpec) -> ArchSpec | None:
        """The architecture of the base that weights of ``spec`` apply to (when :meth:`requires_base`)."""
        return None

    def with_base(self, spec: ArchSpec, base: ArchSpec) -> ArchSpec:
        """``spec`` re-targeted at the exact architecture of a registered base. Default: ``spec``
        unchanged."""
        return spec

    # -- the generator's view -----------------------------------------------------------------------
    def layout(self, spec: ArchSpec) -> Layout:
        """Generated tensors in module order: every floating tensor (parameters and BN statistics).

        Integer buffers (``num_batches_tracked``) are fixed at zero.
        """
        slots = self.slots(spec)
        gen = tuple(s for s in slots if s.dtype.is_floating_point)
        fixed = tuple(s for s in slots if not s.dtype.is_floating_point)
        return Layout(spec, gen, fixed, "integer buffers (num_batches_tracked): zero")

    def descriptors(self, spec: ArchSpec) -> tuple[SlotDescriptor, ...]:
        """One :class:`SlotDescriptor` per tensor of ``self.layout(spec).generated``, in the same order.

        Cached per family and spec, and checked against the layout (names, shapes, ranges): a family
        changes them by overriding :meth:`compute_descriptors`, not this method.
        """
        return _descriptors_cached(self, spec)

    def compute_descriptors(self, spec: ArchSpec) -> tuple[SlotDescriptor, ...]:
        """The descriptors of ``spec``'s generated tensors (uncached; :meth:`descriptors` caches and checks).

        Default: :func:`default_descriptors` of the layout's generated slots, read from keys and shapes:
        stages from ``layer{N}`` / ``stages.{N}`` / ``blocks.{N}`` keys, else one stage. Override it where the
        family knows its structure better; take the default (``super().compute_descriptors(spec)``) and
        ``dataclasses.replace`` the fields you know (role, stage, depths), so names, shapes and fans stay
        right. Return one descriptor per generated slot, in layout order.
        """
        return default_descriptors(self.layout(spec).generated)

    def flatten(self, spec: ArchSpec, state_dict: StateDict) -> list[torch.Tensor]:
        """The layout's tensors of ``state_dict``, in layout order (views where possible, no copies)."""
        sd = self.canonicalize(spec, state_dict)
        return [sd[s.name] for s in self.layout(spec).generated]

    def unflatten(self, spec: ArchSpec, tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """A complete state dict from the layout's tensors (fixed tensors filled per the layout's policy).

        A tensor may come flat (or in any shape) as long as its number of elements fits its slot.
        """
        lay = self.layout(spec)
        if len(tensors) != len(lay.generated):
            raise ArchitectureMismatchError(
                self.label(spec),
                detail=f"expected {len(lay.generated)} generated tensors, got {len(tensors)}",
            )
        out: dict[str, torch.Tensor] = {}
        for slot, t in zip(lay.generated, tensors):
            if tuple(t.shape) != slot.shape:
                if t.numel() != slot.numel:
                    raise ArchitectureMismatchError(
                        self.label(spec), layer=slot.name, expected=slot.shape, got=t.shape
                    )
                t = t.reshape(slot.shape)
            out[slot.name] = t.to(slot.dtype)
        for slot in lay.fixed:
            out[slot.name] = torch.zeros(slot.shape, dtype=slot.dtype)
        return {s.name: out[s.name] for s in self.slots(spec) if s.name in out}

    def rebuild(
        self, spec: ArchSpec, tensors: Sequence[torch.Tensor], base: nn.Module | None = None
    ) -> nn.Module:
        """A module from the layout's tensors: the inverse of :meth:`flatten`, bitwise exact.

        The module takes the tensors as they are (no copy), like :meth:`load`.
        """
        return self.load(spec, self.unflatten(spec, tensors), base=base)

    def chunk(
        self, spec: ArchSpec, tensors: Sequence[torch.Tensor], k: int, *, normalize: bool = True
    ) -> chunking.Chunks:
        """The layout's tensors cut into chunks of ``k`` values for the generator (default chunker).

        Override to chunk differently (e.g. per output channel); :meth:`unchunk` must invert it.
        """
        lay = self.layout(spec)
        if len(tensors) != len(lay.generated):
            raise ArchitectureMismatchError(
                self.label(spec),
                detail=f"expected {len(lay.generated)} generated tensors, got {len(tensors)}",
            )
        return chunking.chunk(tensors, k, normalize=normalize)

    def unchunk(self, spec: ArchSpec, chunks: chunking.Chunks) -> list[torch.Tensor]:
        """The layout's tensors back from :meth:`chunk`'s output (exact up to float32 normalisation)."""
        want = tuple(s.shape for s in self.layout(spec).generated)
        if tuple(chunks.shapes) != want:
            raise ArchitectureMismatchError(
                self.label(spec), detail=f"the chunks' {len(chunks.shapes)} layers do not match its layout"
            )
        return chunking.unchunk(chunks)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


_REGISTRIES = ("_parameters", "_buffers", "_modules")  # nn.Module's own tensor and submodule tables
_STATE_DICT_HOOKS = (
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)  # hooks that may rename or transform state-dict entries


@dataclass(frozen=True)
class _Template:
    """A family's module for one spec, built on 'meta' (no memory, no init), to copy when loading."""

    module: nn.Module
    structural: bool  # safe to copy structurally (:func:`_clone_assigned`); else deepcopy + load_state_dict


@functools.lru_cache(maxsize=64)
def _template_cached(family: ArchitectureFamily, spec: ArchSpec) -> _Template | None:
    """The family's module for ``spec`` built on 'meta', or None when loading must build it for real.

    None when the build fails on 'meta' (values computed at construction), or when the module holds
    tensors its state dict does not cover (non-persistent buffers, plain tensor attributes): those would
    stay on 'meta' after the state dict is assigned.
    """
    try:
        with torch.device("meta"):
            module = family.build(spec)
    except Exception as exc:  # a module that computes values at construction cannot be built on 'meta'
        log.debug("%s: cannot build %s on 'meta' (%s); loading builds it on CPU", family.name, spec, exc)
        return None
    covered = {id(t) for t in module.state_dict(keep_vars=True).values()}
    tensors = list(itertools.chain(module.parameters(), module.buffers()))
    plain = [
        k
        for m in module.modules()
        for k, v in vars(m).items()
        if k not in _REGISTRIES and isinstance(v, torch.Tensor)
    ]
    if any(id(t) not in covered or not t.is_meta for t in tensors) or plain:
        log.debug("%s: %s has tensors outside its state dict; loading builds it on CPU", family.name, spec)
        return None
    return _Template(module, all(_structural_ok(m) for m in module.modules()))


def _structural_ok(module: nn.Module) -> bool:
    """Whether a new module with ``module``'s attributes and directly assigned tensors is a faithful copy."""
    cls = type(module)
    custom_load = cls._load_from_state_dict is not nn.Module._load_from_state_dict
    if custom_load and not cls.__module__.startswith("torch.nn."):
        return False  # custom loading logic must run: go through load_state_dict
    for key, value in vars(module).items():
        if key in _STATE_DICT_HOOKS and value:
            return False
        if key not in _REGISTRIES and isinstance(value, nn.Module):
            return False  # a module referenced outside _modules: deepcopy keeps such links right
    return True


def _clone_assigned(template: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module | None:
    """A new module shaped like ``template`` whose parameters and buffers are ``state``'s tensors (no copy).

    What ``deepcopy(template).load_state_dict(state, assign=True)`` gives, without copying meta tensors
    or walking the state dict twice: new module objects, attributes copied one level deep (hook tables,
    lists), shared parameters kept shared. None when ``state``'s keys are not exactly the template's.
    """
    modules: dict[int, nn.Module] = {}
    params: dict[int, nn.Parameter] = {}
    used: set[str] = set()

    def clone(mod: nn.Module, prefix: str) -> nn.Module:
        if id(mod) in modules:
            return modules[id(mod)]
        new = object.__new__(type(mod))
        modules[id(mod)] = new
        attrs = {
            k: (_copy.copy(v) if isinstance(v, (dict, list, set)) else v)
            for k, v in vars(mod).items()
            if k not in _REGISTRIES
        }
        attrs["_parameters"] = {}
        for name, p in mod._parameters.items():
            if p is not None:
                used.add(prefix + name)
                if id(p) not in params:
                    params[id(p)] = nn.Parameter(state[prefix + name], requires_grad=p.requires_grad)
                p = params[id(p)]
            attrs["_parameters"][name] = p
        attrs["_buffers"] = {}
        for name, b in mod._buffers.items():
            if b is not None:
                used.add(prefix + name)
                b = state[prefix + name]
            attrs["_buffers"][name] = b
        attrs["_modules"] = {
            n: (clone(c, f"{prefix}{n}.") if c is not None else None) for n, c in mod._modules.items()
        }
        new.__dict__.update(attrs)
        return new

    try:
        module = clone(template, "")
    except KeyError:
        return None
    return module if used == set(state) else None


@functools.lru_cache(maxsize=256)
def _slots_cached(family: ArchitectureFamily, spec: ArchSpec) -> tuple[TensorSlot, ...]:
    template = _template_cached(family, spec)
    module = template.module if template is not None else family.build(spec)
    params = {n for n, _ in module.named_parameters()}
    return tuple(
        TensorSlot(name, tuple(t.shape), t.dtype, name in params) for name, t in module.state_dict().items()
    )


# -- slot descriptors -----------------------------------------------------------------------------------
_LAYER_STAGE = re.compile(r"layer(\d+)")  # a ResNet-style stage component: layer1, layer2, ...


def _stage_key(parts: Sequence[str]) -> tuple[tuple[str, int] | None, str | None]:
    """The stage a key's module path names, and its block within the stage: ``(stage key, block)``.

    ``layer{N}`` and ``stages.{N}`` name stage N, their next index component (``layer1.0``,
    ``stages.0.blocks.1``) the block; ``blocks.{N}`` alone is block N of the network's single stage. None
    where the path names no stage, or no block.
    """
    for i, part in enumerate(parts):
        m = _LAYER_STAGE.fullmatch(part)
        if m:
            stage, rest = ("layer", int(m[1])), parts[i + 1 :]
        elif part == "stages" and i + 1 < len(parts) and parts[i + 1].isdigit():
            stage, rest = ("stages", int(parts[i + 1])), parts[i + 2 :]
        elif part == "blocks" and i + 1 < len(parts) and parts[i + 1].isdigit():
            return ("blocks", 0), parts[i + 1]
        else:
            continue
        return stage, next((p for p in rest if p.isdigit()), None)
    return None, None


def _default_role(parts: Sequence[str], kind: str) -> str:
    """The module path without indices (``layer2.0.conv1`` -> ``layer.conv1``), then ``kind``."""
    kept = [_LAYER_STAGE.sub("layer", p) for p in parts if not p.isdigit()]
    return ".".join([*kept, kind])


def _own_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a tensor of ``shape`` in torch's convention; (n, n) if 1-D, (1, 1) if 0-D."""
    if len(shape) >= 2:
        field = math.prod(shape[2:])  # receptive field: kernel elements of a conv, 1 for a linear
        return shape[1] * field, shape[0] * field
    if len(shape) == 1:
        return shape[0], shape[0]
    return 1, 1


def _ranks(keys: Sequence[Any]) -> list[float]:
    """Each key's position among the distinct keys in order of first appearance, in [0, 1]."""
    order: dict[Any, int] = {}
    for k in keys:
        order.setdefault(k, len(order))
    last = max(len(order) - 1, 1)
    return [order[k] / last for k in keys]


def default_descriptors(slots: Sequence[TensorSlot]) -> tuple[SlotDescriptor, ...]:
    """Descriptors read from names and shapes alone: what a family gets unless it overrides them.

    - ``kind``: the key's last component; ``role``: the module path with index components removed (and
      ``layer{N}`` written ``layer``), then the kind.
    - Stages: ``layer{N}`` and ``stages.{N}`` components name stages (numbered 1.. in order of appearance),
      ``blocks.{N}`` a single stage of blocks. Tensors before the first stage are the stem (stage 0), those
      after the last the head (``num_stages + 1``), those between two stages belong to the one before.
      Without such keys the network is one stage (every tensor stage 1 of 1).
    - ``depth_in_stage``: the block's position in its stage (the index after the stage component; a tensor
      without one is a block of its own module); 0.0 for the stem and head.
    - ``depth``: the module's position among the modules holding generated tensors.
    - fans: of the module's weight of 2 or more dims where it has one, else of the tensor's own shape.
    """
    modules: list[str] = []
    kinds: list[str] = []
    roles: list[str] = []
    stage_keys: list[tuple[str, int] | None] = []
    blocks: list[str | None] = []
    for slot in slots:
        module, _, kind = slot.name.rpartition(".")
        parts = module.split(".") if module else []
        stage_key, block = _stage_key(parts)
        modules.append(module)
        kinds.append(kind)
        roles.append(_default_role(parts, kind))
        stage_keys.append(stage_key)
        blocks.append(block)

    numbered: dict[tuple[str, int], int] = {}
    for key in stage_keys:
        if key is not None:
            numbered.setdefault(key, len(numbered) + 1)
    stages: list[int] = []
    units: list[Any] = []  # what depth_in_stage ranks within each stage
    if not numbered:  # no stage structure: one stage whose blocks are the modules
        num_stages = 1
        stages = [1] * len(slots)
        units = list(modules)
    else:
        num_stages = len(numbered)
        current = 0  # the stem until the first stage
        last_staged = max(i for i, k in enumerate(stage_keys) if k is not None)
        for i, (key, block, module) in enumerate(zip(stage_keys, blocks, modules)):
            if key is not None:
                current = numbered[key]
                units.append(("block", block) if block is not None else ("module", module))
            elif current == 0 or i > last_staged:
                units.append(None)  # the stem and the head are one block each
            else:
                units.append(("module", module))  # between two stages: a block of the stage before
            stages.append(num_stages + 1 if i > last_staged else current)

    in_stage = [0.0] * len(slots)
    for s in set(stages):
        idx = [i for i, st in enumerate(stages) if st == s]
        for i, r in zip(idx, _ranks([units[i] for i in idx])):
            in_stage[i] = r

    weights = {m: slot.shape for m, k, slot in zip(modules, kinds, slots) if k == "weight"}
    out: list[SlotDescriptor] = []
    for i, (slot, depth) in enumerate(zip(slots, _ranks(modules))):
        layer_weight = weights.get(modules[i])
        fans = _own_fans(layer_weight if layer_weight and len(layer_weight) >= 2 else slot.shape)
        out.append(
            SlotDescriptor(
                name=slot.name,
                role=roles[i],
                kind=kinds[i],
                stage=stages[i],
                num_stages=num_stages,
                depth_in_stage=in_stage[i],
                depth=depth,
                shape=slot.shape,
                fan_in=fans[0],
                fan_out=fans[1],
            )
        )
    return tuple(out)


def _descriptor_problem(desc: SlotDescriptor, slot: TensorSlot) -> str | None:
    """What is wrong with ``desc`` as the descriptor of ``slot``, or None."""
    if desc.name != slot.name or tuple(desc.shape) != slot.shape:
        return f"descriptor {desc.name!r} {desc.shape} stands where the layout has {slot.name!r} {slot.shape}"
    if not desc.role or not desc.kind:
        return f"{slot.name!r} has an empty role or kind"
    if desc.num_stages < 1 or not 0 <= desc.stage <= desc.num_stages + 1:
        return f"{slot.name!r} is stage {desc.stage} of {desc.num_stages}; stages run 0..num_stages + 1"
    if not (0.0 <= desc.depth <= 1.0 and 0.0 <= desc.depth_in_stage <= 1.0):
        where = f"depth {desc.depth}, depth_in_stage {desc.depth_in_stage}"
        return f"{slot.name!r} has {where}; both lie in [0, 1]"
    return None


@functools.lru_cache(maxsize=256)
def _descriptors_cached(family: ArchitectureFamily, spec: ArchSpec) -> tuple[SlotDescriptor, ...]:
    slots = family.layout(spec).generated
    descs = tuple(family.compute_descriptors(spec))
    problems = [] if len(descs) == len(slots) else [f"{len(descs)} descriptors for {len(slots)} slots"]
    problems += [p for d, s in zip(descs, slots) if (p := _descriptor_problem(d, s)) is not None]
    if problems:
        raise ZooError(
            f"family {family.name!r}: compute_descriptors({family.label(spec)}) is wrong: {problems[0]}; "
            "it must return one SlotDescriptor per slot of layout(spec).generated, in order"
        )
    return descs


_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(state_dict: StateDict) -> dict[str, torch.Tensor]:
    """Remove ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes when all keys carry
    them."""
    sd = dict(state_dict)
    changed = True
    while changed and sd:
        changed = False
        for p in _PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p) :]: v for k, v in sd.items()}
                changed = True
    return sd


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``resnet20`` before ``resnet110``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
