"""The defect classifier: pretrained EfficientNet-Lite0 trunk, a defect head and a defect-type head.

`forward` returns named outputs so the exported ONNX graph has named outputs too. The network is split into a
frozen `trunk` and a trainable `top` so training on 2 CPU cores can cache trunk features (see training/).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from models.backbone import LITE0_FEATURE_DIM, LITE0_STAGE_DEPTHS, create_lite0


class ClassifierOutput(NamedTuple):
    """defect_probability: (N,) P(part is defective); type_probabilities: (N, K) P(type | defective)."""

    defect_probability: torch.Tensor
    type_probabilities: torch.Tensor


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

    def forward(self, images: torch.Tensor) -> ClassifierOutput:
        defect_logit, type_logits = self.logits(self.trunk(images))
        return ClassifierOutput(torch.sigmoid(defect_logit), torch.softmax(type_logits, dim=1))

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.defect_head.parameters(), *self.type_head.parameters()]

    def upper_parameters(self) -> list[nn.Parameter]:
        return list(self.upper.parameters())
