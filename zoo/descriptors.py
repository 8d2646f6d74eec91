"""Slot descriptors: where each generated tensor sits in its network, in terms that carry over between
architectures of a family (role, stage, relative depths, fans), and the default that reads them from
state-dict keys and shapes. Families give them through :meth:`zoo.ArchitectureFamily.descriptors`
(overriding :meth:`~zoo.ArchitectureFamily.compute_descriptors`); docs/writing-a-plugin.md, section 7."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zoo.slots import TensorSlot


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


def descriptor_problem(desc: SlotDescriptor, slot: TensorSlot) -> str | None:
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
