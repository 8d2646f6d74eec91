"""The ``lora`` family: LoRA adapters (Hu et al. 2021) on a base network, by default a timm ViT.

An adapter replaces each target ``nn.Linear`` (``y = W x + b``) of the base by a :class:`LoRALinear`
computing ``y = W x + b + (alpha / rank) * B (A x)`` with ``A`` of shape (rank, in) and ``B`` of shape
(out, rank). ``W`` and ``b`` stay the base's own (frozen) parameters under their own keys, so an adapted
module's state dict is the base's plus ``<module>.lora_A`` / ``<module>.lora_B`` per target.

Spec: ``lora-<base name>`` (``lora-vit_base_patch16_224``) or ``lora`` with ``base=`` (a spec, its JSON or
a name), and settings ``rank`` (8), ``alpha`` (default: the rank, scaling 1), ``targets`` (module-name
suffixes or globs; default ``["attn.proj", "attn.qkv"]``); any other setting goes to the base
(``num_classes=10``). The config holds the base spec as JSON (``base``), so the adapter's layout is known
without the base weights.

Layout: only the adapters, ``lora_A`` then ``lora_B`` per target module, in module order. The base is never
generated and never stored with the adapter: it is referenced (``Registry.add(adapter, base="vit-b@best")``)
and :meth:`LoRAFamily.load` / :meth:`~LoRAFamily.rebuild` apply the adapters onto the base module they are
given (``Registry.load`` passes the loaded base). That base module is modified in place: its target layers
are wrapped and its own parameters frozen (``requires_grad=False``); only the adapters train. :func:`merge`
folds the adapters into plain ``nn.Linear`` layers (``W + (alpha / rank) B A``), giving a plain base
architecture with the same outputs.

Detection: an adapter-only state dict shows the rank, the targets and the base's width and depth, not the
base's patch size, image size or classes, nor alpha; it is taken as the timm ViT of that width and depth at
its defaults, with alpha equal to the rank. Pass ``arch=`` when that is not what you have. A full adapted
state dict (base and adapters) is recognised exactly: its base part is detected by the other families.

Descriptors (:meth:`LoRAFamily.compute_descriptors`): a factor takes the place of the module it adapts, read
from the base family's descriptors of that module's weight: its module role, stage, stage count and depths
(``blocks.3.attn.qkv.lora_A`` is ``block.attn.qkv.lora_A`` at the stage and depths of
``blocks.3.attn.qkv.weight``); kind ``lora_A`` or ``lora_B``; fans of the factor's own shape (A: ``in`` ->
``rank``, B: ``rank`` -> ``out``).
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import fnmatch
import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo import ArchitectureFamily, ArchSpec, Layout, SlotDescriptor, TensorSlot, hookimpl
from zoo.errors import ArchitectureMismatchError, UnknownFamilyError, ZooError

DEFAULT_RANK = 8  # rank of A and B
DEFAULT_TARGETS = ("attn.proj", "attn.qkv")  # module-name suffixes (or globs) of the linears to adapt
BASE_VARIANTS = ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224")  # listed variants
SETTINGS = ("base", "rank", "alpha", "targets")  # LoRA's own settings; every other setting goes to the base
ADAPTER_SUFFIXES = (".lora_A", ".lora_B")
_BLOCK = re.compile(r"^blocks\.\d+\.")


class LoRALinear(nn.Module):
    """A linear layer plus a low-rank update: ``F.linear(x, W, b) + scaling * B(A(x))``.

    ``weight`` and ``bias`` are the wrapped layer's own parameters (shared, not copied).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.weight = base.weight  # (out, in), the base's parameter
        self.bias = base.bias  # (out,) or None
        w = base.weight
        kw = {"dtype": w.dtype, "device": w.device}
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **kw))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **kw))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # B = 0: a fresh adapter computes the base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)  # (..., out)
        return out + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling  # (..., out)

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the update folded in: ``W + scaling * B A``."""
        lin = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            lin.weight.copy_(self.weight + (self.lora_B @ self.lora_A) * self.scaling)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"alpha={self.alpha}"
        )


def matches(module_name: str, targets: Sequence[str]) -> bool:
    """Whether ``module_name`` is one of ``targets`` (an exact name, a dotted suffix or a glob)."""
    return any(
        module_name == t or module_name.endswith("." + t) or fnmatch.fnmatchcase(module_name, t)
        for t in targets
    )


def target_linears(module: nn.Module, targets: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every linear (or already adapted) layer of ``module`` that ``targets`` select."""
    return [
        (n, m)
        for n, m in module.named_modules()
        if n and isinstance(m, (nn.Linear, LoRALinear)) and matches(n, targets)
    ]


def apply_lora(module: nn.Module, rank: int, alpha: float, targets: Sequence[str]) -> nn.Module:
    """Wrap ``module``'s target linears in :class:`LoRALinear` (in place) and freeze everything else.

    Returns ``module``. Raises if no layer matches or the module already carries adapters.
    """
    found = target_linears(module, targets)
    if not found:
        linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)][:6]
        raise ZooError(
            f"no nn.Linear layer matches LoRA targets {list(targets)}; linear layers are named like "
            f"{linears}; pass targets= with names or suffixes of those"
        )
    if any(isinstance(m, LoRALinear) for _, m in found):
        raise ZooError(
            "the base module already carries LoRA adapters; merge() them or pass a fresh base module"
        )
    for p in module.parameters():
        p.requires_grad_(False)
    for name, layer in found:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, LoRALinear(layer, rank, alpha))  # type: ignore[arg-type]
    return module


def merge(module: nn.Module, *, inplace: bool = False) -> nn.Module:
    """The module with every :class:`LoRALinear` folded into a plain ``nn.Linear``: the base architecture.

    Its forward equals the adapted module's (up to float rounding). Parameters become trainable again.
    """
    out = module if inplace else _copy.deepcopy(module)
    for name, layer in [(n, m) for n, m in out.named_modules() if isinstance(m, LoRALinear)]:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, layer.merged())
    for p in out.parameters():
        p.requires_grad_(True)
    return out


def lora_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters of an adapted module: what is stored and generated."""
    return {k: v for k, v in module.state_dict().items() if k.endswith(ADAPTER_SUFFIXES)}


@functools.lru_cache(maxsize=64)
def _targets_of(base: ArchSpec, targets: tuple[str, ...]) -> tuple[tuple[str, int, int, torch.dtype], ...]:
    """``(module name, in, out, dtype)`` of each target linear of the base architecture (built on 'meta')."""
    from zoo import get_family

    with torch.device("meta"):
        module = get_family(base.family).build(base)
    found = target_linears(module, targets)
    if not found:
        linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)][:6]
        raise ZooError(
            f"no nn.Linear layer of {base} matches LoRA targets {list(targets)}; its linear layers are "
            f"named like {linears}; pass targets= with names or suffixes of those"
        )
    return tuple((n, m.in_features, m.out_features, m.weight.dtype) for n, m in found)


class LoRAFamily(ArchitectureFamily):
    """LoRA adapters (rank, alpha, target modules) on a base architecture of another family."""

    name = "lora"
    summary = "LoRA adapters on a ViT (or any) base; only the adapters are stored and generated"

    def variants(self) -> list[str]:
        return [f"lora-{b}" for b in BASE_VARIANTS]

    # -- specs ----------------------------------------------------------------------------------------
    def parse(self, name: str, **overrides: Any) -> ArchSpec | None:
        from zoo import resolve_arch

        key = name.strip()
        if key.lower() == "lora":
            base_ref = overrides.pop("base", None)
            if base_ref is None:
                raise ZooError(
                    "a LoRA spec needs its base: pass base= (a spec, its JSON or a name such as "
                    "'vit_base_patch16_224'), or name it 'lora-vit_base_patch16_224'"
                )
        elif key.lower().startswith(("lora-", "lora_")):
            base_ref = overrides.pop("base", None) or key[5:]
        else:
            return None
        rank = overrides.pop("rank", DEFAULT_RANK)
        alpha = overrides.pop("alpha", None)
        targets = overrides.pop("targets", DEFAULT_TARGETS)
        if isinstance(base_ref, str) and base_ref.strip().startswith("{"):
            base_ref = ArchSpec.from_json(base_ref)
        base = resolve_arch(base_ref, **overrides)  # leftover settings are the base's
        if get_family_of(base).requires_base(base):
            raise ZooError(f"LoRA base {base} itself needs a base; adapt a plain architecture")
        if isinstance(rank, bool) or int(rank) != rank or int(rank) < 1:
            raise ZooError(f"LoRA rank must be a positive integer, got {rank!r}")
        rank = int(rank)
        alpha = float(rank if alpha is None else alpha)
        if not alpha > 0:
            raise ZooError(f"LoRA alpha must be positive, got {alpha!r}")
        if isinstance(targets, str):
            targets = [targets]
        targets = sorted({str(t) for t in targets})
        if not targets:
            raise ZooError("LoRA targets must name at least one linear layer (e.g. 'attn.qkv')")
        _targets_of(base, tuple(targets))  # raises when nothing matches
        cfg = {"base": base.to_json(), "rank": rank, "alpha": alpha, "targets": targets}
        return ArchSpec(self.name, f"lora-{base.name}", cfg)

    def label(self, spec: ArchSpec) -> str:
        c = spec.config
        return f"{spec.name}(rank={c['rank']}, alpha={c['alpha']:g}, targets={','.join(c['targets'])})"

    def base_spec(self, spec: ArchSpec) -> ArchSpec:
        return ArchSpec.from_json(spec.config["base"])

    def requires_base(self, spec: ArchSpec) -> bool:
        return True

    def input_shape(self, spec: ArchSpec) -> tuple[int, ...] | None:
        base = self.base_spec(spec)
        return get_family_of(base).input_shape(base)

    def with_base(self, spec: ArchSpec, base: ArchSpec) -> ArchSpec:
        """The same adapter settings on another base spec (e.g. the registered base's exact architecture)."""
        c = spec.config
        out = self.parse("lora", base=base, rank=c["rank"], alpha=c["alpha"], targets=list(c["targets"]))
        assert out is not None, "parse('lora', ...) always returns a spec or raises"
        return out

    def _targets(self, spec: ArchSpec) -> tuple[tuple[str, int, int, torch.dtype], ...]:
        return _targets_of(self.base_spec(spec), tuple(spec.config["targets"]))

    def describe(self, spec: ArchSpec) -> str:
        c = spec.config
        base = self.base_spec(spec)
        found = self._targets(spec)
        return (
            f"LoRA adapters of rank {c['rank']} (alpha {c['alpha']:g}, "
            f"scaling {c['alpha'] / c['rank']:g}) on "
            f"{len(found)} linear layers matching {', '.join(c['targets'])}, "
            f"{self.layout(spec).num_params} adapter parameters, applied to the base network: "
            f"{get_family_of(base).describe(base)}"
        )

    def build(self, spec: ArchSpec) -> nn.Module:
        """A fresh base (random init) with fresh adapters (B = 0, so it computes exactly the base)."""
        base = self.base_spec(spec)
        return apply_lora(
            get_family_of(base).build(base), spec.config["rank"], spec.config["alpha"], spec.config["targets"]
        )

    def merge(self, module: nn.Module, *, inplace: bool = False) -> nn.Module:
        """:func:`merge`: the adapted module as a plain base architecture (adapters folded in)."""
        return merge(module, inplace=inplace)

    # -- state dicts ----------------------------------------------------------------------------------
    def slots(self, spec: ArchSpec) -> tuple[TensorSlot, ...]:
        """The adapters only: ``<module>.lora_A`` (rank, in) and ``<module>.lora_B`` (out, rank) per
        target."""
        r = spec.config["rank"]
        out: list[TensorSlot] = []
        for name, fan_in, fan_out, dtype in self._targets(spec):
            out.append(TensorSlot(f"{name}.lora_A", (r, fan_in), dtype, True))
            out.append(TensorSlot(f"{name}.lora_B", (fan_out, r), dtype, True))
        return tuple(out)

    def optional_keys(self, spec: ArchSpec) -> frozenset[str]:
        return frozenset()

    def compute_descriptors(self, spec: ArchSpec) -> tuple[SlotDescriptor, ...]:
        """The ``SlotDescriptor`` of each adapter factor: the adapted module's role, stage and depths."""
        base = self.base_spec(spec)
        adapted = {d.name: d for d in get_family_of(base).descriptors(base)}
        out = []
        for d in super().compute_descriptors(spec):
            module = d.name.rpartition(".")[0]
            weight = adapted.get(f"{module}.weight")
            if weight is None:  # every target is a linear layer of the base: it has a generated weight
                out.append(d)
                continue
            out.append(
                dataclasses.replace(
                    d,
                    role=f"{weight.module_role}.{d.kind}",
                    stage=weight.stage,
                    num_stages=weight.num_stages,
                    depth_in_stage=weight.depth_in_stage,
                    depth=weight.depth,
                )
            )
        return tuple(out)

    def ignored_keys(self, spec: ArchSpec, state_dict: Mapping[str, torch.Tensor]) -> frozenset[str]:
        """Base weights in a full adapted state dict: dropped, never stored with the adapter."""
        return frozenset(k for k in state_dict if not k.endswith(ADAPTER_SUFFIXES))

    def layout(self, spec: ArchSpec) -> Layout:
        return Layout(
            spec,
            self.slots(spec),
            (),
            "base weights: neither generated nor stored; they come from the base checkpoint "
            "(Registry.add(..., base=)), onto which rebuild/load apply the adapters",
        )

    def load(
        self,
        spec: ArchSpec,
        state_dict: Mapping[str, torch.Tensor],
        base: nn.Module | None = None,
        *,
        copy: bool = False,
    ) -> nn.Module:
        """``base`` with the adapters of ``state_dict`` applied (in place; eval mode).

        ``base`` is a module of :meth:`base_spec`'s architecture (``Registry.load`` passes the registered
        base). Without ``copy`` the adapters take the given tensors as they are.
        """
        if base is None:
            raise ZooError(
                f"{spec.name} is a LoRA adapter and needs its base module: pass base= (a module of "
                f"{self.base_spec(spec)}); Registry.load passes the registered base"
            )
        state = self.canonicalize(spec, state_dict)
        layers = dict(target_linears(base, spec.config["targets"]))
        for name, fan_in, fan_out, _ in self._targets(spec):
            layer = layers.get(name)
            if layer is None:
                raise ArchitectureMismatchError(
                    self.base_spec(spec).name,
                    missing=[f"{name}.weight"],
                    detail="the base module lacks a layer the adapter targets",
                )
            if isinstance(layer, LoRALinear):
                raise ZooError(
                    "the base module already carries LoRA adapters; merge() them or pass a fresh base"
                )
            if (layer.out_features, layer.in_features) != (fan_out, fan_in):
                raise ArchitectureMismatchError(
                    self.base_spec(spec).name,
                    layer=f"{name}.weight",
                    expected=(fan_out, fan_in),
                    got=(layer.out_features, layer.in_features),
                )
        apply_lora(base, spec.config["rank"], spec.config["alpha"], spec.config["targets"])
        for key, tensor in state.items():
            owner, _, attr = key.rpartition(".")
            layer = base.get_submodule(owner)
            param = getattr(layer, attr)
            value = tensor.to(device=param.device, dtype=param.dtype)
            if copy and value.data_ptr() == tensor.data_ptr():
                value = value.clone()
            setattr(layer, attr, nn.Parameter(value, requires_grad=True))
        return base.eval()

    # -- recognition ----------------------------------------------------------------------------------
    def candidates(self, state_dict: Mapping[str, torch.Tensor]) -> list[ArchSpec]:
        adapters = {k: v for k, v in state_dict.items() if k.endswith(ADAPTER_SUFFIXES)}
        if not adapters:
            return []
        rest = {k: v for k, v in state_dict.items() if k not in adapters}
        first_a = next((v for k, v in adapters.items() if k.endswith(".lora_A")), None)
        if first_a is None or first_a.dim() != 2:
            return []
        rank = int(first_a.shape[0])
        modules = sorted({k.rsplit(".", 1)[0] for k in adapters})
        targets = _targets_from_modules(modules)
        try:
            base = _detect_base(rest, adapters, modules)
        except (UnknownFamilyError, ZooError):
            return []
        if base is None:
            return []
        try:
            spec = self.parse("lora", base=base, rank=rank, targets=targets)
        except ZooError:
            return []
        return [spec] if spec is not None else []


def _targets_from_modules(modules: list[str]) -> list[str]:
    """Targets that select exactly ``modules``: per-block suffixes when every block is adapted alike."""
    suffixes = sorted({_BLOCK.sub("", m) for m in modules})
    blocks = {m.split(".")[1] for m in modules if _BLOCK.match(m)}
    if blocks and all(_BLOCK.match(m) for m in modules):
        depth = 1 + max(int(b) for b in blocks)
        if len(modules) == depth * len(suffixes):
            return suffixes
    return modules


def _detect_base(
    rest: Mapping[str, torch.Tensor], adapters: Mapping[str, torch.Tensor], modules: list[str]
) -> ArchSpec | None:
    """The base architecture: detected from base weights when present, else a default ViT of that width."""
    from zoo import detect_arch, resolve_arch

    if rest:
        return detect_arch(rest)
    if not all(_BLOCK.match(m) for m in modules):
        return None
    depth = 1 + max(int(m.split(".")[1]) for m in modules)
    width = None
    for m in modules:
        if m.endswith(("attn.qkv", "attn.proj", "mlp.fc1")):
            width = int(adapters[f"{m}.lora_A"].shape[1])
            break
    from zoo_families.vit import SIZES  # the built-in ViT family's size table

    size = next((n for n, s in SIZES.items() if s.embed_dim == width), None)
    if size is None:
        return None
    return resolve_arch(f"vit_{size}_patch16_224", family="vit", depth=depth)


def get_family_of(spec: ArchSpec) -> ArchitectureFamily:
    from zoo import get_family

    return get_family(spec.family)


@hookimpl
def zoo_register_families(register) -> None:  # type: ignore[no-untyped-def]
    register(LoRAFamily())
