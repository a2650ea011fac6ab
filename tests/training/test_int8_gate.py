"""The INT8 gate on constructed score sets: small quantization noise passes, a real shift or a tight tolerance fails."""

from __future__ import annotations

import numpy as np

from training.int8_gate import int8_gate


def _scores(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.clip(rng.beta(2, 5, n) + 0.45 * labels, 0, 1)
    return labels, scores


def test_quantization_noise_within_tolerance_is_accepted() -> None:
    (vy, vs), (ty, ts) = _scores(1), _scores(2)
    noise = np.random.default_rng(3)
    vq, tq = vs + noise.normal(0, 1e-4, vs.shape), ts + noise.normal(0, 1e-4, ts.shape)
    decision = int8_gate(vy, vs, vq, ty, ts, tq, target_miss_rate=0.02)
    assert decision.accepted, decision.reason
    assert "accepted" in decision.reason


def test_a_degraded_model_is_refused() -> None:
    (vy, vs), (ty, ts) = _scores(1), _scores(2)
    noise = np.random.default_rng(3)
    # Ranking damage, not a monotone shift: re-derived thresholds cannot hide it.
    vq, tq = vs + noise.normal(0, 0.08, vs.shape), ts + noise.normal(0, 0.08, ts.shape)
    decision = int8_gate(vy, vs, vq, ty, ts, tq, target_miss_rate=0.02)
    assert not decision.accepted
    assert "refused" in decision.reason


def test_impossibly_tight_tolerance_refuses_even_small_noise() -> None:
    (vy, vs), (ty, ts) = _scores(1), _scores(2)
    noise = np.random.default_rng(4)
    vq, tq = vs + noise.normal(0, 0.01, vs.shape), ts + noise.normal(0, 0.01, ts.shape)
    assert int8_gate(vy, vs, vq, ty, ts, tq, 0.02, tolerance=0.05).accepted
    assert not int8_gate(vy, vs, vq, ty, ts, tq, 0.02, tolerance=0.0).accepted


def test_monotone_score_shift_is_absorbed_by_recalibration() -> None:
    (vy, vs), (ty, ts) = _scores(1), _scores(2)
    decision = int8_gate(vy, vs, vs * 0.9, ty, ts, ts * 0.9, target_miss_rate=0.02)
    assert decision.accepted
    assert decision.int8_threshold < decision.fp32_threshold
