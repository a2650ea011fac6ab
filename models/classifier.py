"""The defect classifier: pretrained EfficientNet-Lite0 trunk, a defect head and a defect-type head.

`forward` returns named outputs so the exported ONNX graph has named outputs too. The network is split into a
frozen `trunk` and a trainable `top` so training on 2 CPU cores can cache trunk features (see training/).

Localization comes for free: the defect head is linear on the globally pooled last feature map, so weighting
that map's channels by the head's weights (a class-activation map) shows which positions raise the defect logit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from models.backbone import LITE0_FEATURE_DIM, LITE0_STAGE_DEPTHS, create_lite0

MAP_EPS = 1e-3  # keeps a map whose peak is ~0 (nothing raises the defect logit) at ~0, not amplified noise


class ClassifierOutput(NamedTuple):
    """defect_probability: (N,) P(part is defective); type_probabilities: (N, K) P(type | defective);
    anomaly_map: (N, 1, S, S) at the input size S, in [0, 1], where the defect logit is raised (higher = more)."""

    defect_probability: torch.Tensor
    type_probabilities: torch.Tensor
    anomaly_map: torch.Tensor


def _linear_weights(source: int, target: int) -> torch.Tensor:
    """(target, source) matrix of 1-D linear interpolation as F.interpolate does it (align_corners=False).

    Built in numpy so a trace records it as a constant.
    """
    position = np.maximum((np.arange(target) + 0.5) * (source / target) - 0.5, 0.0)
    low = np.minimum(np.floor(position).astype(np.int64), source - 1)
    high = np.minimum(low + 1, source - 1)
    fraction = position - low
    matrix = np.zeros((target, source), np.float32)
    np.add.at(matrix, (np.arange(target), low), 1.0 - fraction)
    np.add.at(matrix, (np.arange(target), high), fraction)
    return torch.from_numpy(matrix)


class DefectClassifier(nn.Module):
    """Binary defect score plus a distribution over the product's defect types."""

    def __init__(self, num_defect_types: int, trainable_stages: int = 3, dropout: float = 0.2, pretrained: bool = True):
        super().__init__()
        if num_defect_types < 1:
            raise ValueError("a classifier needs at least one defect type")
        if not 0 <= trainable_stages <= len(LITE0_STAGE_DEPTHS):
            raise ValueError(f"trainable_stages must be in [0, {len(LITE0_STAGE_DEPTHS)}]")
        backbone = create_lite0(pretrained=pretrained)
        split = len(LITE0_STAGE_DEPTHS) - trainable_stages
        self.trainable_stages = trainable_stages
        stages = list(backbone.blocks.children())  # type: ignore[union-attr]
        stem = [backbone.get_submodule("conv_stem"), backbone.get_submodule("bn1")]
        head = [backbone.get_submodule("conv_head"), backbone.get_submodule("bn2")]
        self.trunk = nn.Sequential(*stem, *stages[:split])
        self.upper = nn.Sequential(*stages[split:], *head)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.defect_head = nn.Linear(LITE0_FEATURE_DIM, 1)
        self.type_head = nn.Linear(LITE0_FEATURE_DIM, num_defect_types)

    def embed(self, trunk_features: torch.Tensor) -> torch.Tensor:
        """Trunk features -> pooled 1280-d embedding."""
        return self.pool(self.upper(trunk_features)).flatten(1)

    def logits(self, trunk_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk features -> (defect logit (N,), type logits (N, K)); what the training loss sees."""
        embedding = self.dropout(self.embed(trunk_features))
        return self.defect_head(embedding).squeeze(1), self.type_head(embedding)

    def activation_map(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Last feature map (N, C, h, w) -> class-activation map of the defect logit (N, 1, *size) in [0, 1].

        relu(sum_c w_c F_c(x, y)): the defect logit is the spatial mean of this sum (before relu) plus the bias,
        so the map is exact for this head. Bilinearly upsampled to `size`, then divided by its per-image max.
        """
        weights = self.defect_head.weight.reshape(1, -1, 1, 1)
        cam = torch.relu((features * weights).sum(dim=1, keepdim=True))
        # Bilinear upsampling (F.interpolate's, align_corners=False) as two constant matrix products: exports
        # as MatMuls on fixed weights, where a Resize to fixed sizes traces into Shape/Gather/Concat chains.
        rows = _linear_weights(int(features.shape[-2]), size[0]).to(cam)
        cols = _linear_weights(int(features.shape[-1]), size[1]).to(cam)
        cam = torch.matmul(torch.matmul(rows, cam), cols.transpose(0, 1))
        peak = cam.amax(dim=(2, 3), keepdim=True)
        return cam / (peak + MAP_EPS)

    def outputs_and_logit(self, images: torch.Tensor) -> tuple[ClassifierOutput, torch.Tensor]:
        """The forward outputs plus the defect logit itself (N,), unsaturated where the probability is 0 or 1."""
        features = self.upper(self.trunk(images))
        embedding = self.dropout(self.pool(features).flatten(1))
        defect_logit, type_logits = self.defect_head(embedding).squeeze(1), self.type_head(embedding)
        output = ClassifierOutput(
            torch.sigmoid(defect_logit),
            torch.softmax(type_logits, dim=1),
            # Plain ints: the input size is fixed per export, so the upsampling traces to constant sizes.
            self.activation_map(features, (int(images.shape[-2]), int(images.shape[-1]))),
        )
        return output, defect_logit

    def forward(self, images: torch.Tensor) -> ClassifierOutput:
        return self.outputs_and_logit(images)[0]

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.defect_head.parameters(), *self.type_head.parameters()]

    def upper_parameters(self) -> list[nn.Parameter]:
        return list(self.upper.parameters())
