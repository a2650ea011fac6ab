"""The demo's last step: QA moves the line's operating point on evidence, and the live rates move with it.

The first pass runs at training's calibrated threshold (the product's target miss rate), which on ELPV flags about
four good cells in ten: the price of missing almost no defect on these labels. QA answers as a plant would, with
a false-detection budget: the lowest threshold whose validation false-detection rate stays within it, shown with
what it costs on validation and test, recorded with who and why (what `inspection models threshold` does), and
applied by the server at its next registry poll. The held-out frames then pass the line again, and the rates
estimated from QA's audit say what the move bought and what it cost.
"""

from __future__ import annotations

import time

import httpx

from cli.common import console
from cli.models import threshold_table
from inspection.errors import InspectionError
from inspection.settings import Settings
from models import registry
from models.serving_choice import calibrated_served_threshold, current_threshold, read_served_scores
from models.threshold_moves import ThresholdPlan, ThresholdRefused, ThresholdRequest, plan_threshold, record_threshold

DEMO_ACTOR = "inspection demo"  # who the threshold log says moved it
DEFAULT_FALSE_DETECTION_BUDGET = 0.10  # the ELPV goals' operating point (docs/elpv.md): at most one good part in ten
SERVED_WAIT_S = 60.0  # a few registry polls (5 s by default)


def first_operating_point(settings: Settings, product: str) -> str:
    """Where the first pass runs, named for its table: training's calibrated threshold, served again if an earlier
    demo left its own there (so every run shows the same two points; the move back is recorded like any other).
    A threshold a person set is theirs: the first pass runs at it."""
    calibration = "training's calibration"
    info = registry.champion(settings, product)
    if info is None:
        return calibration
    scores = read_served_scores(info)
    current, calibrated = current_threshold(info, scores), calibrated_served_threshold(info, scores)
    if current is None or current.source != "qa" or calibrated is None or current.value == calibrated:
        return calibration
    if current.set_by != DEMO_ACTOR:
        console.print(
            f"{product} serves QA's threshold {current.value:.4f} (set by {current.set_by}): the first pass runs at it"
        )
        return f"QA's threshold set by {current.set_by}"
    plan = plan_threshold(settings, product, ThresholdRequest(value=calibrated))
    record_threshold(settings, plan, "demo: each run starts at training's calibrated threshold", DEMO_ACTOR)
    console.print(f"an earlier demo left its threshold {current.value:.4f}: back to the calibrated {calibrated:.4f}")
    return calibration


def move_operating_point(settings: Settings, product: str, budget: float) -> ThresholdPlan | None:
    """Record the champion's threshold for a validation false-detection rate within `budget`, after showing what
    it costs; None (and why, printed) when the validation split cannot support the budget."""
    try:
        plan = plan_threshold(settings, product, ThresholdRequest(false_detection_rate=budget))
    except ThresholdRefused as refused:
        console.print(f"[yellow]QA cannot move the operating point:[/] {refused}")
        return None
    console.print(threshold_table(plan))
    reason = f"demo: a false-detection budget of {budget:.0%}, the point a plant can run; misses rise, as shown"
    record_threshold(settings, plan, reason, DEMO_ACTOR)
    console.print(
        f"recorded: {product} v{plan.version} serves {plan.threshold:.4f} from each server's next poll, and keeps it "
        f"after the demo (`inspection models threshold {product} --miss-rate R --reason ...` moves it again)",
        markup=False,
        highlight=False,
    )
    return plan


def served_threshold_now(url: str, key: str, product: str) -> float | None:
    """The threshold the server applies to `product`'s frames now (GET /v1/products)."""
    response = httpx.get(f"{url}/v1/products", headers={"X-API-Key": key}, timeout=30)
    response.raise_for_status()
    served = {entry["product"]: entry["threshold"] for entry in response.json()}
    return served.get(product)


def wait_until_served(url: str, key: str, product: str, threshold: float, timeout: float = SERVED_WAIT_S) -> None:
    """Block until the server applies `threshold` to `product` (its registry poll), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        served = served_threshold_now(url, key, product)
        if served is not None and abs(served - threshold) < 1e-9:
            return
        time.sleep(0.5)
    raise InspectionError(f"the server did not apply the threshold {threshold:.4f} within {timeout:.0f} s")
