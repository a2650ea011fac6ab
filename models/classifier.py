"""The defect classifier: pretrained EfficientNet-Lite0 trunk, a defect head and a defect-type head.

`forward` returns named outputs so the exported ONNX graph has named outputs too. The network is split into a
frozen `trunk` and a trainable `top` so training on 2 CPU cores can cache trunk features (see training/).

Localization comes for free: the defect head is linear on the globally pooled last feature map, so weighting
that map's channels by the head's weights (a class-activation map) shows which positions raise the defect logit.

Flip test-time augmentation lives in `forward` itself (`tta_flips`), so training-side scoring, the ONNX export and
the server all average the same views: the image and its flips (only those the product allows) go through the
network as one batch, the defect and type probabilities are averaged, and each view's map is flipped back first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from models.backbone import DEFAULT_BACKBONE, N_STAGES, backbone_spec, create_backbone

# Test-time flips by name: the tensor dimensions each one reverses (images are N, C, H, W).
FLIP_DIMS: dict[str, tuple[int, ...]] = {"h": (-1,), "v": (-2,), "hv": (-2, -1)}
MAP_EPS = 1e-3  # keeps a map whose peak is ~0 (nothing raises the defect logit) at ~0, not amplified noise
# The map's floor is this quantile of the validation defects' activation peaks: nine in ten defects of that kind
# draw at full contrast, as if divided by their own peak, and a part with less evidence draws dimmer.
MAP_FLOOR_QUANTILE = 0.1


class ClassifierOutput(NamedTuple):
    """defect_probability: (N,) P(part is defective); type_probabilities: (N, K) P(type | defective);
    anomaly_map: (N, 1, S, S) at the input size S, in [0, 1], where the defect logit is raised (higher = more):
    divided by its own peak, or by the model's `map_floor` where the peak is lower."""

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

    def __init__(
        self,
        num_defect_types: int,
        trainable_stages: int = 3,
        dropout: float = 0.2,
        pretrained: bool = True,
        backbone: str = DEFAULT_BACKBONE,
        tta_flips: Sequence[str] = (),
    ):
        super().__init__()
        if num_defect_types < 1:
            raise ValueError("a classifier needs at least one defect type")
        if not 0 <= trainable_stages <= N_STAGES:
            raise ValueError(f"trainable_stages must be in [0, {N_STAGES}]")
        unknown = set(tta_flips) - set(FLIP_DIMS)
        if unknown or len(set(tta_flips)) != len(tta_flips):
            raise ValueError(f"tta_flips must be distinct names among {sorted(FLIP_DIMS)}, got {list(tta_flips)}")
        feature_dim = backbone_spec(backbone).feature_dim
        self.backbone_name = backbone
        self.tta_flips = tuple(tta_flips)
        network = create_backbone(backbone, pretrained=pretrained)
        split = N_STAGES - trainable_stages
        self.trainable_stages = trainable_stages
        stages = list(network.blocks.children())  # type: ignore[union-attr]
        stem = [network.get_submodule("conv_stem"), network.get_submodule("bn1")]
        head = [network.get_submodule("conv_head"), network.get_submodule("bn2")]
        self.trunk = nn.Sequential(*stem, *stages[:split])
        self.upper = nn.Sequential(*stages[split:], *head)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.defect_head = nn.Linear(feature_dim, 1)
        self.type_head = nn.Linear(feature_dim, num_defect_types)
        # The least peak a drawn map is divided by, in activation units; set after training (set_map_floor).
        # At 0 each map is divided by its own peak, however small: a good part drew its noise at full contrast.
        self.map_floor = 0.0

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
        so the map is exact for this head. Bilinearly upsampled to `size`, then divided by its per-image max, or by
        `map_floor` where the max is lower.
        """
        cam = self._weighted_activation(features)
        # Bilinear upsampling (F.interpolate's, align_corners=False) as two constant matrix products: exports
        # as MatMuls on fixed weights, where a Resize to fixed sizes traces into Shape/Gather/Concat chains.
        rows = _linear_weights(int(features.shape[-2]), size[0]).to(cam)
        cols = _linear_weights(int(features.shape[-1]), size[1]).to(cam)
        cam = torch.matmul(torch.matmul(rows, cam), cols.transpose(0, 1))
        peak = cam.amax(dim=(2, 3), keepdim=True).clamp(min=self.map_floor)
        return cam / (peak + MAP_EPS)

    def _weighted_activation(self, features: torch.Tensor) -> torch.Tensor:
        """Last feature map (N, C, h, w) -> relu of the defect head's weighted channel sum (N, 1, h, w)."""
        weights = self.defect_head.weight.reshape(1, -1, 1, 1)
        return torch.relu((features * weights).sum(dim=1, keepdim=True))

    @torch.no_grad()
    def activation_peaks(self, trunk_features: torch.Tensor) -> torch.Tensor:
        """Trunk features -> each image's peak of its class-activation map before the division (N,)."""
        return self._weighted_activation(self.upper(trunk_features)).amax(dim=(1, 2, 3))

    def set_map_floor(self, peaks: torch.Tensor, is_defect: torch.Tensor) -> float:
        """Set `map_floor` from validation images' activation peaks: MAP_FLOOR_QUANTILE of the defects' peaks
        (0, each map to its own peak, when there is no defect to learn it from). Returns the floor."""
        defect_peaks = peaks[is_defect > 0.5].double()
        self.map_floor = float(torch.quantile(defect_peaks, MAP_FLOOR_QUANTILE)) if len(defect_peaks) else 0.0
        return self.map_floor

    def outputs_and_logit(self, images: torch.Tensor) -> tuple[ClassifierOutput, torch.Tensor]:
        """The forward outputs plus the defect logit itself (N,), unsaturated where the probability is 0 or 1.

        With `tta_flips`, every output is the mean over the image and its flips (the logit too: the mean logit,
        what a fusion standardizes; the probability is the mean probability, what the brief of TTA says)."""
        views = 1 + len(self.tta_flips)
        batch = (
            torch.cat([images, *(torch.flip(images, FLIP_DIMS[f]) for f in self.tta_flips)]) if views > 1 else images
        )
        features = self.upper(self.trunk(batch))
        embedding = self.dropout(self.pool(features).flatten(1))
        defect_logit, type_logits = self.defect_head(embedding).squeeze(1), self.type_head(embedding)
        # Plain ints: the input size is fixed per export, so the upsampling traces to constant sizes.
        maps = self.activation_map(features, (int(images.shape[-2]), int(images.shape[-1])))
        if views == 1:
            return ClassifierOutput(torch.sigmoid(defect_logit), torch.softmax(type_logits, dim=1), maps), defect_logit
        # View-major batch: reshape(views, -1, ...) keeps the batch axis dynamic in the exported graph.
        probability = torch.sigmoid(defect_logit).reshape(views, -1).mean(0)
        types = torch.softmax(type_logits, dim=1).reshape(views, -1, type_logits.shape[1]).mean(0)
        per_view = maps.reshape(views, -1, *maps.shape[1:])
        # A flip is its own inverse: flipping each view's map back aligns it with the input image.
        aligned = [per_view[0], *(torch.flip(per_view[i + 1], FLIP_DIMS[f]) for i, f in enumerate(self.tta_flips))]
        output = ClassifierOutput(probability, types, torch.stack(aligned).mean(0))
        return output, defect_logit.reshape(views, -1).mean(0)

    def forward(self, images: torch.Tensor) -> ClassifierOutput:
        return self.outputs_and_logit(images)[0]

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.defect_head.parameters(), *self.type_head.parameters()]

    def upper_parameters(self) -> list[nn.Parameter]:
        return list(self.upper.parameters())
