"""Moving a version's served threshold: QA's choice on validation evidence, recorded in the registry.

Training calibrates a threshold to the product's target and writes every validation and test part's served
score (`evaluation/served_scores.json`); an export whose INT8 file is accepted writes that file's own scores beside
it, and those are the evidence while it serves (models/serving_choice.py reads them). `inspection models threshold`
picks a new served threshold from those validation scores with the calibration's own rules
(inspection.operating_curve), refuses a target the validation split is too small to support, shows what the move
costs on validation and on the frozen test split, and records it as version tags: `served_threshold`,
`threshold_set_at` (UTC), `threshold_set_by`, `threshold_reason`, `threshold_rule`, and `threshold_log` (a JSON
list of every change, newest last, bounded like the promotion log). Every replica's model watcher reads
`served_threshold` at its next poll and scores with it; without the tag a version serves the threshold baked into
its ONNX file.

An export that changes the served file (an INT8 file accepted, or fp32 back in its place) changes the scores a
threshold applies to. QA's choice then keeps its meaning: a rate rule is applied again to the new file's validation
scores and the move is recorded (`follow_the_served_file`); a threshold given as a value stays, with what it now
means said. Each QA threshold names the file it was chosen on (`threshold_file`: the file's name and content
digest), and a replica applies it only to that file: one that polls after an export put a new file in place but
before the threshold followed it serves the new file at the new file's own threshold, never at one chosen on
another file's scores.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inspection.errors import InspectionError
from inspection.operating_curve import TargetMetric, threshold_for_target, unsupported_target
from inspection.settings import Settings
from models import registry
from models.artifacts import INT8_SERVED_SCORES_FILE
from models.promotion import LOG_REASON_CHARS, MAX_REASON_CHARS, MAX_TAG_BYTES, registry_lock
from models.serving_choice import (
    FILE_TAG,
    REASON_TAG,
    RULE_TAG,
    SET_AT_TAG,
    SET_BY_TAG,
    THRESHOLD_TAG,
    ServedThreshold,
    current_file_identity,
    current_threshold,
    read_served_scores,
    served_evidence_path,
    tagged_threshold,
)

EXPORT_ACTOR = "inspection export"  # who a threshold move is recorded as when an export re-applies QA's rule
LOG_TAG = "threshold_log"

log = logging.getLogger(__name__)


class ThresholdRefused(InspectionError):  # noqa: N818 (reads as the outcome at call sites)
    """The request cannot be served on evidence (validation too small, no recorded scores, bad input)."""


@dataclass(frozen=True)
class ThresholdRequest:
    """Exactly one of: a validation miss rate, a validation false-detection budget, or a served threshold."""

    miss_rate: float | None = None
    false_detection_rate: float | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.miss_rate, self.false_detection_rate, self.value) if x is not None]
        if len(given) != 1:
            raise ThresholdRefused("give exactly one of --miss-rate, --false-detection-rate and --value")
        for name, rate in (("--miss-rate", self.miss_rate), ("--false-detection-rate", self.false_detection_rate)):
            if rate is not None and not 0.0 <= rate < 1.0:
                raise ThresholdRefused(f"{name} is a fraction in [0, 1), e.g. 0.05 for 5%; got {rate}")
        if self.value is not None and not 0.0 < self.value < 1.0:
            raise ThresholdRefused(f"--value is a served probability threshold in (0, 1); got {self.value}")

    @property
    def target(self) -> tuple[TargetMetric, float] | None:
        """(metric, rate) for a rate request, None for --value."""
        if self.miss_rate is not None:
            return "miss_rate", self.miss_rate
        if self.false_detection_rate is not None:
            return "false_detection_rate", self.false_detection_rate
        return None

    @property
    def rule(self) -> str:
        """The recorded rule: 'miss_rate<=0.05', 'false_detection_rate<=0.1' or 'value'."""
        target = self.target
        return "value" if target is None else f"{target[0]}<={target[1]:g}"

    @classmethod
    def from_rule(cls, rule: str) -> ThresholdRequest | None:
        """The rate request a recorded rule stands for ('miss_rate<=0.05'), or None ('value', or unreadable)."""
        metric, _, rate = rule.partition("<=")
        try:
            if metric == "miss_rate":
                return cls(miss_rate=float(rate))
            if metric == "false_detection_rate":
                return cls(false_detection_rate=float(rate))
        except (ValueError, ThresholdRefused):
            log.warning("ignoring unreadable threshold rule %r", rule)
        return None

    def describe(self) -> str:
        target = self.target
        if target is None:
            return f"the served threshold {self.value:g}, as given"
        if target[0] == "miss_rate":
            return f"the highest threshold whose validation miss rate is <= {100 * target[1]:.2f}%"
        return f"the lowest threshold whose validation false-detection rate is <= {100 * target[1]:.2f}%"


@dataclass(frozen=True)
class ThresholdPlan:
    """A requested served threshold with its evidence: both splits' points at the current and the new threshold."""

    product: str
    version: int
    request: ThresholdRequest
    current: ServedThreshold
    threshold: float
    validation: dict[str, dict[str, Any]]  # "current" / "new" -> curve point
    test: dict[str, dict[str, Any]]


def plan_threshold(
    settings: Settings, product: str, request: ThresholdRequest, version: int | None = None
) -> ThresholdPlan:
    """Choose the served threshold `request` asks for on the version's validation scores (default: the
    champion); ThresholdRefused when the validation split cannot support it."""
    info = registry.resolve_version(settings, product, version)
    scores = read_served_scores(info)
    if scores is None:
        if served_evidence_path(info.artifacts).name == INT8_SERVED_SCORES_FILE:
            raise ThresholdRefused(
                f"{product} v{info.version} serves an INT8 file whose validation scores were not recorded (exported "
                f"before they were), so a threshold cannot be chosen on its evidence; re-export it with `inspection "
                f"export {product} --version {info.version} --int8`"
            )
        raise ThresholdRefused(
            f"{product} v{info.version} has no recorded validation scores (evaluation/served_scores.json: it was "
            f"trained before operating curves were recorded), so a threshold cannot be chosen on evidence; retrain "
            f"it with `inspection train {product}`"
        )
    current = current_threshold(info, scores)
    assert current is not None  # the served scores carry the calibrated threshold
    target = request.target
    if target is None:
        threshold = float(request.value)  # type: ignore[arg-type]
    else:
        metric, rate = target
        n = scores.validation.n_defect if metric == "miss_rate" else scores.validation.n_good
        problem = unsupported_target(metric, rate, n)
        if problem is not None:
            raise ThresholdRefused(f"refusing to set {product} v{info.version}'s threshold: {problem}; nothing changed")
        threshold = threshold_for_target(scores.validation.labels, scores.validation.scores, metric, rate)
    return ThresholdPlan(
        product,
        info.version,
        request,
        current,
        threshold,
        {"current": scores.validation.point(current.value), "new": scores.validation.point(threshold)},
        {"current": scores.test.point(current.value), "new": scores.test.point(threshold)},
    )


def threshold_log(info: registry.ModelVersionInfo) -> list[dict[str, Any]]:
    """Every recorded threshold change of a version, oldest first (the oldest drop off to fit the tag size)."""
    try:
        entries = json.loads(info.tags.get(LOG_TAG, "[]"))
    except ValueError:
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def record_threshold(settings: Settings, plan: ThresholdPlan, reason: str, by: str) -> dict[str, Any]:
    """Record the planned threshold as the version's tags (serving follows at its next poll); returns the log
    entry. Refuses a missing or overlong reason before writing anything."""
    reason = (reason or "").strip()
    if not reason:
        raise ThresholdRefused("--reason is required: say why the served threshold moves; it is recorded")
    if len(reason) > MAX_REASON_CHARS:
        raise ThresholdRefused(f"the reason is {len(reason)} characters; keep it under {MAX_REASON_CHARS}")
    by = (by or "").strip() or "unknown"
    with registry_lock(settings, plan.product):
        info = registry.resolve_version(settings, plan.product, plan.version)
        before = tagged_threshold(info.tags)
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": by,
            "from": before if before is not None else plan.current.value,
            "to": plan.threshold,
            "rule": plan.request.rule,
            "reason": reason[:LOG_REASON_CHARS],
        }
        history = [*threshold_log(info), entry]
        while len(history) > 1 and len(json.dumps(history).encode()) > MAX_TAG_BYTES:
            history.pop(0)
        # The threshold after its who / when / why, so a reader that sees it sees them too; the file it was chosen
        # on last (FILE_TAG says why).
        tags: dict[str, str] = {
            SET_AT_TAG: str(entry["at"]),
            SET_BY_TAG: by,
            REASON_TAG: reason,
            RULE_TAG: plan.request.rule,
            LOG_TAG: json.dumps(history),
            THRESHOLD_TAG: repr(float(plan.threshold)),
            FILE_TAG: current_file_identity(info),
        }
        registry.set_version_tags(settings, plan.product, plan.version, tags)
    return entry


def follow_the_served_file(settings: Settings, product: str, version: int, served_as: str) -> str | None:
    """After an export of `version` (now served as `served_as`, 'fp32' or 'int8'), keep QA's threshold meaning
    what QA chose on the file that now serves. A rate rule is applied again to that file's validation scores and
    the move recorded, by EXPORT_ACTOR; a threshold given as a value stays. Either way the threshold then names the
    new file (FILE_TAG), which replicas wait for before applying it. Returns what happened, for the export's
    output, or None when QA never set a threshold or the rule gives the same one (the same file)."""
    info = registry.resolve_version(settings, product, version)
    before = tagged_threshold(info.tags)
    if before is None:
        return None
    note, recorded = _threshold_on_the_new_file(settings, info, before, served_as)
    if not recorded:  # QA's threshold stays as it was: now on the new file
        registry.set_version_tags(settings, product, version, {FILE_TAG: current_file_identity(info)})
    return note


def _threshold_on_the_new_file(
    settings: Settings, info: registry.ModelVersionInfo, before: float, served_as: str
) -> tuple[str | None, bool]:
    """follow_the_served_file's decision about QA's threshold `before`: (what happened, whether a new threshold
    was recorded)."""
    product, version = info.product, info.version
    rule = info.tags.get(RULE_TAG, "value")
    scores = read_served_scores(info)
    if scores is None:
        return (
            f"QA's served threshold {before:g} ({rule}) stays, unchecked: the {served_as} file's validation scores "
            f"could not be read"
        ), False
    request = ThresholdRequest.from_rule(rule)
    if request is None:
        point = scores.validation.point(before)
        missed, flagged = 100 * point["miss_rate"], 100 * point["false_detection_rate"]
        return (
            f"QA's served threshold {before:g} was given as a value and stays; on the {served_as} file's validation "
            f"scores it misses {missed:.1f}% of defects and flags {flagged:.1f}% of good parts. Move it with "
            f"`inspection models threshold {product} --version {version}`"
        ), False
    try:
        plan = plan_threshold(settings, product, request, version)
    except ThresholdRefused as exc:
        return f"QA's served threshold {before:g} stays: its rule {rule} could not be applied again ({exc})", False
    if plan.threshold == before:
        return None, False
    record_threshold(
        settings,
        plan,
        f"export: QA's rule {rule} applied again to the {served_as} file's validation scores",
        EXPORT_ACTOR,
    )
    return (
        f"QA's rule {rule} applied again to the {served_as} file's validation scores: served threshold "
        f"{before:g} -> {plan.threshold:g} (recorded by '{EXPORT_ACTOR}')"
    ), True
