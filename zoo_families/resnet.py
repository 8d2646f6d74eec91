"""The ``resnet`` family: CIFAR ResNets of depth 6n+2 and ImageNet ResNet-18/34/50/101/152.

CIFAR ResNets (He et al. 2016, section 4.2; ``style: "cifar"``): a 3x3 conv with ``width`` channels, BN, ReLU;
three stages of n BasicBlocks with width, 2*width and 4*width channels (stride 2 at the start of stages 2 and
3); option-A shortcuts (parameter-free: subsample by stride 2 and zero-pad the new channels); global average
pooling; a linear classifier. State-dict keys match the widely used CIFAR ResNet checkpoints (``conv1``,
``bn1``, ``layer{1,2,3}.{i}.conv{1,2}``, ``linear``), which load as they are, ``module.`` prefixes and missing
``num_batches_tracked`` included.

ImageNet ResNets (``style: "imagenet"``): torchvision's ``resnet18/34/50/101/152`` (random init, never a
download), with ``num_classes`` and ``in_chans`` configurable; keys ``conv1``, ``bn1``, ``layer{1..4}``,
``fc``. timm's ResNets use the same keys, so their state dicts are recognised too.

Names: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` and ``resnet152`` are the ImageNet networks;
every other ``resnet{6n+2}`` (``resnet20``, ``resnet56``, ``resnet110``) is a CIFAR network. Depths 50 and
152 are also 6n+2: the CIFAR ones are named ``resnet50_cifar`` / ``resnet152_cifar`` (``cifar_resnet50``
parses too). Detection tells them apart by the classifier: ``linear.weight`` is CIFAR, ``fc.weight`` ImageNet.

Layout (both styles): every parameter and the BatchNorm running statistics (``running_mean``,
``running_var``: a network needs them to work), in module order; ``num_batches_tracked`` is not generated and
is set to zero on rebuild (it only matters for BatchNorm with ``momentum=None``, which these do not use).

Descriptors (:meth:`ResNetFamily.compute_descriptors`, both styles): module roles ``stem.conv`` / ``stem.bn``
(stage 0), ``block.conv{1,2,3}`` / ``block.bn{1,2,3}`` and ``block.shortcut.conv`` / ``block.shortcut.bn``
(the 1x1 projection, ImageNet only) in stages 1..3 (CIFAR) or 1..4 (ImageNet), ``classifier`` (the head,
stage ``num_stages + 1``). Block ``j`` of a stage of ``n`` blocks has ``depth_in_stage`` ``j / (n - 1)``
(0.0 for a single block, as in resnet8). ``depth`` counts the weighted layers (``resnet20``: 19 convolutions
and the classifier, 0/19 .. 19/19): a BatchNorm sits with its convolution, a projection shortcut with its
block's last convolution. So ``layer2.0.conv1.weight`` is ``block.conv1.weight``, stage 2, depth_in_stage
0.0 in a resnet8 and a resnet110 alike, at any width, and every tensor of stage s of a CIFAR ResNet has its
depth in the s-th third of [0, 1].

Symmetries (:meth:`ResNetFamily.permutation_spec`, what :func:`zoo.align` matches on, both styles): the
channels inside each residual block: ``conv{k}``'s output channels (with ``bn{k}``'s weight, bias and
running statistics) and ``conv{k+1}``'s input channels, one permutation per block and inner layer
(``layer2.0.conv1`` ..). Not declared (left as they are): the residual stream of each stage (the stem, every
block's last convolution, the shortcuts and the classifier's inputs), whose permutation is shared by a whole
stage and, through the CIFAR option-A shortcuts (zero-padding), tied across stages.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo import ArchitectureFamily, ArchSpec, PermutationSpec, SlotDescriptor, hookimpl
from zoo.errors import ZooError

CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)  # the named CIFAR depths; any 6n+2 parses
CIFAR_DEFAULTS: dict[str, Any] = {  # settings of the CIFAR ResNets
    "in_chans": 3,  # input channels
    "num_classes": 10,  # classifier outputs
    "width": 16,  # channels of the first stage (doubled per stage)
    "input_size": 32,  # square input side in pixels (the net is fully convolutional; used in the description)
}
IMAGENET_STAGES: dict[int, tuple[str, tuple[int, int, int, int]]] = {  # depth -> (block, blocks per stage)
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_VARIANTS = (18, 34, 50, 101)  # listed variants (152 parses too; left out of the listing for speed)
IMAGENET_DEFAULTS: dict[str, Any] = {  # settings of the ImageNet ResNets
    "in_chans": 3,  # input channels (a stem conv for other counts replaces torchvision's)
    "num_classes": 1000,  # classifier outputs
    "input_size": 224,  # square input side in pixels (fully convolutional; used in the description)
}
_DERIVED = ("depth", "style")  # config keys that parse accepts back (they must agree with the name)
_STEM_KEY = re.compile(r"(?P<module>conv1|bn1)\.\w+")  # the stem's tensors
_BLOCK_KEY = re.compile(  # a block's tensors: layer{stage}.{block}.{conv|bn}{k} or .downsample.{0|1}
    r"layer(?P<stage>\d+)\.(?P<block>\d+)\.(?P<module>(?:conv|bn)\d|downsample\.[01])\.\w+"
)
_HEAD_KEY = re.compile(r"(?:linear|fc)\.\w+")  # the classifier's tensors (CIFAR: linear, ImageNet: fc)
_SHORTCUT_ROLES = {"downsample.0": "block.shortcut.conv", "downsample.1": "block.shortcut.bn"}  # module roles
_LAYER_ROLES = frozenset(  # module roles that count as a layer for depth (BatchNorms and shortcuts do not)
    {"stem.conv", "block.conv1", "block.conv2", "block.conv3", "classifier"}
)


class _OptionAShortcut(nn.Module):
    """Subsample by 2 and zero-pad channels: the parameter-free shortcut of the CIFAR ResNets."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _OptionAShortcut(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = width
        stages = []
        for i, mult in enumerate((1, 2, 4)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(planes, width * mult, stride))
                planes = width * mult
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, w, H, W)
        out = self.layer3(self.layer2(self.layer1(out)))  # (B, 4w, H/4, W/4)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, 4w)
        return self.linear(out)  # (B, num_classes)


def build_imagenet_resnet(depth: int, num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """torchvision's ImageNet ResNet of ``depth`` with random init (never a download)."""
    import torchvision  # lazy: importing torchvision takes a while and only ImageNet ResNets need it

    model = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)
    if in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


_NAME = re.compile(
    r"^(?P<pre>cifar[-_]?)?resnet[-_]?(?P<depth>\d+)(?P<post>[-_]?cifar(?:10|100)?|[-_]?imagenet)?$"
)


def _ints(overrides: Mapping[str, Any], allowed: Mapping[str, Any], name: str) -> dict[str, int]:
    unknown = set(overrides) - set(allowed) - set(_DERIVED)
    if unknown:
        raise ZooError(f"{name}: unknown setting(s) {sorted(unknown)}; it takes {sorted(allowed)}")
    out: dict[str, int] = {}
    for k, v in overrides.items():
        if k in _DERIVED:
            continue
        if isinstance(v, bool) or int(v) != v or int(v) < 1:
            raise ZooError(f"{name}: {k} must be a positive integer, got {v!r}")
        out[k] = int(v)
    return out


class ResNetFamily(ArchitectureFamily):
    """CIFAR ResNets (6n+2, option-A shortcuts) and ImageNet ResNets (torchvision)."""

    name = "resnet"
    summary = "CIFAR ResNets (depth 6n+2, option-A shortcuts) and ImageNet ResNet-18/34/50/101/152"

    def variants(self) -> list[str]:
        cifar = [f"resnet{d}" for d in CIFAR_DEPTHS if d not in IMAGENET_STAGES]
        return cifar + [f"resnet{d}" for d in IMAGENET_VARIANTS]

    def parse(self, name: str, **overrides: Any) -> ArchSpec | None:
        m = _NAME.match(name.lower())
        if not m:
            return None
        depth = int(m["depth"])
        cifar_marked = bool(m["pre"]) or bool(m["post"] and "cifar" in m["post"])
        imagenet = depth in IMAGENET_STAGES and not cifar_marked
        style = overrides.get("style") or ("imagenet" if imagenet else "cifar")
        if "depth" in overrides and int(overrides["depth"]) != depth:
            raise ZooError(f"{name}: depth={overrides['depth']} contradicts the name; drop one of them")
        if style == "imagenet":
            if depth not in IMAGENET_STAGES:
                raise ZooError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_STAGES)}, got {depth}")
            cfg = {
                **IMAGENET_DEFAULTS,
                **_ints(overrides, IMAGENET_DEFAULTS, f"resnet{depth}"),
                "depth": depth,
                "style": "imagenet",
            }
            return ArchSpec(self.name, f"resnet{depth}", cfg)
        if style != "cifar":
            raise ZooError(f"{name}: style must be 'cifar' or 'imagenet', got {style!r}")
        if (depth - 2) % 6 or depth < 8:
            raise ZooError(
                f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}; "
                f"ImageNet ResNets are {', '.join(f'resnet{d}' for d in IMAGENET_STAGES)}"
            )
        label = f"resnet{depth}_cifar" if depth in IMAGENET_STAGES else f"resnet{depth}"
        cfg = {**CIFAR_DEFAULTS, **_ints(overrides, CIFAR_DEFAULTS, label), "depth": depth, "style": "cifar"}
        return ArchSpec(self.name, label, cfg)

    def describe(self, spec: ArchSpec) -> str:
        c = spec.config
        if c["style"] == "imagenet":
            block, stages = IMAGENET_STAGES[c["depth"]]
            exp = 4 if block == "bottleneck" else 1
            widths = [64 * 2**i * exp for i in range(4)]
            kind = (
                "bottleneck blocks (1x1, 3x3, 1x1 convolutions with batch norm, expansion 4)"
                if block == "bottleneck"
                else "basic blocks (two 3x3 convolutions with batch norm)"
            )
            return (
                f"ImageNet residual network ResNet-{c['depth']}: 7x7 stride-2 stem convolution "
                "with 64 channels, "
                f"batch norm, ReLU, 3x3 max pooling; four stages of {list(stages)} {kind} with "
                f"{', '.join(map(str, widths))} output channels, stride 2 at stages 2 to 4, 1x1 projection "
                f"shortcuts where the shape changes; global average pooling; linear classifier {widths[-1]}->"
                f"{c['num_classes']}. Input {c['in_chans']}x{c['input_size']}x{c['input_size']}, "
                f"{c['num_classes']} classes."
            )
        n = (c["depth"] - 2) // 6
        w = c["width"]
        return (
            f"CIFAR residual network ResNet-{c['depth']}: 3x3 stem convolution with {w} channels, "
            f"batch norm, ReLU; three stages of {n} basic blocks (two 3x3 convolutions with batch norm) "
            f"with {w}, {2 * w} and {4 * w} channels, stride 2 at stages 2 and 3, parameter-free option-A "
            f"shortcuts; global average pooling; linear classifier {4 * w}->{c['num_classes']}. "
            f"Input {c['in_chans']}x{c['input_size']}x"
            f"{c['input_size']}, {c['num_classes']} classes."
        )

    def input_shape(self, spec: ArchSpec) -> tuple[int, ...]:
        c = spec.config
        return (c["in_chans"], c["input_size"], c["input_size"])

    def blocks_per_stage(self, spec: ArchSpec) -> tuple[int, ...]:
        """Number of residual blocks in each stage: ``(n, n, n)`` for CIFAR depth 6n+2, ``(2, 2, 2, 2)`` for
        ResNet-18."""
        c = spec.config
        if c["style"] == "imagenet":
            return IMAGENET_STAGES[c["depth"]][1]
        return ((c["depth"] - 2) // 6,) * 3

    def compute_descriptors(self, spec: ArchSpec) -> tuple[SlotDescriptor, ...]:
        """The ``SlotDescriptor`` of each generated tensor: stem, blocks of stages 1..k, classifier.

        Roles, stages and depths as in the module docstring; names, shapes and fans are the default's.
        """
        counts = self.blocks_per_stage(spec)
        layers: dict[str, int] = {}  # module path of each weighted layer (conv, linear) -> its index
        placed: list[tuple[Any, str, int, float, int]] = []  # (default, module role, stage, in stage, layer)
        for d in super().compute_descriptors(spec):
            module = d.name.rpartition(".")[0]
            role, stage, in_stage, owner = d.module_role, 0, 0.0, module
            if m := _STEM_KEY.fullmatch(d.name):
                role, owner = ("stem.conv" if m["module"] == "conv1" else "stem.bn"), "conv1"
            elif m := _BLOCK_KEY.fullmatch(d.name):
                stage, block, sub = int(m["stage"]), int(m["block"]), m["module"]
                n = counts[stage - 1]
                in_stage = block / (n - 1) if n > 1 else 0.0
                role = _SHORTCUT_ROLES.get(sub, f"block.{sub}")
                if sub.startswith("bn"):  # bn{k} sits with conv{k}
                    owner = f"layer{stage}.{block}.conv{sub[2:]}"
            elif _HEAD_KEY.fullmatch(d.name):
                role, stage = "classifier", len(counts) + 1
            elif placed:  # a key these networks do not have: the default role, where the last tensor is
                stage = placed[-1][2]
            if role in _LAYER_ROLES:
                layers.setdefault(module, len(layers))
            # a shortcut (or an unknown tensor) sits with the last layer so far: its block's last conv
            placed.append((d, role, stage, in_stage, layers.get(owner, max(len(layers) - 1, 0))))
        last = max(len(layers) - 1, 1)
        return tuple(
            dataclasses.replace(
                d,
                role=f"{role}.{d.kind}",
                stage=stage,
                num_stages=len(counts),
                depth_in_stage=in_stage,
                depth=index / last,
            )
            for d, role, stage, in_stage, index in placed
        )

    def permutation_spec(self, spec: ArchSpec) -> PermutationSpec:
        """One permutation per block and inner layer (``layer{s}.{j}.conv{k}``): see the module docstring."""
        convs: dict[str, int] = {}  # block prefix ("layer2.0") -> its number of convolutions (2 or 3)
        for slot in self.slots(spec):
            m = _BLOCK_KEY.fullmatch(slot.name)
            if m and m["module"].startswith("conv"):
                block = f"layer{m['stage']}.{m['block']}"
                convs[block] = max(convs.get(block, 0), int(m["module"][4:]))
        axes: dict[str, tuple[str | None, ...]] = {}
        stats: set[str] = set()
        for block, n in convs.items():
            for k in range(1, n + 1):
                out = f"{block}.conv{k}" if k < n else None  # the last conv writes the residual stream
                into = f"{block}.conv{k - 1}" if k > 1 else None  # the first reads it
                axes[f"{block}.conv{k}.weight"] = (out, into, None, None)  # (out, in, kh, kw)
                if out is not None:
                    for t in ("weight", "bias", "running_mean", "running_var"):
                        axes[f"{block}.bn{k}.{t}"] = (out,)
                    stats |= {f"{block}.bn{k}.running_mean", f"{block}.bn{k}.running_var"}
        return PermutationSpec(axes, follow=frozenset(stats))

    def build(self, spec: ArchSpec) -> nn.Module:
        c = spec.config
        if c["style"] == "imagenet":
            return build_imagenet_resnet(c["depth"], c["num_classes"], c["in_chans"])
        return CifarResNet(c["depth"], c["num_classes"], c["in_chans"], c["width"])

    def candidates(self, state_dict: Mapping[str, torch.Tensor]) -> list[ArchSpec]:
        stem = state_dict.get("conv1.weight")
        if stem is None or stem.dim() != 4:
            return []
        if "linear.weight" in state_dict and tuple(stem.shape[-2:]) == (3, 3):
            return self._cifar_candidates(state_dict, stem)
        if "fc.weight" in state_dict and tuple(stem.shape[-2:]) == (7, 7):
            return self._imagenet_candidates(state_dict, stem)
        return []

    def _cifar_candidates(self, sd: Mapping[str, torch.Tensor], stem: torch.Tensor) -> list[ArchSpec]:
        blocks = {k.split(".")[1] for k in sd if k.startswith("layer1.")}
        depth = 6 * len(blocks) + 2
        cfg = {
            "in_chans": int(stem.shape[1]),
            "width": int(stem.shape[0]),
            "num_classes": int(sd["linear.weight"].shape[0]),
            "style": "cifar",
        }
        return [self.parse(f"resnet{depth}", **cfg)]  # type: ignore[list-item]

    def _imagenet_candidates(self, sd: Mapping[str, torch.Tensor], stem: torch.Tensor) -> list[ArchSpec]:
        counts = tuple(len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5))
        block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
        depth = next((d for d, (b, st) in IMAGENET_STAGES.items() if b == block and st == counts), None)
        if depth is None:
            return []
        cfg = {
            "in_chans": int(stem.shape[1]),
            "num_classes": int(sd["fc.weight"].shape[0]),
            "style": "imagenet",
        }
        return [self.parse(f"resnet{depth}", **cfg)]  # type: ignore[list-item]


@hookimpl
def zoo_register_families(register) -> None:  # type: ignore[no-untyped-def]
    register(ResNetFamily())
