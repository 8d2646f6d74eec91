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
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from zoo import chunking
from zoo.descriptors import SlotDescriptor, default_descriptors, descriptor_problem
from zoo.errors import ArchitectureMismatchError, ZooError
from zoo.records import ArchSpec
from zoo.slots import Layout, TensorSlot

if TYPE_CHECKING:  # typing only: zoo.alignment imports the plugin machinery, which imports this module
    from zoo.alignment import PermutationSpec

log = logging.getLogger(__name__)

StateDict = Mapping[str, torch.Tensor]


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

    def permutation_spec(self, spec: ArchSpec) -> PermutationSpec | None:
        """The permutation symmetries of ``spec``: which state-dict tensor axes each reordering of hidden
        units acts on, such that applying it to all of them leaves the function unchanged (what
        :func:`zoo.align` matches checkpoints on). Default: None, no symmetry declared (alignment refuses).
        """
        return None

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
    if template is not None:
        module = template.module
    else:
        try:
            module = family.build(spec)
        except KeyError as exc:  # a spec (e.g. hand-written JSON) without a setting the family builds from
            raise ZooError(
                f"architecture {spec.name!r} of family {spec.family}: its config lacks the key {exc} that "
                f"the family builds from; give the whole config (as ArchSpec.to_json() writes it for a known "
                f"{spec.family} architecture) or a known architecture's name"
            ) from None
    params = {n for n, _ in module.named_parameters()}
    return tuple(
        TensorSlot(name, tuple(t.shape), t.dtype, name in params) for name, t in module.state_dict().items()
    )


@functools.lru_cache(maxsize=256)
def _descriptors_cached(family: ArchitectureFamily, spec: ArchSpec) -> tuple[SlotDescriptor, ...]:
    slots = family.layout(spec).generated
    descs = tuple(family.compute_descriptors(spec))
    problems = [] if len(descs) == len(slots) else [f"{len(descs)} descriptors for {len(slots)} slots"]
    problems += [p for d, s in zip(descs, slots) if (p := descriptor_problem(d, s)) is not None]
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
