"""The ``resnet`` family: CIFAR ResNets of depth 6n+2 (He et al. 2016, section 4.2).

A 3x3 conv with ``width`` channels, BN, ReLU; three stages of n BasicBlocks with width, 2*width and 4*width
channels (stride 2 at the start of stages 2 and 3); option-A shortcuts (parameter-free: subsample by stride
2 and zero-pad the new channels); global average pooling; a linear classifier. State-dict keys match the
widely used CIFAR ResNet checkpoints (``conv1``, ``bn1``, ``layer{1,2,3}.{i}.conv{1,2}``, ``linear``), which
load as they are, ``module.`` prefixes and missing ``num_batches_tracked`` included.

Layout: every parameter and the BatchNorm running statistics (a network needs them to work), in module
order; ``num_batches_tracked`` is not generated (zero).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo import ArchitectureFamily, ArchSpec, hookimpl
from zoo.errors import ZooError

CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)  # the named CIFAR depths; any 6n+2 parses
CIFAR_DEFAULTS: dict[str, Any] = {  # settings of the CIFAR ResNets
    "in_chans": 3,  # input channels
    "num_classes": 10,  # classifier outputs
    "width": 16,  # channels of the first stage (doubled per stage)
    "input_size": 32,  # square input side in pixels (the net is fully convolutional; used in the description)
}


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


_CIFAR_NAME = re.compile(r"^(?:cifar[-_]?)?resnet[-_]?(\d+)(?:[-_]?cifar(?:10|100)?)?$")


class ResNetFamily(ArchitectureFamily):
    name = "resnet"
    summary = "CIFAR ResNets (depth 6n+2, option-A shortcuts)"

    def variants(self) -> list[str]:
        return [f"resnet{d}" for d in CIFAR_DEPTHS]

    def parse(self, name: str, **overrides: Any) -> ArchSpec | None:
        m = _CIFAR_NAME.match(name.lower())
        if not m:
            return None
        depth = int(m.group(1))
        if (depth - 2) % 6 or depth < 8:
            raise ZooError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        unknown = set(overrides) - set(CIFAR_DEFAULTS)
        if unknown:
            raise ZooError(f"resnet{depth}: unknown setting(s) {sorted(unknown)}; takes {sorted(CIFAR_DEFAULTS)}")
        cfg = {**CIFAR_DEFAULTS, **{k: int(v) for k, v in overrides.items()}, "depth": depth}
        return ArchSpec(self.name, f"resnet{depth}", cfg)

    def describe(self, spec: ArchSpec) -> str:
        c = spec.config
        n = (c["depth"] - 2) // 6
        w = c["width"]
        return (
            f"CIFAR residual network ResNet-{c['depth']}: 3x3 stem convolution with {w} channels, batch norm, "
            f"ReLU; three stages of {n} basic blocks (two 3x3 convolutions with batch norm) with {w}, {2 * w} and "
            f"{4 * w} channels, stride 2 at stages 2 and 3, parameter-free option-A shortcuts; global average "
            f"pooling; linear classifier {4 * w}->{c['num_classes']}. Input {c['in_chans']}x{c['input_size']}x"
            f"{c['input_size']}, {c['num_classes']} classes."
        )

    def build(self, spec: ArchSpec) -> nn.Module:
        c = spec.config
        return CifarResNet(c["depth"], c["num_classes"], c["in_chans"], c["width"])

    def candidates(self, state_dict: Mapping[str, torch.Tensor]) -> list[ArchSpec]:
        if "linear.weight" not in state_dict or "conv1.weight" not in state_dict:
            return []
        blocks = {k.split(".")[1] for k in state_dict if k.startswith("layer1.")}
        stem = state_dict["conv1.weight"]
        if stem.dim() != 4 or tuple(stem.shape[-2:]) != (3, 3):
            return []
        depth = 6 * len(blocks) + 2
        cfg = {"in_chans": int(stem.shape[1]), "width": int(stem.shape[0]),
               "num_classes": int(state_dict["linear.weight"].shape[0])}
        return [self.parse(f"resnet{depth}", **cfg)]  # type: ignore[list-item]


@hookimpl
def zoo_register_families(register) -> None:  # type: ignore[no-untyped-def]
    register(ResNetFamily())
