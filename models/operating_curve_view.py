"""The product page's *Operating point* panel: the served version's frozen-test-split curve, its current point,
and what moving the threshold would cost (`GET /v1/products/{p}/operating-curve`). The threshold itself is chosen
and recorded in models/threshold_moves.py; this module only reads.
"""

from __future__ import annotations

import math
from typing import Any

from inspection.errors import InspectionError
from inspection.operating_curve import operating_curve, threshold_for_target, unsupported_target
from models import registry
from models.serving_choice import (
    ServedScores,
    calibrated_served_threshold,
    current_threshold,
    read_served_scores,
    report_curve,
)

# The rows of "what moving the threshold would cost": the thresholds these validation miss rates would give.
COST_MISS_RATES = (0.01, 0.02, 0.05, 0.10)


def cost_rows(scores: ServedScores, miss_rates: tuple[float, ...] = COST_MISS_RATES) -> list[dict[str, Any]]:
    """What moving the threshold would cost: for each validation miss-rate target, the threshold `inspection
    models threshold --miss-rate` would choose and its validation and test points, or why it would refuse."""
    rows = []
    val = scores.validation
    for rate in miss_rates:
        problem = unsupported_target("miss_rate", rate, val.n_defect)
        if problem is not None:
            # The rule's minimum: one expected miss among the validation defects (n x R >= 1).
            rows.append({"target_miss_rate": rate, "refused": problem, "needs_defects": math.ceil(1 / rate - 1e-9)})
            continue
        threshold = threshold_for_target(val.labels, val.scores, "miss_rate", rate)
        rows.append(
            {
                "target_miss_rate": rate,
                "threshold": threshold,
                "validation": val.point(threshold),
                "test": scores.test.point(threshold),
            }
        )
    return rows


def operating_curve_view(info: registry.ModelVersionInfo, serving: float | None = None) -> dict[str, Any]:
    """The version's frozen-test-split curve in served units with its point at `serving` (the threshold a
    server applies; default: the version's served threshold) and the cost table; InspectionError when the
    version recorded no curve."""
    scores = read_served_scores(info)
    current = current_threshold(info, scores)
    threshold = serving if serving is not None else (current.value if current is not None else None)
    view: dict[str, Any] = {
        "product": info.product,
        "model_version": info.version,
        "split": "test",
        "units": "served defect_probability",
        "threshold": threshold,
        "calibrated_threshold": calibrated_served_threshold(info, scores),
        "threshold_set": None if current is None or current.source != "qa" else current.to_dict(),
    }
    if scores is not None:
        test = scores.test
        keep = [] if threshold is None else [threshold]
        curve = operating_curve(test.labels, test.scores, keep=keep)
        current_points = (
            None
            if threshold is None
            else {"validation": scores.validation.point(threshold), "test": test.point(threshold)}
        )
        return {
            **view,
            "n_defect": test.n_defect,
            "n_good": test.n_good,
            "n_validation_defect": scores.validation.n_defect,
            "n_validation_good": scores.validation.n_good,
            "curve": curve,
            "current": current_points,
            "costs": cost_rows(scores),
        }
    recorded = report_curve(info)
    if recorded is None:
        raise InspectionError(
            f"{info.product} v{info.version} has no operating curve (trained before curves were recorded)"
        )
    curve = [p.model_dump(mode="json") for p in recorded.test]
    first = curve[0] if curve else {"n_defect": 0, "n_good": 0}
    return {
        **view,
        "n_defect": first["n_defect"],
        "n_good": first["n_good"],
        "curve": curve,
        "current": None,
        "costs": [],
    }
