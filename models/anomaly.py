"""PatchCore-class anomaly detection (Roth et al., 2022) on the pretrained EfficientNet-Lite0 trunk.

Learns from good parts only: a memory bank of locally aware patch features, subsampled by greedy k-center
coreset selection, scores each patch by its nearest-neighbour distance to the bank. `forward` returns a named
image score and a pixel map, both exportable to ONNX (see models.anomaly_export).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inspection.preprocessing import PreprocessSpec, preprocess
from models.backbone import create_lite0

# Stage outputs at strides 8 (40 ch) and 16 (112 ch). On the synthetic product (2, 4) localized and ranked
# best: (2, 3) misses soft stains, stage 5 (stride 32) blurs thin scratches, (2, 3, 4) is no better than (2, 4).
DEFAULT_LAYERS = (2, 4)
DEFAULT_FEATURE_DIM = 128
DEFAULT_MEMORY_BANK_SIZE = 2000
DEFAULT_MAX_PATCHES = 50_000
CORESET_PROJECTION_DIM = 64
EAGER_CHUNK_IMAGES = 4


class AnomalyOutput(NamedTuple):
    """anomaly_score: (N,) max patch distance to the bank; anomaly_map: (N, 1, H, W) at the input size."""

    anomaly_score: torch.Tensor
    anomaly_map: torch.Tensor


def gaussian_kernel_1d(sigma: float) -> torch.Tensor:
    """Normalized 1-D Gaussian, radius 4 sigma (as anomalib's blur of the map)."""
    radius = max(1, int(4.0 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


class PatchCore(nn.Module):
    """Frozen Lite0 trunk -> patch features -> nearest-neighbour distance to a memory bank of good patches."""

    memory_bank: torch.Tensor
    projection: torch.Tensor | None
    blur_kernel: torch.Tensor | None

    def __init__(
        self,
        layers: Sequence[int] = DEFAULT_LAYERS,
        feature_dim: int = DEFAULT_FEATURE_DIM,
        memory_bank_size: int = DEFAULT_MEMORY_BANK_SIZE,
        blur_sigma: float = 4.0,
        pretrained: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.layers = tuple(sorted(set(layers)))
        if not self.layers or self.layers[0] < 0 or self.layers[-1] > 6:
            raise ValueError(f"layers must be Lite0 stage indices in [0, 6], got {list(layers)}")
        if memory_bank_size < 1:
            raise ValueError(f"memory_bank_size must be at least 1, got {memory_bank_size}")
        backbone = create_lite0(pretrained=pretrained)
        stages = list(backbone.blocks.children())  # type: ignore[union-attr]
        self.stem = nn.Sequential(backbone.get_submodule("conv_stem"), backbone.get_submodule("bn1"))
        # Truncated after the deepest stage used: the rest of the network would cost time and add nothing.
        self.stages = nn.Sequential(*stages[: self.layers[-1] + 1])
        self.requires_grad_(False)
        self.eval()  # before the dry run below: in train mode it would move the BatchNorm running statistics
        self.memory_bank_size = memory_bank_size
        self.blur_sigma = blur_sigma
        self.seed = seed
        with torch.no_grad():
            channels = sum(f.shape[1] for f in self._layer_outputs(torch.zeros(1, 3, 64, 64)))
        self.feature_dim = min(feature_dim, channels)
        projection = None
        if feature_dim < channels:
            # A fixed Johnson-Lindenstrauss projection keeps patch distances while shrinking bank and matmul.
            generator = torch.Generator().manual_seed(seed)
            projection = torch.randn(channels, feature_dim, generator=generator) / math.sqrt(feature_dim)
        self.register_buffer("projection", projection)
        self.register_buffer("blur_kernel", gaussian_kernel_1d(blur_sigma) if blur_sigma > 0 else None)
        self.register_buffer("memory_bank", torch.zeros(0, self.feature_dim))

    def train(self, mode: bool = True) -> PatchCore:
        """Always eval: the trunk's BatchNorm statistics are ImageNet's and must never be updated."""
        return super().train(False)

    @property
    def is_fitted(self) -> bool:
        return self.memory_bank.shape[0] > 0

    def config(self) -> dict[str, Any]:
        """What rebuilds this model (with its state_dict); stored beside the weights and in the ONNX metadata."""
        return {
            "layers": list(self.layers),
            "feature_dim": self.feature_dim,
            "memory_bank_size": self.memory_bank_size,
            "blur_sigma": self.blur_sigma,
            "seed": self.seed,
        }

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The bank's row count is only known after fitting: take the saved one's shape before copying into it.
        saved = state_dict.get(f"{prefix}memory_bank")
        if saved is not None:
            self.memory_bank = torch.empty_like(saved, device=self.memory_bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _layer_outputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        outputs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.layers:
                outputs.append(x)
        return outputs

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed NxCxHxW -> (N, h, w, feature_dim) locally aware patch features on the finest grid."""
        # 3x3 neighbourhood average: each patch sees its surroundings, so features tolerate small shifts.
        pooled = [F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False) for f in self._layer_outputs(images)]
        # Python ints, so an export bakes the grid size in (fixed by the spec) instead of Shape/Gather chains.
        grid = (int(pooled[0].shape[-2]), int(pooled[0].shape[-1]))
        deeper = [F.interpolate(f, size=grid, mode="bilinear", align_corners=False) for f in pooled[1:]]
        features = torch.cat([pooled[0], *deeper], dim=1).permute(0, 2, 3, 1)
        return features if self.projection is None else features @ self.projection

    def nearest_distance(self, features: torch.Tensor) -> torch.Tensor:
        """(..., D) features -> (...) Euclidean distance to the nearest memory bank row, as one matmul."""
        # min_j ||a - b_j||^2 = ||a||^2 + min_j (||b_j||^2 - 2 a.b_j); the bank norms fold into a constant.
        bank_norms = (self.memory_bank**2).sum(dim=1)
        closest = (bank_norms - 2.0 * (features @ self.memory_bank.T)).amin(dim=-1)
        return (closest + (features**2).sum(dim=-1)).clamp(min=0.0).sqrt()

    def _blur(self, maps: torch.Tensor) -> torch.Tensor:
        if self.blur_kernel is None:
            return maps
        # Separable and reflect-padded: two small convs instead of one 33x33, and no dark frame at the border.
        radius = self.blur_kernel.shape[0] // 2
        vertical = self.blur_kernel.view(1, 1, -1, 1)
        maps = F.conv2d(F.pad(maps, (0, 0, radius, radius), mode="reflect"), vertical)
        return F.conv2d(F.pad(maps, (radius, radius, 0, 0), mode="reflect"), vertical.view(1, 1, 1, -1))

    def forward(self, images: torch.Tensor) -> AnomalyOutput:
        return self.score_features(self.patch_features(images), (int(images.shape[-2]), int(images.shape[-1])))

    def score_features(self, features: torch.Tensor, output_size: tuple[int, int]) -> AnomalyOutput:
        """(N, h, w, feature_dim) patch features -> scores and maps at `output_size`: `forward` after the trunk,
        for features computed elsewhere (training computes them on ONNX Runtime on a CPU)."""
        if not self.is_fitted:
            raise RuntimeError("PatchCore has an empty memory bank: fit it on good images first")
        height, width, dim = (int(size) for size in features.shape[1:])
        patches = features.reshape(-1, height * width, dim)
        if torch.jit.is_tracing():
            distances = self.nearest_distance(patches)  # exported: all patches of the batch in one matmul
        else:
            # Eagerly, a few images at a time bound the (images, h*w, bank rows) temporary during fit/evaluation.
            distances = torch.cat([self.nearest_distance(chunk) for chunk in patches.split(EAGER_CHUNK_IMAGES)])
        score = distances.amax(dim=1)
        grid = distances.reshape(-1, 1, height, width)
        anomaly_map = F.interpolate(grid, size=output_size, mode="bilinear", align_corners=False)
        return AnomalyOutput(score, self._blur(anomaly_map))

    def fit(self, batches: Iterable[torch.Tensor], memory_bank_size: int | None = None, seed: int | None = None) -> int:
        """Build the memory bank from batches of preprocessed good images; returns its number of rows."""
        bank = fit_patchcore(self, batches, memory_bank_size, self.seed if seed is None else seed)
        return int(bank.shape[0])


class PatchFeatures(nn.Module):
    """`PatchCore.patch_features` as a module of its own: what runs on ONNX Runtime while training (the trunk
    and the pooling, interpolation and projection after it; no memory bank)."""

    def __init__(self, patchcore: PatchCore):
        super().__init__()
        self.patchcore = patchcore

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.patchcore.patch_features(images)


FeaturesOf = Callable[[torch.Tensor], torch.Tensor]
"""Preprocessed (N, C, H, W) images -> (N, h, w, feature_dim) patch features: `PatchCore.patch_features`, or the
same computed elsewhere."""


def greedy_coreset(features: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of `size` rows picked by greedy k-center selection (each pick is the row farthest from the picks).

    Distances are taken on a random projection to CORESET_PROJECTION_DIM dims for speed, as in PatchCore.
    """
    n, dim = features.shape
    if n <= size:
        return torch.arange(n)
    reduced = features
    if dim > CORESET_PROJECTION_DIM:
        projection = torch.randn(dim, CORESET_PROJECTION_DIM, generator=generator) / math.sqrt(CORESET_PROJECTION_DIM)
        reduced = features @ projection.to(features.device)
    norms = (reduced**2).sum(dim=1)
    picked = torch.empty(size, dtype=torch.long)
    current = int(torch.randint(n, (1,), generator=generator))
    min_distance = torch.full((n,), math.inf, device=features.device)
    for step in range(size):
        picked[step] = current
        distance = norms - 2.0 * (reduced @ reduced[current]) + norms[current]
        min_distance = torch.minimum(min_distance, distance)
        current = int(min_distance.argmax())
    return picked


@torch.no_grad()
def fit_patchcore(
    model: PatchCore,
    batches: Iterable[torch.Tensor],
    memory_bank_size: int | None = None,
    seed: int = 0,
    max_patches: int = DEFAULT_MAX_PATCHES,
    advance: Callable[[int], None] | None = None,
    features_of: FeaturesOf | None = None,
) -> torch.Tensor:
    """Fill `model.memory_bank` with at most `memory_bank_size` coreset rows of the good images' patches
    (their features from `features_of`, by default the model's own `patch_features`).

    Memory stays bounded however many images come: patches are kept as a uniform random sample of at most
    `max_patches` rows (smallest random keys win) before the coreset is taken from them.
    """
    bound = model.memory_bank_size if memory_bank_size is None else memory_bank_size
    if bound < 1 or max_patches < bound:
        raise ValueError(f"need 1 <= memory_bank_size <= max_patches, got {bound} and {max_patches}")
    generator = torch.Generator().manual_seed(seed)
    device = model.memory_bank.device
    features_of = model.patch_features if features_of is None else features_of
    kept = torch.zeros(0, model.feature_dim, device=device)
    keys = torch.zeros(0)
    for batch in batches:
        features = features_of(batch.to(device)).reshape(-1, model.feature_dim)
        kept = torch.cat([kept, features])
        keys = torch.cat([keys, torch.rand(features.shape[0], generator=generator)])
        if kept.shape[0] > max_patches:
            keys, order = torch.topk(keys, max_patches, largest=False)
            kept = kept[order.to(device)]
        if advance is not None:
            advance(batch.shape[0])
    if kept.shape[0] == 0:
        raise ValueError("PatchCore needs at least one good image to fit")
    model.memory_bank = kept[greedy_coreset(kept, bound, generator).to(device)].clone()
    model.memory_bank_size = bound
    return model.memory_bank


def image_batches(images: Iterable[np.ndarray], spec: PreprocessSpec, batch_size: int = 16) -> Iterator[torch.Tensor]:
    """Decoded uint8 gray/RGB images -> preprocessed float batches, lazily (the shared preprocessing)."""
    chunk: list[np.ndarray] = []
    for image in images:
        chunk.append(preprocess(image, spec))
        if len(chunk) == batch_size:
            yield torch.from_numpy(np.stack(chunk))
            chunk = []
    if chunk:
        yield torch.from_numpy(np.stack(chunk))


@torch.inference_mode()
def score_images(
    model: PatchCore,
    images: Iterable[np.ndarray],
    spec: PreprocessSpec,
    batch_size: int = 16,
    features_of: FeaturesOf | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded images -> (anomaly scores (N,), anomaly maps (N, H, W) at the spec's input size), the distances
    from PyTorch and the patch features from `features_of` (by default the model's own `patch_features`)."""
    features_of = model.patch_features if features_of is None else features_of
    scores: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    device = model.memory_bank.device
    map_size = (spec.image_size, spec.image_size)
    for batch in image_batches(images, spec, batch_size):
        output = model.score_features(features_of(batch.to(device)), map_size)
        scores.append(output.anomaly_score.cpu().numpy())
        maps.append(output.anomaly_map[:, 0].cpu().numpy())
    if not scores:
        size = spec.image_size
        return np.zeros(0, np.float32), np.zeros((0, size, size), np.float32)
    return np.concatenate(scores), np.concatenate(maps)
