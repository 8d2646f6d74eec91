"""The ``vit`` family: timm Vision Transformers, tiny to huge (Dosovitskiy et al. 2021, as timm builds them).

Names follow timm: ``vit_{size}_patch{P}_{S}`` with size tiny (192 dims, 3 heads), small (384, 6), base
(768, 12), large (1024, 16) or huge (1280, 16); e.g. ``vit_tiny_patch16_224`` or ``vit_base_patch32_224``
(a timm tag such as ``.augreg_in21k`` is ignored). Settings: ``img_size``, ``patch_size``, ``num_classes``
(0 drops the head), ``in_chans`` and ``depth``. A spec's name is rewritten to match its settings, so
``vit_small_patch16_224`` with ``img_size=32, patch_size=4`` is ``vit_small_patch4_32``. Modules are built
with ``timm.create_model(..., pretrained=False)``: random init, never a download.

Detection reads the embedding width, patch size and input channels from ``patch_embed.proj.weight``, the
image size from the length of ``pos_embed`` (a square grid plus the class token), the depth from the number
of ``blocks.*``, the classes from ``head.weight`` (none: 0); the number of heads is not visible in any
shape, so it is timm's default for the width (192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16).

Layout: every parameter, in module order (``cls_token``, ``pos_embed``, patch embedding, blocks, final
norm, head). A ViT has no buffers, so nothing is fixed.

Descriptors (:meth:`ViTFamily.compute_descriptors`): the stem is the embedding (module roles ``embed`` for
``cls_token`` and ``pos_embed``, ``embed.patch`` for the patch projection: stage 0), the blocks are one stage
(``block.norm1``, ``block.attn.qkv``, ``block.attn.proj``, ``block.norm2``, ``block.mlp.fc1``,
``block.mlp.fc2``; block ``i`` of ``D`` has ``depth_in_stage`` ``i / (D - 1)``), the head is ``head.norm`` and
``classifier`` (stage 2). ``depth`` counts the linear maps: the patch projection 0 (the tokens sit with it),
then four per block (qkv, proj, fc1, fc2), then the classifier, ``4 * D + 1`` in all; a pre-norm LayerNorm
sits with the linear map after it. So the same block tensor of a ViT of depth 6 and of depth 12 has the same
role, and a ViT-Tiny and a ViT-Small the same roles at every key.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo import ArchitectureFamily, ArchSpec, SlotDescriptor, hookimpl
from zoo.errors import ZooError


@dataclass(frozen=True)
class ViTSize:
    """One of timm's standard ViT widths."""

    embed_dim: int  # token width
    depth: int  # transformer blocks (default)
    num_heads: int  # attention heads
    timm_model: str  # the timm entry point built with overrides


SIZES: dict[str, ViTSize] = {  # timm's standard ViT sizes
    "tiny": ViTSize(192, 12, 3, "vit_tiny_patch16_224"),
    "small": ViTSize(384, 12, 6, "vit_small_patch16_224"),
    "base": ViTSize(768, 12, 12, "vit_base_patch16_224"),
    "large": ViTSize(1024, 24, 16, "vit_large_patch16_224"),
    "huge": ViTSize(1280, 32, 16, "vit_huge_patch14_224"),
}
VARIANTS = (  # listed variants (any vit_{size}_patch{P}_{S} parses)
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_base_patch32_224",
    "vit_large_patch16_224",
)
SETTINGS = ("img_size", "patch_size", "num_classes", "in_chans", "depth")  # what a user may override
_DERIVED = ("size", "embed_dim", "num_heads", "mlp_ratio")  # config keys parse accepts back if they agree
MLP_RATIO = 4.0  # hidden width of every block's MLP, as a multiple of the token width
_BLOCK_KEY = re.compile(r"blocks\.(?P<block>\d+)\.(?P<module>.+)\.\w+")  # a block's tensors
_BLOCK_LINEARS = frozenset({"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"})  # a block's layers, for depth
_BLOCK_NORMS = frozenset({"norm1", "norm2"})  # pre-norms: they sit with the linear map after them
_EMBED_ROLES = {"": "embed", "patch_embed.proj": "embed.patch"}  # module path -> role, before the blocks
_NAME = re.compile(  # vit_{size}_patch{P}_{S}, optionally with a timm tag (".augreg_in21k")
    r"^vit[-_](?P<size>tiny|small|base|large|huge)[-_]patch(?P<patch>\d+)[-_](?P<img>\d+)(?:\..*)?$"
)


def vit_name(size: str, patch_size: int, img_size: int) -> str:
    """timm-style name of a ViT: ``vit_base_patch16_224``."""
    return f"vit_{size}_patch{patch_size}_{img_size}"


class ViTFamily(ArchitectureFamily):
    """timm Vision Transformers with configurable patch, image size, classes, channels and depth."""

    name = "vit"
    summary = "timm Vision Transformers (tiny, small, base, large, huge; any patch and image size)"

    def variants(self) -> list[str]:
        return list(VARIANTS)

    def parse(self, name: str, **overrides: Any) -> ArchSpec | None:
        m = _NAME.match(name.lower())
        if not m:
            return None
        size = SIZES[m["size"]]
        unknown = set(overrides) - set(SETTINGS) - set(_DERIVED)
        if unknown:
            raise ZooError(f"{name}: unknown setting(s) {sorted(unknown)}; a ViT takes {list(SETTINGS)}")
        for key, want in (
            ("size", m["size"]),
            ("embed_dim", size.embed_dim),
            ("num_heads", size.num_heads),
            ("mlp_ratio", MLP_RATIO),
        ):
            if key in overrides and overrides[key] != want:
                raise ZooError(
                    f"{name}: {key}={overrides[key]!r} contradicts the name ({key} is {want!r}); "
                    f"choose the size by name (tiny, small, base, large, huge)"
                )
        cfg: dict[str, Any] = {
            "img_size": int(m["img"]),
            "patch_size": int(m["patch"]),
            "num_classes": 1000,
            "in_chans": 3,
            "depth": size.depth,
        }
        for key in SETTINGS:
            if key in overrides:
                v = overrides[key]
                if isinstance(v, bool) or int(v) != v:
                    raise ZooError(f"{name}: {key} must be an integer, got {v!r}")
                cfg[key] = int(v)
        for key in ("img_size", "patch_size", "in_chans", "depth"):
            if cfg[key] < 1:
                raise ZooError(f"{name}: {key} must be at least 1, got {cfg[key]}")
        if cfg["num_classes"] < 0:
            raise ZooError(f"{name}: num_classes must be 0 (no head) or more, got {cfg['num_classes']}")
        if cfg["img_size"] % cfg["patch_size"]:
            raise ZooError(
                f"{name}: img_size {cfg['img_size']} is not a multiple of patch_size "
                f"{cfg['patch_size']}; choose sizes that divide"
            )
        cfg.update(size=m["size"], embed_dim=size.embed_dim, num_heads=size.num_heads, mlp_ratio=MLP_RATIO)
        return ArchSpec(self.name, vit_name(m["size"], cfg["patch_size"], cfg["img_size"]), cfg)

    def describe(self, spec: ArchSpec) -> str:
        c = spec.config
        e, p, s = c["embed_dim"], c["patch_size"], c["img_size"]
        grid = s // p
        head = (
            f"linear classification head {e}->{c['num_classes']} on the class token"
            if c["num_classes"]
            else "no classification head (features only)"
        )
        return (
            f"Vision Transformer ViT-{c['size'].capitalize()}/{p} ({spec.name}): {s}x{s} input with "
            f"{c['in_chans']} channels cut into {p}x{p} patches ({grid * grid} patches) "
            f"linearly embedded to {e} "
            f"dimensions, a class token and learned position embeddings; {c['depth']} pre-norm transformer "
            f"blocks with {c['num_heads']} attention heads (head dimension {e // c['num_heads']}) and MLP "
            f"{e}->{int(e * c['mlp_ratio'])}->{e} with GELU; final layer norm; {head}. "
            f"{c['num_classes']} classes."
        )

    def input_shape(self, spec: ArchSpec) -> tuple[int, ...]:
        c = spec.config
        return (c["in_chans"], c["img_size"], c["img_size"])

    def compute_descriptors(self, spec: ArchSpec) -> tuple[SlotDescriptor, ...]:
        """The ``SlotDescriptor`` of each generated tensor: embedding (stem), blocks (one stage), head.

        Roles, stages and depths as in the module docstring; names, shapes and fans are the default's.
        """
        blocks = spec.config["depth"]
        layer = 0  # index of the last linear map seen: the patch projection is 0
        layers: dict[str, int] = {}  # module path of each linear map after the patch projection -> its index
        placed: list[tuple[Any, str, int, float, int]] = []  # (default, module role, stage, in stage, layer)
        for d in super().compute_descriptors(spec):
            module = d.name.rpartition(".")[0]
            if m := _BLOCK_KEY.fullmatch(d.name):
                block, sub = int(m["block"]), m["module"]
                role, stage, in_stage = f"block.{sub}", 1, (block / (blocks - 1) if blocks > 1 else 0.0)
                if sub in _BLOCK_LINEARS:
                    layer = layers.setdefault(module, layer + 1)
                index = layer + 1 if sub in _BLOCK_NORMS else layer
            elif module == "head":
                layer = layers.setdefault(module, layer + 1)
                role, stage, in_stage, index = "classifier", 2, 0.0, layer
            elif placed and placed[-1][2] > 0:  # after the blocks: the final norm(s), before the classifier
                role, stage, in_stage, index = f"head.{module}", 2, 0.0, layer + 1
            else:  # before the blocks: tokens, position embedding and patch projection
                role, stage, in_stage, index = _EMBED_ROLES.get(module, f"embed.{module}"), 0, 0.0, 0
            placed.append((d, role, stage, in_stage, index))
        last = max(max((p[4] for p in placed), default=0), 1)
        return tuple(
            dataclasses.replace(
                d,
                role=f"{role}.{d.kind}",
                stage=stage,
                num_stages=1,
                depth_in_stage=in_stage,
                depth=index / last,
            )
            for d, role, stage, in_stage, index in placed
        )

    def build(self, spec: ArchSpec) -> nn.Module:
        import timm  # lazy: importing timm takes a while

        c = spec.config
        return timm.create_model(
            SIZES[c["size"]].timm_model,
            pretrained=False,
            img_size=c["img_size"],
            patch_size=c["patch_size"],
            num_classes=c["num_classes"],
            in_chans=c["in_chans"],
            depth=c["depth"],
        )

    def candidates(self, state_dict: Mapping[str, torch.Tensor]) -> list[ArchSpec]:
        proj = state_dict.get("patch_embed.proj.weight")
        pos = state_dict.get("pos_embed")
        if proj is None or pos is None or "cls_token" not in state_dict or proj.dim() != 4 or pos.dim() != 3:
            return []
        embed_dim, in_chans, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[-1])
        size = next((n for n, sz in SIZES.items() if sz.embed_dim == embed_dim), None)
        grid = math.isqrt(int(pos.shape[1]) - 1)
        if size is None or grid * grid != int(pos.shape[1]) - 1:
            return []
        depth = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
        head = state_dict.get("head.weight")
        num_classes = int(head.shape[0]) if head is not None else 0
        spec = self.parse(
            vit_name(size, patch, grid * patch), num_classes=num_classes, in_chans=in_chans, depth=depth
        )
        return [spec] if spec is not None else []


@hookimpl
def zoo_register_families(register) -> None:  # type: ignore[no-untyped-def]
    register(ViTFamily())
