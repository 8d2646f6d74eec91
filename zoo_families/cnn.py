"""The ``cnn`` family: the small convolutional networks of model-zoo research.

A stack of ``k x k`` convolutions (each but the last followed by 2x2 max-pooling), a flatten, one hidden
linear layer and a classifier. ``cnn-tiny`` is the standard zoo CNN (conv 8@5x5, 6@5x5, 4@2x2, fc 36->20->10:
2,464 parameters for 1-channel 28x28 input, 2,864 for 3 channels); ``cnn-small`` is a ~10k variant.

Names: ``cnn-tiny``, ``cnn-small``, or ``cnn`` with ``channels``, ``kernels`` and ``hidden``; a spec is named
after its structure (``cnn-tiny`` with other channels is ``cnn-custom``). Settings: ``in_chans``,
``num_classes``, ``input_size``, ``activation``. Detection reads the structure, channels and classes from
shapes and picks the first input size that fits the classifier (28, 32, 8, 16, 64, 224 preferred); the
activation has no weights and is assumed to be relu.

Layout: every parameter, in module order; there are no buffers, nothing is fixed.

Descriptors (:meth:`CNNFamily.compute_descriptors`): one stage of convolutions, then the head. Conv ``i`` of
``n`` has module role ``features.conv``, stage 1, ``depth_in_stage`` ``i / (n - 1)`` (0.0 for a single
conv); the hidden linear layer is ``head.fc`` and the last one ``classifier``, both in the head (stage 2,
``depth_in_stage`` 0.0). ``depth`` counts the ``n + 2`` layers: conv ``i`` is ``i / (n + 1)``, the classifier
1.0.

Symmetries (:meth:`CNNFamily.permutation_spec`, what :func:`zoo.align` matches on): the output channels of
conv ``i`` (permutation ``conv{i}``) reorder its weight's axis 0 and bias and the next conv's axis 1; the last
conv's channels reorder the hidden linear layer's inputs in blocks of ``side * side`` (the flatten is
channel-major); the hidden units (``fc``) reorder that layer's axis 0 and bias and the classifier's axis 1.
The classifier's outputs (the classes) are never permuted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from zoo import ArchitectureFamily, ArchSpec, PermutationSpec, SlotDescriptor, hookimpl
from zoo.errors import ZooError

ACTIVATIONS: dict[str, type[nn.Module]] = {  # name -> module class
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}

VARIANTS: dict[str, dict[str, Any]] = {  # named architectures and their settings
    "cnn-tiny": {"channels": [8, 6, 4], "kernels": [5, 5, 2], "hidden": 20},  # the standard zoo CNN
    "cnn-small": {"channels": [16, 12, 8], "kernels": [5, 5, 2], "hidden": 48},  # ~9.6k params at 1x28x28
}
DEFAULTS: dict[str, Any] = {  # settings every variant shares unless overridden
    "in_chans": 1,  # input channels
    "num_classes": 10,  # classifier outputs
    "input_size": 28,  # square input side in pixels
    "activation": "relu",  # one of ACTIVATIONS
}
_CONV_KEY = re.compile(r"features\.\d{1,4}\.weight")  # what detection reads: conv weights ...
_FC_KEY = re.compile(r"classifier\.\d{1,4}\.weight")  # ... and the two linear layers' weights
_PREFERRED_SIZES = (28, 32, 8, 16, 64, 224)  # what detection picks when several input sizes fit


def feature_side(input_size: int, kernels: list[int]) -> int:
    """Spatial side after the conv stack (valid convs, 2x2 pooling after all but the last)."""
    side = input_size
    for i, k in enumerate(kernels):
        side = side - k + 1
        if i < len(kernels) - 1:
            side //= 2
    return side


def _variant_of(cfg: Mapping[str, Any]) -> str:
    """The named variant whose structure (channels, kernels, hidden) ``cfg`` has, else ``cnn-custom``."""
    return next((n for n, v in VARIANTS.items() if all(cfg[k] == v[k] for k in v)), "cnn-custom")


class ZooCNN(nn.Module):
    """conv-act-pool x (n-1), conv-act, flatten, linear-act, linear."""

    def __init__(
        self,
        in_chans: int,
        channels: list[int],
        kernels: list[int],
        hidden: int,
        num_classes: int,
        input_size: int,
        activation: str,
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        prev = in_chans
        for i, (c, k) in enumerate(zip(channels, kernels)):
            layers += [nn.Conv2d(prev, c, k), act()]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            prev = c
        self.features = nn.Sequential(*layers)
        side = feature_side(input_size, kernels)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(prev * side * side, hidden), act(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, num_classes)


class CNNFamily(ArchitectureFamily):
    name = "cnn"
    summary = "small zoo CNNs (cnn-tiny: 2,464 params; cnn-small: ~10k)"

    def variants(self) -> list[str]:
        return list(VARIANTS)

    def parse(self, name: str, **overrides: Any) -> ArchSpec | None:
        key = name.lower()
        if key in ("tiny", "small"):
            key = f"cnn-{key}"
        if key == "cnn":
            key = "cnn-custom"
        if key not in VARIANTS and key != "cnn-custom":
            return None
        config = self._validate(key, {**DEFAULTS, **VARIANTS.get(key, VARIANTS["cnn-tiny"]), **overrides})
        return ArchSpec(self.name, _variant_of(config), config)

    def _validate(self, name: str, cfg: dict[str, Any]) -> dict[str, Any]:
        unknown = set(cfg) - set(DEFAULTS) - {"channels", "kernels", "hidden"}
        if unknown:
            raise ZooError(
                f"{name}: unknown setting(s) {sorted(unknown)}; cnn takes "
                f"{sorted(set(DEFAULTS) | {'channels', 'kernels', 'hidden'})}"
            )
        if cfg["activation"] not in ACTIVATIONS:
            raise ZooError(
                f"{name}: unknown activation {cfg['activation']!r}; choose from {sorted(ACTIVATIONS)}"
            )
        cfg["channels"] = [int(c) for c in cfg["channels"]]
        cfg["kernels"] = [int(k) for k in cfg["kernels"]]
        if len(cfg["channels"]) != len(cfg["kernels"]) or not cfg["channels"]:
            raise ZooError(f"{name}: channels and kernels must be non-empty lists of the same length")
        if feature_side(int(cfg["input_size"]), cfg["kernels"]) < 1:
            raise ZooError(
                f"{name}: input_size {cfg['input_size']} is too small for kernels {cfg['kernels']}"
            )
        for k in ("in_chans", "num_classes", "input_size", "hidden"):
            cfg[k] = int(cfg[k])
        return cfg

    def describe(self, spec: ArchSpec) -> str:
        c = spec.config
        convs = ", ".join(f"{ch}@{k}x{k}" for ch, k in zip(c["channels"], c["kernels"]))
        fc_in = c["channels"][-1] * feature_side(c["input_size"], c["kernels"]) ** 2
        return (
            f"Convolutional neural network {spec.name}: {len(c['channels'])} convolution layers "
            f"({convs}) with "
            f"{c['activation']} activation and 2x2 max pooling, then fully connected {fc_in}->{c['hidden']}->"
            f"{c['num_classes']}. Input {c['in_chans']}x{c['input_size']}x{c['input_size']}, "
            f"{c['num_classes']} classes."
        )

    def input_shape(self, spec: ArchSpec) -> tuple[int, ...]:
        c = spec.config
        return (c["in_chans"], c["input_size"], c["input_size"])

    def compute_descriptors(self, spec: ArchSpec) -> tuple[SlotDescriptor, ...]:
        """The ``SlotDescriptor`` of each generated tensor: convs of stage 1, the hidden fc and classifier.

        Roles, stages and depths as in the module docstring; names, shapes and fans are the default's.
        """
        n = len(spec.config["channels"])
        layers: dict[str, int] = {}  # module path -> layer index: convs 0..n-1, hidden fc n, classifier n+1
        out = []
        for d in super().compute_descriptors(spec):
            i = layers.setdefault(d.name.rpartition(".")[0], len(layers))
            if i < n:
                role, stage, in_stage = "features.conv", 1, (i / (n - 1) if n > 1 else 0.0)
            else:
                role, stage, in_stage = ("classifier" if i == n + 1 else "head.fc"), 2, 0.0
            out.append(
                dataclasses.replace(
                    d,
                    role=f"{role}.{d.kind}",
                    stage=stage,
                    num_stages=1,
                    depth_in_stage=in_stage,
                    depth=i / (n + 1),
                )
            )
        return tuple(out)

    def permutation_spec(self, spec: ArchSpec) -> PermutationSpec:
        """Conv channels (``conv0`` ..) and hidden units (``fc``): see the module docstring."""
        n = len(spec.config["channels"])
        axes: dict[str, tuple[str | None, ...]] = {}
        pos = 0  # the conv's index in ``features`` (conv, activation and, but after the last, a pool)
        for i in range(n):
            p, prev = f"conv{i}", (f"conv{i - 1}" if i else None)
            axes[f"features.{pos}.weight"] = (p, prev, None, None)  # (out, in, kh, kw)
            axes[f"features.{pos}.bias"] = (p,)
            pos += 3 if i < n - 1 else 2
        axes["classifier.1.weight"] = ("fc", f"conv{n - 1}")  # (hidden, channels * side * side)
        axes["classifier.1.bias"] = ("fc",)
        axes["classifier.3.weight"] = (None, "fc")  # (classes, hidden): the classes keep their order
        return PermutationSpec(axes)

    def build(self, spec: ArchSpec) -> nn.Module:
        c = spec.config
        return ZooCNN(
            c["in_chans"],
            list(c["channels"]),
            list(c["kernels"]),
            c["hidden"],
            c["num_classes"],
            c["input_size"],
            c["activation"],
        )

    def candidates(self, state_dict: Mapping[str, torch.Tensor]) -> list[ArchSpec]:
        convs = sorted((k for k in state_dict if _CONV_KEY.fullmatch(k)), key=lambda k: int(k.split(".")[1]))
        fcs = sorted((k for k in state_dict if _FC_KEY.fullmatch(k)), key=lambda k: int(k.split(".")[1]))
        if (
            not convs
            or len(fcs) != 2
            or any(state_dict[k].dim() != 4 for k in convs)
            or any(state_dict[k].dim() != 2 for k in fcs)
        ):
            return []
        channels = [int(state_dict[k].shape[0]) for k in convs]
        kernels = [int(state_dict[k].shape[-1]) for k in convs]
        in_chans = int(state_dict[convs[0]].shape[1])
        hidden, fc_in = (int(d) for d in state_dict[fcs[0]].shape)
        num_classes = int(state_dict[fcs[1]].shape[0])
        sizes = [
            s
            for s in range(4, 513)
            if feature_side(s, kernels) >= 1 and channels[-1] * feature_side(s, kernels) ** 2 == fc_in
        ]
        if not sizes:
            return []
        size = next((s for s in _PREFERRED_SIZES if s in sizes), sizes[0])
        cfg = {
            **DEFAULTS,
            "channels": channels,
            "kernels": kernels,
            "hidden": hidden,
            "in_chans": in_chans,
            "num_classes": num_classes,
            "input_size": size,
        }
        return [ArchSpec(self.name, _variant_of(cfg), cfg)]


@hookimpl
def zoo_register_families(register) -> None:  # type: ignore[no-untyped-def]
    register(CNNFamily())
