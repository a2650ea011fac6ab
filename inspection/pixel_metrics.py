"""Pixel-level localization metrics of anomaly maps against ground-truth masks: pixel AUROC and PRO.

Numpy and OpenCV only (the torch-free server may import it). Masks: nonzero = defect. Maps: higher = more
anomalous, one per mask and of the same height and width (resize masks to the map size first).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
from numpy.typing import ArrayLike

from inspection.metrics import auroc

DEFAULT_PRO_THRESHOLDS = 200


def _plane(array: np.ndarray, what: str) -> np.ndarray:
    """HxW view of a HxW, 1xHxW or HxWx1 array."""
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"each {what} must be a single HxW plane, got shape {array.shape}")
    return array


def _pairs(masks: Iterable[ArrayLike], maps: Iterable[ArrayLike]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image (bool mask HxW, float map HxW); images may differ in size, a mask and its map may not."""
    pairs = []
    for mask, anomaly_map in zip(masks, maps, strict=True):
        m = _plane(np.asarray(mask), "mask") != 0
        a = _plane(np.asarray(anomaly_map, dtype=np.float64), "anomaly map")
        if m.shape != a.shape:
            raise ValueError(f"mask {m.shape} and anomaly map {a.shape} differ in size; resize the mask to the map")
        if np.isnan(a).any():
            raise ValueError("anomaly map contains NaN")
        pairs.append((m, a))
    if not pairs:
        raise ValueError("pixel metrics need at least one image")
    return pairs


def pixel_auroc(masks: Iterable[ArrayLike], maps: Iterable[ArrayLike]) -> float | None:
    """AUROC over all pixels of all images (defect pixels vs good pixels); None if either kind is absent.

    Exact Mann-Whitney U with tied scores counting half (inspection.metrics.auroc): one O(n log n) sort.
    """
    pairs = _pairs(masks, maps)
    labels = np.concatenate([m.ravel() for m, _ in pairs]).astype(np.uint8)
    scores = np.concatenate([a.ravel() for _, a in pairs])
    return auroc(labels, scores)


def _region_labels(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, int]:
    """Flat region id per pixel of all images (0 = good pixel, 1..R = defect regions), and R."""
    labels, offset = [], 0
    for mask, _ in pairs:
        # 8-connectivity, as in the MVTec AD evaluation (scipy.ndimage.label with a 3x3 structure).
        count, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        components = components.astype(np.int64)
        components[components > 0] += offset
        labels.append(components.ravel())
        offset += count - 1
    return np.concatenate(labels), offset


def pro_curve(
    masks: Iterable[ArrayLike],
    maps: Iterable[ArrayLike],
    max_fpr: float = 0.3,
    num_thresholds: int = DEFAULT_PRO_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-region overlap curve: (false-positive rate ascending, mean overlap over defect regions).

    Thresholds are quantiles of the good pixels' scores at evenly spaced FPRs in [0, max_fpr], plus one past
    max_fpr and -inf, so the curve is sampled where it gets integrated. None without defect or good pixels.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must lie in (0, 1], got {max_fpr}")
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}")
    pairs = _pairs(masks, maps)
    regions, n_regions = _region_labels(pairs)
    scores = np.concatenate([a.ravel() for _, a in pairs])
    good = regions == 0
    if n_regions == 0 or not good.any():
        return None
    nominal = np.linspace(0.0, max_fpr, num_thresholds)
    nominal = np.r_[nominal, min(1.0, max_fpr + max_fpr / (num_thresholds - 1))]
    thresholds = np.r_[-np.inf, np.sort(np.quantile(scores[good], 1.0 - nominal))]
    # A pixel is flagged at threshold t when score > t; bins[i] = how many (ascending) thresholds pixel i exceeds.
    bins = np.searchsorted(thresholds, scores, side="left")
    n_bins = thresholds.size + 1
    flagged_good = np.cumsum(np.bincount(bins[good], minlength=n_bins)[::-1])[::-1][1:]
    fpr = flagged_good / good.sum()
    # Region x bin counts in one bincount, then per threshold the fraction of each region's pixels flagged.
    defect = ~good
    table = np.bincount((regions[defect] - 1) * n_bins + bins[defect], minlength=n_regions * n_bins)
    table = table.reshape(n_regions, n_bins)
    flagged_regions = np.cumsum(table[:, ::-1], axis=1)[:, ::-1][:, 1:]
    overlap = (flagged_regions / table.sum(axis=1, keepdims=True)).mean(axis=0)
    # Ascending thresholds give descending FPR; flip so the curve runs from FPR 0 upwards.
    return fpr[::-1], overlap[::-1]


def pro_score(
    masks: Iterable[ArrayLike],
    maps: Iterable[ArrayLike],
    max_fpr: float = 0.3,
    num_thresholds: int = DEFAULT_PRO_THRESHOLDS,
) -> float | None:
    """Normalized area under the PRO curve up to `max_fpr` (MVTec AD, Bergmann et al. 2021; as in anomalib).

    1.0 means every defect region is fully found before any good pixel is flagged; None if not computable.
    """
    curve = pro_curve(masks, maps, max_fpr=max_fpr, num_thresholds=num_thresholds)
    if curve is None:
        return None
    fpr, overlap = curve
    # Several thresholds can share one FPR (defect pixels between two good ones): keep the highest overlap
    # there, and interpolate linearly only between the last point inside max_fpr and the first one past it.
    last = int(np.searchsorted(fpr, max_fpr, side="right")) - 1
    end = overlap[last]
    if last + 1 < fpr.size and fpr[last] < max_fpr:
        step = (max_fpr - fpr[last]) / (fpr[last + 1] - fpr[last])
        end = overlap[last] + step * (overlap[last + 1] - overlap[last])
    x = np.r_[fpr[: last + 1], max_fpr]
    y = np.r_[overlap[: last + 1], end]
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))
    return area / max_fpr
