"""Pixel AUROC and PRO on hand-made masks and maps whose answers are known."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from inspection.metrics import auroc
from inspection.pixel_metrics import pixel_auroc, pro_curve, pro_score


def _two_region_mask() -> np.ndarray:
    """A 64x64 mask with a small region (4x4) and a large one (20x20), far apart."""
    mask = np.zeros((64, 64), np.uint8)
    mask[4:8, 4:8] = 255
    mask[30:50, 30:50] = 255
    return mask


def test_a_perfect_map_scores_one_and_an_inverted_map_zero() -> None:
    masks = np.stack([_two_region_mask(), np.zeros((64, 64), np.uint8)])
    perfect = (masks > 0).astype(np.float32) + np.random.default_rng(0).uniform(0, 0.5, masks.shape)
    assert pixel_auroc(masks, perfect) == pytest.approx(1.0)
    assert pro_score(masks, perfect) == pytest.approx(1.0)
    assert pixel_auroc(masks, -perfect) == pytest.approx(0.0)
    assert pro_score(masks, -perfect) == pytest.approx(0.0, abs=1e-6)


def test_pro_weights_regions_equally_whatever_their_size() -> None:
    mask = _two_region_mask()
    rng = np.random.default_rng(1)
    anomaly_map = rng.uniform(0.0, 1.0, mask.shape)
    anomaly_map[4:8, 4:8] = 2.0  # the small region is found before any good pixel
    anomaly_map[30:50, 30:50] = -1.0  # the large one only after every good pixel
    # Half the regions are found at every FPR below 1, although only 16 of 416 defect pixels are.
    assert pro_score([mask], [anomaly_map]) == pytest.approx(0.5, abs=1e-3)
    assert pixel_auroc([mask], [anomaly_map]) == pytest.approx(16 / 416, abs=1e-6)


def test_a_region_found_at_the_good_pixels_rate_adds_half_the_fpr() -> None:
    mask = _two_region_mask()
    anomaly_map = np.random.default_rng(2).uniform(0.0, 1.0, mask.shape)
    anomaly_map[4:8, 4:8] = 2.0
    # The large region scores like good pixels, so its overlap follows the FPR: PRO(f) = 0.5 + f / 2, whose
    # normalized area up to 0.3 is 0.5 + 0.3 / 4.
    assert pro_score([mask], [anomaly_map], max_fpr=0.3) == pytest.approx(0.575, abs=0.02)
    assert pro_score([mask], [anomaly_map], max_fpr=0.01) == pytest.approx(0.5025, abs=0.01)


def _reference_pro(masks: list[np.ndarray], maps: list[np.ndarray], max_fpr: float) -> float:
    """The MVTec AD definition, brute force: every distinct score is a threshold."""
    regions = []
    for mask, anomaly_map in zip(masks, maps, strict=True):
        count, labels = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
        regions += [anomaly_map[labels == k] for k in range(1, count)]
    good = np.concatenate([m[k == 0] for k, m in zip(masks, maps, strict=True)])
    fprs, pros = [], []
    for t in np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]:
        fprs.append(float((good >= t).mean()))
        pros.append(float(np.mean([(r >= t).mean() for r in regions])))
    fpr, pro = np.r_[0.0, fprs], np.r_[0.0, pros]
    end = np.interp(max_fpr, fpr, pro)
    keep = fpr <= max_fpr
    x, y = np.r_[fpr[keep], max_fpr], np.r_[pro[keep], end]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / max_fpr)


def test_pro_matches_the_brute_force_definition_on_random_blobs() -> None:
    rng = np.random.default_rng(3)
    masks, maps = [], []
    for _ in range(4):
        mask = np.zeros((40, 40), np.uint8)
        for _ in range(rng.integers(1, 4)):
            cv2.circle(mask, tuple(int(v) for v in rng.integers(5, 35, 2)), int(rng.integers(2, 6)), 255, -1)
        masks.append(mask)
        maps.append(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 3) + rng.normal(0, 30, mask.shape))
    for max_fpr in (0.05, 0.3):
        expected = _reference_pro(masks, maps, max_fpr)
        assert pro_score(masks, maps, max_fpr=max_fpr, num_thresholds=400) == pytest.approx(expected, abs=0.01)


def test_pro_curve_runs_from_zero_fpr_to_one() -> None:
    mask = _two_region_mask()
    curve = pro_curve([mask], [np.random.default_rng(4).random(mask.shape)], num_thresholds=50)
    assert curve is not None
    fpr, overlap = curve
    assert fpr[0] == 0.0 and fpr[-1] == 1.0 and overlap[-1] == 1.0
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(overlap) >= 0)


def test_pixel_auroc_agrees_with_image_auroc_on_flattened_pixels_of_mixed_sizes() -> None:
    rng = np.random.default_rng(5)
    masks = [rng.random((30, 20)) > 0.8, rng.random((1, 16, 16)) > 0.9]
    maps = [rng.random((30, 20)) + masks[0], rng.random((1, 16, 16))]
    flat_labels = np.concatenate([m.ravel() for m in masks]).astype(int)
    flat_scores = np.concatenate([m.ravel() for m in maps])
    assert pixel_auroc(masks, maps) == pytest.approx(auroc(flat_labels, flat_scores))


def test_undefined_or_mismatched_inputs() -> None:
    empty = np.zeros((1, 8, 8), np.uint8)
    assert pixel_auroc(empty, np.random.default_rng(6).random((1, 8, 8))) is None
    assert pro_score(empty, np.random.default_rng(6).random((1, 8, 8))) is None
    with pytest.raises(ValueError, match="resize the mask"):
        pixel_auroc([np.zeros((8, 8))], [np.zeros((16, 16))])
    with pytest.raises(ValueError, match="NaN"):
        pro_score([np.ones((4, 4))], [np.full((4, 4), np.nan)])
    with pytest.raises(ValueError, match="max_fpr"):
        pro_score([np.ones((4, 4))], [np.zeros((4, 4))], max_fpr=0.0)


def test_pixel_metrics_stay_torch_free_for_the_server() -> None:
    code = "import sys, inspection.pixel_metrics; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
