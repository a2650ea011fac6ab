"""The INT8 acceptance gate: a paired comparison of quantized and fp32 scores on the same test images.

Two questions, both asked of the same test images so that image-to-image variation cancels out:

- Does INT8 rank as well? The AUROC loss (fp32 - INT8) with a paired, label-stratified bootstrap 95 % interval;
  accepted only if the interval's upper bound is at most `max_auroc_loss`.
- Does INT8 give the same verdicts? Each model gets its own threshold re-derived on validation with the product's
  target miss rate (INT8 shifts scores slightly, so reusing the fp32 threshold would judge a well-ranked model
  unfairly); on the test split the verdicts that flip must be few (at most `max_flip_fraction` of the frames) and
  must not lean one way (McNemar's exact test on the discordant pairs not significant at `alpha`).

A fixed tolerance on the test miss rate refused INT8 on ELPV for one missed defect in 164, which that split
cannot resolve; the miss and false-detection rates are still reported, with Wilson intervals, as evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import binomtest

from inspection.metrics import RateEstimate, auroc, false_detection_rate, miss_rate
from inspection.operating_curve import CalibrationTarget
from training.calibration import calibrate_to_target

DEFAULT_MAX_AUROC_LOSS = 0.005  # upper bound of the 95 % interval of fp32 AUROC - INT8 AUROC
DEFAULT_ALPHA = 0.05  # McNemar's exact test on the flipped verdicts must not be significant at this level
DEFAULT_MAX_FLIP_FRACTION = 0.01  # at most 1 % of the test frames may change verdict
DEFAULT_BOOTSTRAP_RESAMPLES = 2000

_BOOTSTRAP_CHUNK = 256  # resamples per vectorized block: bounds memory to chunk x n counts


@dataclass(frozen=True)
class Int8Decision:
    """Whether INT8 may serve, why (one readable line), and every number the decision rests on."""

    accepted: bool
    reason: str
    failed_criteria: tuple[str, ...]  # "auroc_undefined", "auroc_loss", "flip_fraction", "mcnemar"; empty if accepted
    n_test: int
    n_test_defect: int
    n_test_good: int
    fp32_auroc: float | None
    int8_auroc: float | None
    auroc_loss: float | None  # fp32 - INT8: positive when INT8 ranks worse
    auroc_loss_ci95: tuple[float, float] | None  # paired bootstrap percentile interval
    max_auroc_loss: float
    n_bootstrap: int
    fp32_threshold: float
    int8_threshold: float
    flips_fp32_flags_int8_passes: int
    flips_fp32_passes_int8_flags: int
    flip_fraction: float
    max_flip_fraction: float
    mcnemar_p: float
    alpha: float
    fp32_miss_rate: float | None
    int8_miss_rate: float | None
    fp32_miss_rate_ci95: tuple[float, float]
    int8_miss_rate_ci95: tuple[float, float]
    fp32_false_detection_rate: float | None
    int8_false_detection_rate: float | None
    fp32_false_detection_rate_ci95: tuple[float, float]
    int8_false_detection_rate_ci95: tuple[float, float]

    @property
    def flips(self) -> int:
        """Test frames whose verdict differs between the two models, either way."""
        return self.flips_fp32_flags_int8_passes + self.flips_fp32_passes_int8_flags

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: intervals as [low, high] lists, everything else a number, string, bool or null."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def mcnemar_exact_p(n_fp32_only: int, n_int8_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs against p = 0.5; 1.0 with none."""
    if n_fp32_only < 0 or n_int8_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {n_fp32_only} and {n_int8_only}")
    n = n_fp32_only + n_int8_only
    if n == 0:
        return 1.0
    return float(binomtest(n_fp32_only, n, 0.5, alternative="two-sided").pvalue)


def _stratified_counts(rng: np.random.Generator, defect: np.ndarray, n_resamples: int) -> np.ndarray:
    """(n_resamples, n) how often each image is drawn, resampling defective and good images separately."""
    n = defect.size
    row_offset = np.arange(n_resamples)[:, None] * n  # index into the flattened (n_resamples, n) table
    draws = [
        (members[rng.integers(0, members.size, size=(n_resamples, members.size))] + row_offset).ravel()
        for members in (np.flatnonzero(defect), np.flatnonzero(~defect))
    ]
    counts = np.bincount(np.concatenate(draws), minlength=n_resamples * n)
    return counts.reshape(n_resamples, n)


def _weighted_auroc(defect: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC of every resample at once (Mann-Whitney U, ties count half); `counts` weighs each image per row."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # one run per distinct score
    weights = counts[:, order]
    is_defect = defect[order]
    # Per resample, how many good / defective draws carry each distinct score (ascending).
    good = np.add.reduceat(np.where(is_defect, 0, weights), starts, axis=1)
    bad = np.add.reduceat(np.where(is_defect, weights, 0), starts, axis=1)
    good_below = np.cumsum(good, axis=1) - good
    u = (bad * (good_below + 0.5 * good)).sum(axis=1)
    return u / (bad.sum(axis=1) * good.sum(axis=1))


def paired_bootstrap_auroc_loss(
    labels: np.ndarray,
    reference: np.ndarray,
    candidate: np.ndarray,
    n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """AUROC(reference) - AUROC(candidate) on `n_resamples` label-stratified resamples of the same images."""
    defect = np.asarray(labels).astype(bool).ravel()
    reference, candidate = np.asarray(reference, float).ravel(), np.asarray(candidate, float).ravel()
    if not (defect.size == reference.size == candidate.size):
        raise ValueError(f"labels and scores differ in length: {defect.size}, {reference.size}, {candidate.size}")
    if defect.all() or not defect.any():
        raise ValueError("the bootstrap needs both defective and good images")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    losses = []
    for start in range(0, n_resamples, _BOOTSTRAP_CHUNK):
        counts = _stratified_counts(rng, defect, min(_BOOTSTRAP_CHUNK, n_resamples - start))
        # The same counts for both models: that pairing is what cancels the image-to-image variation.
        losses.append(_weighted_auroc(defect, reference, counts) - _weighted_auroc(defect, candidate, counts))
    return np.concatenate(losses)


def _verdict_flips(
    test_labels: np.ndarray, test_fp32: np.ndarray, test_int8: np.ndarray, fp32_threshold: float, int8_threshold: float
) -> tuple[int, int]:
    fp32_flags = test_fp32 >= fp32_threshold
    int8_flags = test_int8 >= int8_threshold
    return int((fp32_flags & ~int8_flags).sum()), int((~fp32_flags & int8_flags).sum())


def int8_gate(
    val_labels: np.ndarray,
    val_fp32: np.ndarray,
    val_int8: np.ndarray,
    test_labels: np.ndarray,
    test_fp32: np.ndarray,
    test_int8: np.ndarray,
    target_miss_rate: float | None,
    *,
    target_false_detection_rate: float | None = None,
    max_auroc_loss: float = DEFAULT_MAX_AUROC_LOSS,
    alpha: float = DEFAULT_ALPHA,
    max_flip_fraction: float = DEFAULT_MAX_FLIP_FRACTION,
    n_bootstrap: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Int8Decision:
    """Accept INT8 only if its paired AUROC loss is bounded and its verdicts at the operating point rarely flip."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    test_y = np.asarray(test_labels).ravel()
    test_fp32, test_int8 = np.asarray(test_fp32, float).ravel(), np.asarray(test_int8, float).ravel()
    if not (test_y.size == test_fp32.size == test_int8.size):
        raise ValueError(f"test labels and scores differ in length: {test_y.size}, {test_fp32.size}, {test_int8.size}")

    target = CalibrationTarget.from_fields(target_miss_rate, target_false_detection_rate)
    fp32_threshold = calibrate_to_target(val_labels, val_fp32, target).threshold
    int8_threshold = calibrate_to_target(val_labels, val_int8, target).threshold
    rates = [
        rate(test_y, scores, threshold)
        for rate in (miss_rate, false_detection_rate)
        for scores, threshold in ((test_fp32, fp32_threshold), (test_int8, int8_threshold))
    ]
    fp32_miss, int8_miss, fp32_fdr, int8_fdr = rates
    fp32_flags_only, int8_flags_only = _verdict_flips(test_y, test_fp32, test_int8, fp32_threshold, int8_threshold)
    n_test = int(test_y.size)
    flip_fraction = (fp32_flags_only + int8_flags_only) / n_test if n_test else 0.0
    mcnemar_p = mcnemar_exact_p(fp32_flags_only, int8_flags_only)

    fp32_auroc, int8_auroc = auroc(test_y, test_fp32), auroc(test_y, test_int8)
    failed: list[str] = []
    loss: float | None = None
    ci95: tuple[float, float] | None = None
    if fp32_auroc is None or int8_auroc is None:
        failed.append("auroc_undefined")
    else:
        loss = fp32_auroc - int8_auroc
        losses = paired_bootstrap_auroc_loss(test_y, test_fp32, test_int8, n_bootstrap, seed)
        low, high = np.percentile(losses, [2.5, 97.5])
        ci95 = (float(low), float(high))
        if ci95[1] > max_auroc_loss + 1e-12:
            failed.append("auroc_loss")
    if flip_fraction > max_flip_fraction + 1e-12:
        failed.append("flip_fraction")
    if mcnemar_p < alpha:
        failed.append("mcnemar")

    decision = Int8Decision(
        accepted=not failed,
        reason="",
        failed_criteria=tuple(failed),
        n_test=n_test,
        n_test_defect=fp32_miss.n,
        n_test_good=fp32_fdr.n,
        fp32_auroc=fp32_auroc,
        int8_auroc=int8_auroc,
        auroc_loss=loss,
        auroc_loss_ci95=ci95,
        max_auroc_loss=max_auroc_loss,
        n_bootstrap=n_bootstrap,
        fp32_threshold=fp32_threshold,
        int8_threshold=int8_threshold,
        flips_fp32_flags_int8_passes=fp32_flags_only,
        flips_fp32_passes_int8_flags=int8_flags_only,
        flip_fraction=flip_fraction,
        max_flip_fraction=max_flip_fraction,
        mcnemar_p=mcnemar_p,
        alpha=alpha,
        fp32_miss_rate=fp32_miss.rate,
        int8_miss_rate=int8_miss.rate,
        fp32_miss_rate_ci95=fp32_miss.ci95,
        int8_miss_rate_ci95=int8_miss.ci95,
        fp32_false_detection_rate=fp32_fdr.rate,
        int8_false_detection_rate=int8_fdr.rate,
        fp32_false_detection_rate_ci95=fp32_fdr.ci95,
        int8_false_detection_rate_ci95=int8_fdr.ci95,
    )
    return _with_reason(decision, (fp32_miss, int8_miss, fp32_fdr, int8_fdr))


_FAILURE_TEXT = {
    "auroc_undefined": "AUROC undefined: the test split lacks defective or good images",
    "auroc_loss": "AUROC loss interval above the limit",
    "flip_fraction": "too many verdicts flip",
    "mcnemar": "the flipped verdicts lean one way (McNemar)",
}


def _with_reason(decision: Int8Decision, rates: tuple[RateEstimate, ...]) -> Int8Decision:
    d = decision
    verdict = "accepted" if d.accepted else "refused (" + "; ".join(_FAILURE_TEXT[c] for c in d.failed_criteria) + ")"
    if d.auroc_loss is None or d.auroc_loss_ci95 is None:
        ranking = f"test AUROC INT8 {_num(d.int8_auroc)} vs fp32 {_num(d.fp32_auroc)}"
    else:
        low, high = d.auroc_loss_ci95
        ranking = (
            f"test AUROC INT8 {d.int8_auroc:.4f} vs fp32 {d.fp32_auroc:.4f}, loss {d.auroc_loss:+.4f} "
            f"(95% CI {low:+.4f} to {high:+.4f}, limit {d.max_auroc_loss:.4f})"
        )
    fp32_miss, int8_miss, fp32_fdr, int8_fdr = rates
    reason = (
        f"INT8 {verdict}{'' if d.accepted else ', serving fp32'}: {ranking}; "
        f"verdicts flip on {d.flips} of {d.n_test} frames ({100 * d.flip_fraction:.2f}%, limit "
        f"{100 * d.max_flip_fraction:.2f}%; {d.flips_fp32_flags_int8_passes} newly passed, "
        f"{d.flips_fp32_passes_int8_flags} newly flagged, McNemar p = {d.mcnemar_p:.3g}, alpha {d.alpha:g}); "
        f"miss rate INT8 {_rate(int8_miss)} vs fp32 {_rate(fp32_miss)}, "
        f"false-detection rate INT8 {_rate(int8_fdr)} vs fp32 {_rate(fp32_fdr)}"
    )
    return replace(d, reason=reason)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _rate(estimate: RateEstimate) -> str:
    if estimate.rate is None:
        return "n/a (0 images)"
    low, high = estimate.ci95
    return f"{100 * estimate.rate:.2f}% ({estimate.k}/{estimate.n}, 95% CI {100 * low:.1f}-{100 * high:.1f}%)"
