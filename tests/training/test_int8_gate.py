"""The INT8 gate on constructed score sets: each criterion accepts what it should and refuses what it should."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inspection.metrics import auroc
from training.int8_gate import (
    _stratified_counts,
    _weighted_auroc,
    int8_gate,
    mcnemar_exact_p,
    paired_bootstrap_auroc_loss,
)


def _scores(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.clip(rng.beta(2, 5, n) + 0.45 * labels, 0, 1)
    return labels, scores


@pytest.fixture(scope="module")
def splits() -> tuple[np.ndarray, ...]:
    """Validation and test labels and fp32 scores, the test split about ELPV's size."""
    (vy, vs), (ty, ts) = _scores(1, 1000), _scores(2, 525)
    return vy, vs, ty, ts


def test_quantization_noise_is_accepted(splits) -> None:
    vy, vs, ty, ts = splits
    noise = np.random.default_rng(3)
    vq, tq = vs + noise.normal(0, 1e-4, vs.shape), ts + noise.normal(0, 1e-4, ts.shape)
    decision = int8_gate(vy, vs, vq, ty, ts, tq, target_miss_rate=0.02)
    assert decision.accepted, decision.reason
    assert decision.failed_criteria == ()
    assert decision.reason.startswith("INT8 accepted")
    assert decision.auroc_loss_ci95 is not None and decision.auroc_loss_ci95[1] <= 0.005
    assert decision.flip_fraction <= 0.01


def test_ranking_damage_is_refused_by_the_auroc_interval(splits) -> None:
    vy, vs, ty, ts = splits
    noise = np.random.default_rng(3)
    # Not a monotone shift: re-derived thresholds cannot hide it.
    vq, tq = vs + noise.normal(0, 0.08, vs.shape), ts + noise.normal(0, 0.08, ts.shape)
    decision = int8_gate(vy, vs, vq, ty, ts, tq, target_miss_rate=0.02)
    assert not decision.accepted
    assert "auroc_loss" in decision.failed_criteria
    assert decision.reason.startswith("INT8 refused (AUROC loss interval above the limit")
    assert "serving fp32" in decision.reason
    assert decision.auroc_loss_ci95 is not None and decision.auroc_loss_ci95[0] > 0  # worse beyond doubt


def test_some_defects_pushed_down_are_refused(splits) -> None:
    vy, vs, ty, ts = splits
    rng = np.random.default_rng(5)

    def damage(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
        hit = (labels == 1) & (rng.random(labels.size) < 0.15)  # a defect look the quantized model no longer sees
        return np.where(hit, scores - 0.35, scores)

    decision = int8_gate(vy, vs, damage(vy, vs), ty, ts, damage(ty, ts), target_miss_rate=0.02)
    assert not decision.accepted
    assert "auroc_loss" in decision.failed_criteria
    # Its own re-derived threshold keeps the misses at the target; the damage surfaces as false detections.
    assert decision.int8_false_detection_rate is not None and decision.fp32_false_detection_rate is not None
    assert decision.int8_false_detection_rate > 2 * decision.fp32_false_detection_rate


def test_many_flips_with_identical_auroc_are_refused_by_the_flip_limit(splits) -> None:
    vy, vs, ty, ts = splits
    threshold = int8_gate(vy, vs, vs, ty, ts, ts, target_miss_rate=0.02).fp32_threshold
    # Shuffling scores within each class among the frames near the threshold leaves AUROC exactly as it was
    # (and the flag count per class), but the frames flagged are different ones: verdicts flip evenly both ways.
    rng = np.random.default_rng(6)
    tq = ts.copy()
    for label in (0, 1):
        near = np.flatnonzero((ty == label) & (np.abs(ts - threshold) < 0.05))
        tq[near] = ts[rng.permutation(near)]
    decision = int8_gate(vy, vs, vs, ty, ts, tq, target_miss_rate=0.02)
    assert decision.auroc_loss == 0.0
    assert decision.flip_fraction > 0.02
    assert decision.flips_fp32_flags_int8_passes == decision.flips_fp32_passes_int8_flags
    assert decision.failed_criteria == ("flip_fraction",)
    assert not decision.accepted
    assert "too many verdicts flip" in decision.reason


def test_flips_that_lean_one_way_are_refused_by_mcnemar() -> None:
    # A large test split: 12 flips are only 0.3 % of it, but all twelve go the same way.
    (vy, vs), (ty, ts) = _scores(1, 1000), _scores(2, 4000)
    threshold = int8_gate(vy, vs, vs, ty, ts, ts, target_miss_rate=0.02).fp32_threshold
    just_below = np.flatnonzero((ty == 0) & (ts < threshold))
    raised = just_below[np.argsort(ts[just_below])[-12:]]  # the 12 good parts closest below the threshold
    tq = ts.copy()
    tq[raised] = threshold + 1e-3
    decision = int8_gate(vy, vs, vs, ty, ts, tq, target_miss_rate=0.02)
    assert (decision.flips_fp32_flags_int8_passes, decision.flips_fp32_passes_int8_flags) == (0, 12)
    assert decision.mcnemar_p == pytest.approx(2 * 0.5**12)
    assert decision.failed_criteria == ("mcnemar",)
    assert "McNemar" in decision.reason


def test_monotone_score_shift_is_absorbed_by_recalibration(splits) -> None:
    vy, vs, ty, ts = splits
    decision = int8_gate(vy, vs, vs * 0.9, ty, ts, ts * 0.9, target_miss_rate=0.02)
    assert decision.accepted, decision.reason
    assert decision.int8_threshold < decision.fp32_threshold
    assert decision.flips == 0 and decision.mcnemar_p == 1.0  # no discordant pairs: p is 1, not undefined
    assert decision.auroc_loss == 0.0


def test_bootstrap_interval_holds_the_estimate_and_repeats_with_its_seed(splits) -> None:
    vy, vs, ty, ts = splits
    tq = ts + np.random.default_rng(7).normal(0, 0.03, ts.shape)
    first = int8_gate(vy, vs, vs, ty, ts, tq, 0.02, seed=11)
    again = int8_gate(vy, vs, vs, ty, ts, tq, 0.02, seed=11)
    other = int8_gate(vy, vs, vs, ty, ts, tq, 0.02, seed=12)
    assert first.auroc_loss is not None and first.auroc_loss_ci95 is not None
    low, high = first.auroc_loss_ci95
    assert low < first.auroc_loss < high
    assert first.auroc_loss_ci95 == again.auroc_loss_ci95
    assert first.auroc_loss_ci95 != other.auroc_loss_ci95
    losses = paired_bootstrap_auroc_loss(ty, ts, tq, n_resamples=2000, seed=11)
    assert losses.shape == (2000,)
    assert np.percentile(losses, 97.5) == pytest.approx(high)
    assert abs(np.median(losses) - first.auroc_loss) < (high - low) / 4


def test_vectorized_bootstrap_auroc_matches_the_reference_on_each_resample() -> None:
    rng = np.random.default_rng(8)
    labels = (rng.random(60) < 0.4).astype(int)
    scores = np.round(rng.random(60) + 0.3 * labels, 1)  # coarse: many ties, which count half
    counts = _stratified_counts(rng, labels.astype(bool), 20)
    assert (counts[:, labels == 1].sum(axis=1) == labels.sum()).all()  # stratified: class sizes kept
    vectorized = _weighted_auroc(labels.astype(bool), scores, counts)
    for row, value in zip(counts, vectorized, strict=True):
        drawn = np.repeat(np.arange(labels.size), row)
        assert value == pytest.approx(auroc(labels[drawn], scores[drawn]))


def test_mcnemar_p_matches_hand_computed_values() -> None:
    assert mcnemar_exact_p(0, 6) == pytest.approx(2 * 0.5**6)  # 0.03125
    assert mcnemar_exact_p(6, 0) == pytest.approx(0.03125)
    assert mcnemar_exact_p(1, 5) == pytest.approx(2 * (1 + 6) / 2**6)  # 0.21875
    assert mcnemar_exact_p(3, 3) == 1.0
    assert mcnemar_exact_p(0, 0) == 1.0


def test_a_test_split_with_one_class_is_refused_with_a_reason(splits) -> None:
    vy, vs, ty, ts = splits
    good = ty == 0
    decision = int8_gate(vy, vs, vs, ty[good], ts[good], ts[good], target_miss_rate=0.02)
    assert not decision.accepted
    assert decision.failed_criteria == ("auroc_undefined",)
    assert decision.auroc_loss is None and decision.auroc_loss_ci95 is None
    assert "AUROC undefined" in decision.reason and "n/a" in decision.reason


def test_decision_serializes_to_json(splits) -> None:
    vy, vs, ty, ts = splits
    data = int8_gate(vy, vs, vs, ty, ts, ts, target_miss_rate=0.02).to_dict()
    restored = json.loads(json.dumps(data))
    assert restored["accepted"] is True and restored["failed_criteria"] == []
    assert len(restored["auroc_loss_ci95"]) == 2 and len(restored["int8_miss_rate_ci95"]) == 2
    assert restored["n_test"] == ty.size == restored["n_test_defect"] + restored["n_test_good"]
