"""The evaluation report of DESIGN.md as a typed model; its JSON (`to_json`) is the stable contract.

Training writes it for every version, `inspection evaluate --json` prints it, promotion and the model card read
it back with `EvaluationReport.from_json`. Rates are fractions in [0, 1]; intervals are Wilson 95%. Kind-specific
blocks (`anomaly`, `hybrid`, `components`) live in `extras` and appear at the top level of the JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Interval = tuple[float | None, float | None]
# Left out of the JSON when unset, so a report keeps the shape it always had (no pixel keys without masks).
OPTIONAL_KEYS = ("kind", "calibration", "training", "target_false_detection_rate", "operating_curve")
OPTIONAL_RATE_KEYS = ("pixel_auroc", "pro", "n_pixel_images")


class _Block(BaseModel):
    # Reports written by older versions may carry keys this one does not know; they are kept, not refused.
    model_config = ConfigDict(extra="allow")


class DefectTypeRates(_Block):
    n: int
    n_missed: int
    miss_rate: float | None
    miss_rate_ci95: Interval
    type_accuracy: float | None = None


class BinaryCounts(_Block):
    true_defect_flagged: int
    true_defect_passed: int
    true_good_flagged: int
    true_good_passed: int


class ConfusionMatrix(_Block):
    classes: list[str]
    matrix: list[list[int]]
    binary: BinaryCounts


class RatesBlock(_Block):
    """The figures of one labeled image set at the served threshold (the report's `test` block)."""

    n_good: int
    n_defect: int
    miss_rate: float | None
    miss_rate_ci95: Interval
    n_missed: int
    false_detection_rate: float | None
    false_detection_rate_ci95: Interval
    n_false_detections: int
    auroc: float | None
    accuracy: float | None
    per_defect_type: dict[str, DefectTypeRates]
    confusion_matrix: ConfusionMatrix
    # Only when the model gives maps and the data has masks.
    pixel_auroc: float | None = None
    pro: float | None = None
    n_pixel_images: int | None = None


class RecentBlock(RatesBlock):
    """The same figures on the recent slice (QA-reviewed line frames held out of training)."""

    data: str


class OperatingPoint(_Block):
    threshold: float
    miss_rate: float | None
    miss_rate_ci95: Interval
    false_detection_rate: float | None
    false_detection_rate_ci95: Interval
    accuracy: float | None


class CurvePoint(_Block):
    """One threshold of the trade-off curve: both rates with Wilson 95% intervals, their counts and sample sizes."""

    threshold: float
    miss_rate: float | None
    miss_rate_ci95: Interval
    n_missed: int
    n_defect: int
    false_detection_rate: float | None
    false_detection_rate_ci95: Interval
    n_false_detections: int
    n_good: int


class OperatingCurve(_Block):
    """Miss rate against false-detection rate at every threshold (thinned), in served units: the number the
    server compares a part's `defect_probability` with. `threshold` is the version's calibrated served
    threshold; each list holds its point."""

    units: str = "served defect_probability"
    threshold: float
    validation: list[CurvePoint] | None = None  # None when the report was not made by training
    test: list[CurvePoint]


class EvaluationReport(BaseModel):
    """One model version measured on one labeled image set (by default its frozen test split)."""

    model_config = ConfigDict(extra="forbid")

    product: str
    model_version: int | str | None
    threshold: float
    target_miss_rate: float | None  # None when the calibration target is a false-detection budget
    data: str
    test: RatesBlock
    operating_points: dict[str, OperatingPoint] = Field(default_factory=dict)
    target_false_detection_rate: float | None = None
    operating_curve: OperatingCurve | None = None
    kind: str | None = None
    calibration: dict[str, Any] | None = None
    recent_line_data: RecentBlock | None = None
    training: dict[str, Any] | None = None
    extras: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as the JSON object of DESIGN.md (extras at the top level)."""
        data = self.model_dump(mode="json", exclude={"extras"})
        for key in OPTIONAL_KEYS:
            if data.get(key) is None:
                data.pop(key, None)
        for block in (data["test"], data.get("recent_line_data") or {}):
            for key in OPTIONAL_RATE_KEYS:
                if block.get(key) is None:
                    block.pop(key, None)
        return {**data, **self.extras}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvaluationReport:
        """Parse a report.json object (unknown top-level blocks go to `extras`); raises pydantic's ValidationError."""
        known = set(cls.model_fields) - {"extras"}
        return cls.model_validate(
            {
                **{k: v for k, v in data.items() if k in known},
                "extras": {k: v for k, v in data.items() if k not in known},
            }
        )
