"""`inspection models threshold`: a served threshold chosen on validation evidence, refused when validation
cannot support it, recorded with who, when and why."""

from __future__ import annotations

import getpass
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from inspection.operating_curve import (
    point_at,
    threshold_for_false_detection_rate,
    threshold_for_miss_rate,
    unsupported_target,
)
from inspection.settings import Settings
from models import registry
from models.artifacts import INT8_FILE, onnx_dir
from models.serving_choice import THRESHOLD_TAG, read_served_scores
from models.threshold_moves import (
    EXPORT_ACTOR,
    LOG_TAG,
    ThresholdRefused,
    ThresholdRequest,
    plan_threshold,
    record_threshold,
)
from tests.cli.cli_runner import assert_clean_error, run_cli
from tools.home_copy import copy_home

pytestmark = pytest.mark.slow

THRESHOLD_TAGS = {THRESHOLD_TAG, "threshold_set_at", "threshold_set_by", "threshold_reason", "threshold_rule", LOG_TAG}


@pytest.fixture
def home(trained_product, tmp_path: Path) -> Settings:
    """A private copy of the trained home, so the tags written here stay here."""
    settings = trained_product.settings.model_copy(update={"home": tmp_path / "var"})
    copy_home(trained_product.settings, settings)
    return settings


def _tags(settings: Settings, product: str) -> dict[str, str]:
    return registry.resolve_version(settings, product, 1).tags


def test_requests_validation_cannot_support_are_refused_and_record_nothing(home: Settings, trained_product) -> None:
    product = trained_product.product
    scores = read_served_scores(registry.resolve_version(home, product, 1))
    assert scores is not None
    n_defect, n_good = scores.validation.n_defect, scores.validation.n_good
    # Half an expected miss among the validation defects: the smallest miss rate it can see is 1/n, above the ask.
    too_small = round(0.5 / n_defect, 4)
    refused = run_cli(home, "models", "threshold", product, "--miss-rate", str(too_small), "--reason", "tighter")
    assert_clean_error(refused, f"the validation split has {n_defect} defective images")
    assert "nothing changed" in refused.stderr + refused.stdout
    no_reason = run_cli(home, "models", "threshold", product, "--false-detection-rate", "0.2")
    assert_clean_error(no_reason, "--reason is required")
    assert not THRESHOLD_TAGS & set(_tags(home, product)), "a refused request must record nothing"
    # The same rule for false detections and good parts; and the request itself must be one clear thing.
    with pytest.raises(ThresholdRefused, match=f"{n_good} good images"):
        plan_threshold(home, product, ThresholdRequest(false_detection_rate=0.5 / n_good))
    for bad in ({"miss_rate": 0.1, "value": 0.5}, {}, {"value": 1.5}, {"miss_rate": 1.0}):
        with pytest.raises(ThresholdRefused):
            ThresholdRequest(**bad)
    assert unsupported_target("miss_rate", 0.01, 20) is not None  # docs/operating-point.md: 1% with 20 defects


def test_a_budget_then_a_miss_rate_are_recorded_with_who_when_and_why(home: Settings, trained_product) -> None:
    product = trained_product.product
    scores = read_served_scores(registry.resolve_version(home, product, 1))
    assert scores is not None
    val = scores.validation
    budget = 0.2
    expected = threshold_for_false_detection_rate(val.labels, val.scores, budget)

    dry = run_cli(home, "models", "threshold", product, "--false-detection-rate", str(budget), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing recorded" in dry.stdout and not THRESHOLD_TAGS & set(_tags(home, product))

    started = datetime.now(UTC).replace(microsecond=0)
    done = run_cli(
        home,
        "models",
        "threshold",
        product,
        "--false-detection-rate",
        str(budget),
        "--reason",
        "line 2 rejects too many good parts",
        "--by",
        "alice",
    )
    assert done.returncode == 0, done.stderr
    tags = _tags(home, product)
    assert float(tags[THRESHOLD_TAG]) == expected
    assert (tags["threshold_set_by"], tags["threshold_reason"]) == ("alice", "line 2 rejects too many good parts")
    assert tags["threshold_rule"] == f"false_detection_rate<={budget:g}"
    assert started <= datetime.fromisoformat(tags["threshold_set_at"]) <= datetime.now(UTC)
    # What it costs, printed: the validation point at the new threshold is within the budget, with its interval.
    new = point_at(val.labels, val.scores, expected)
    assert new["false_detection_rate"] <= budget
    out = done.stdout
    assert "current (calibrated)" in out and "new" in out
    assert f"{new['n_false_detections']} of {new['n_good']}" in out
    assert "next registry poll" in out

    # A miss-rate target next, by the OS user: the log keeps both, each with where it moved from.
    target = 0.2
    assert unsupported_target("miss_rate", target, val.n_defect) is None
    again = run_cli(home, "models", "threshold", product, "--miss-rate", str(target), "--reason", "back to misses")
    assert again.returncode == 0, again.stderr
    assert "current (set by QA)" in again.stdout
    tags = _tags(home, product)
    moved = threshold_for_miss_rate(val.labels, val.scores, target)
    assert float(tags[THRESHOLD_TAG]) == moved and tags["threshold_set_by"] == getpass.getuser()
    log = json.loads(tags[LOG_TAG])
    assert [(e["from"], e["to"], e["by"]) for e in log] == [
        (scores.calibrated_threshold, expected, "alice"),
        (expected, moved, getpass.getuser()),
    ]
    assert point_at(val.labels, val.scores, moved)["miss_rate"] <= target

    listed = run_cli(home, "models", "list", product)
    assert listed.returncode == 0, listed.stderr
    assert f"{moved:.4f} (set by {getpass.getuser()})" in listed.stdout
    assert "back to misses" in listed.stdout and "line 2 rejects too many good parts" in listed.stdout


def test_a_version_without_recorded_scores_is_refused(home: Settings, trained_product, tmp_path: Path) -> None:
    """A version trained before the scores were recorded (its artifacts without served_scores.json)."""
    product = trained_product.product
    old = tmp_path / "old-artifacts"
    shutil.copytree(registry.resolve_version(home, product, 1).artifacts, old)
    (old / "evaluation" / "served_scores.json").unlink()
    client = registry.mlflow_client(home)
    run = client.create_run(client.get_experiment_by_name(product).experiment_id)
    client.set_terminated(run.info.run_id)
    assert registry.register_version(home, product, run.info.run_id, old.as_uri(), {}) == 2
    with pytest.raises(ThresholdRefused, match="no recorded validation scores"):
        plan_threshold(home, product, ThresholdRequest(value=0.5), version=2)
    assert np.isfinite(plan_threshold(home, product, ThresholdRequest(value=0.5), version=1).threshold)


def test_an_int8_file_exported_without_its_scores_is_refused_with_the_way_out(home: Settings, trained_product) -> None:
    product = trained_product.product
    artifacts = registry.resolve_version(home, product, 1).artifacts
    onnx = onnx_dir(artifacts)
    onnx.mkdir(exist_ok=True)
    (onnx / INT8_FILE).write_bytes(b"an INT8 file from an export that did not record its scores")
    # Training's fp32 scores are not the served file's: no threshold is chosen on them.
    assert read_served_scores(registry.resolve_version(home, product, 1)) is None
    with pytest.raises(ThresholdRefused, match=f"re-export it with `inspection export {product} --version 1 --int8`"):
        plan_threshold(home, product, ThresholdRequest(miss_rate=0.2))
    assert not THRESHOLD_TAGS & set(_tags(home, product))


def test_qa_rule_follows_the_file_that_serves_and_a_value_stays(home: Settings, trained_product) -> None:
    """QA chose "miss at most 20 %" on fp32's scores. An accepted INT8 file scores a little differently, so the rule
    is applied again to INT8's validation scores at export, and again to fp32's when fp32 serves once more; each
    move is recorded. A threshold QA gave as a value stays, with what it now means said."""
    from training.export_pipeline import Int8Options, export_product

    product = trained_product.product
    lenient = Int8Options(max_auroc_loss=0.05, max_flip_fraction=0.5, alpha=1e-6)  # any CPU's INT8 passes

    def chosen(target: float) -> float:
        scores = read_served_scores(registry.resolve_version(home, product, 1))
        assert scores is not None
        return threshold_for_miss_rate(scores.validation.labels, scores.validation.scores, target)

    def moves() -> list[tuple[float, float, str]]:
        return [(e["from"], e["to"], e["by"]) for e in json.loads(_tags(home, product)[LOG_TAG])]

    target = 0.2
    record_threshold(home, plan_threshold(home, product, ThresholdRequest(miss_rate=target)), "line 1 rule", "alice")
    on_fp32 = chosen(target)
    assert float(_tags(home, product)[THRESHOLD_TAG]) == on_fp32

    to_int8 = export_product(home, product, int8=True, int8_options=lenient)
    assert to_int8.int8_path is not None
    on_int8 = chosen(target)  # read_served_scores now reads the INT8 file's own scores
    assert on_int8 != on_fp32  # the premise: INT8 moved the scores enough to move the rule's threshold
    tags = _tags(home, product)
    assert float(tags[THRESHOLD_TAG]) == on_int8
    assert (tags["threshold_rule"], tags["threshold_set_by"]) == (f"miss_rate<={target:g}", EXPORT_ACTOR)
    assert moves()[-1] == (on_fp32, on_int8, EXPORT_ACTOR)
    assert to_int8.threshold_note is not None and "int8" in to_int8.threshold_note

    back = export_product(home, product)  # fp32 serves again: the rule follows it back
    assert back.int8_path is None and float(_tags(home, product)[THRESHOLD_TAG]) == on_fp32
    assert moves()[-1] == (on_int8, on_fp32, EXPORT_ACTOR)
    recorded = moves()
    same = export_product(home, product)  # the same file again: nothing moves, nothing is recorded
    assert same.threshold_note is None and moves() == recorded

    record_threshold(home, plan_threshold(home, product, ThresholdRequest(value=0.5)), "a fixed cut", "bob")
    valued = export_product(home, product, int8=True, int8_options=lenient)
    assert valued.int8_path is not None and float(_tags(home, product)[THRESHOLD_TAG]) == 0.5
    assert valued.threshold_note is not None and "given as a value and stays" in valued.threshold_note
    assert moves()[-1][2] == "bob"
