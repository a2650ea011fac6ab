"""`inspection demo` end to end on the session's synthetic product: a real server process, two camera lines,
QA's labels on the audit sample and every defect verdict, rates (audit estimate, QA-labelled, truth) that match
what the database holds, then QA's move of the operating point and a second pass served at it. (ELPV import and
training are what `make demo` adds; here the product is already trained, which the demo detects and reuses.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.common import pct
from cli.demo import held_out_frames
from cli.demo_operating_point import DEMO_ACTOR, first_operating_point
from cli.demo_rates import audit_cell
from cli.main import app
from inspection.settings import Settings
from inspection.storage.database import open_database
from inspection.storage.defect_stats import compute_stats
from inspection.storage.inspections import InspectionFilter, list_inspections
from models import registry
from models.serving_choice import calibrated_served_threshold, current_threshold, read_served_scores
from models.threshold_moves import ThresholdRequest, plan_threshold, record_threshold
from tools.home_copy import copy_home

pytestmark = pytest.mark.slow


def _camera_counts(output: str, line: str) -> list[list[int]]:
    """sent, answered, errors, dropped of one line in each pass, from the demo's camera tables."""
    cell = r"[\s│]+(\d+)"  # rich draws the table's column rules with │
    found = re.findall(line + cell * 4, output)
    assert found, output
    return [[int(n) for n in counts] for counts in found]


def _private_home(trained_product, tmp_path: Path) -> Settings:
    """A copy of the trained home: the demo records served thresholds, which other tests must not see."""
    settings = trained_product.settings.model_copy(update={"home": tmp_path / "var"})
    copy_home(trained_product.settings, settings)
    return settings


def test_demo_streams_the_held_out_frames_and_reports_the_rates_the_server_measured(
    trained_product, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, product = _private_home(trained_product, tmp_path), trained_product.product
    database = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("INSPECTION_HOME", str(settings.home))
    monkeypatch.setenv("INSPECTION_CONFIGS_DIR", str(settings.configs_dir))
    monkeypatch.setenv("INSPECTION_DATABASE_URL", database)
    monkeypatch.setenv("COLUMNS", "200")

    result = CliRunner().invoke(
        app, ["demo", "--product", product, "--fps", "10", "--audit-pass-rate", "0.5", "--port", "0", "--no-hold"]
    )
    assert result.exit_code == 0, result.output

    frames = held_out_frames(settings, product)
    sessions = open_database(database)
    rows, total = list_inspections(sessions, InspectionFilter(product=product), limit=500)
    assert len(rows) == total  # one page holds both passes of the tiny product's test split
    # QA's move is recorded on the champion: the lowest threshold within a 10 % validation false-detection budget.
    info = registry.champion(settings, product)
    assert info is not None
    scores = read_served_scores(info)
    moved, calibrated = current_threshold(info, scores), calibrated_served_threshold(info, scores)
    assert moved is not None and calibrated is not None
    assert (moved.source, moved.rule, moved.set_by) == ("qa", "false_detection_rate<=0.1", DEMO_ACTOR)
    assert moved.value == plan_threshold(settings, product, ThresholdRequest(false_detection_rate=0.1)).threshold
    assert moved.value != calibrated  # else the two passes could not be told apart below

    # Two passes: every frame is sent, answered or dropped (when the server falls behind, as a camera would) in
    # each; every answered frame is one row, served at its pass's threshold.
    counts = {line: _camera_counts(result.output, line) for line in ("line-1", "line-2")}
    passes = {threshold: [row for row in rows if row.threshold == threshold] for threshold in (calibrated, moved.value)}
    for index, threshold in enumerate((calibrated, moved.value)):
        assert sum(counts[line][index][0] + counts[line][index][3] for line in counts) == len(frames)
        answered = sum(counts[line][index][1] for line in counts)
        assert len(passes[threshold]) == answered > len(frames) / 2
        assert all((row.verdict == "defect") == (row.defect_probability >= threshold) for row in passes[threshold])
    assert total == sum(len(rows_of_pass) for rows_of_pass in passes.values())
    assert {row.line_id for row in rows} == {"line-1", "line-2"}
    assert {row.frame_id for row in rows} <= {path.name for path, _ in frames}
    labels = {path.name: label for path, label in frames}
    for rows_of_pass in passes.values():
        # QA labelled as a plant does: the audit sample (half the passes here, every defect verdict) and every
        # defect verdict, nothing else, each with its true label.
        assert {row.audit_probability for row in rows_of_pass if row.verdict == "pass"} == {0.5}
        assert all(row.audit_selected for row in rows_of_pass if row.verdict == "defect")
        reviewed = {row.id for row in rows_of_pass if row.feedback_label is not None}
        assert reviewed == {row.id for row in rows_of_pass if row.audit_selected or row.verdict == "defect"}
        assert any(row.verdict == "pass" for row in rows_of_pass if row.id not in reviewed)
        assert all(row.feedback_label == labels[row.frame_id] for row in rows_of_pass if row.id in reviewed)

    # Each pass's printed rates are what the database holds for that pass alone (the second pass's window starts
    # at its first row): the audit estimate, the QA-labelled count and the truth of all its frames.
    second_pass = min(row.received_at for row in passes[moved.value])
    for index, (since, until) in enumerate(((None, second_pass), (second_pass, None))):
        totals = compute_stats(sessions, product=product, since=since, until=until)["totals"]
        rows_of_pass = passes[(calibrated, moved.value)[index]]
        defective = [row for row in rows_of_pass if labels[row.frame_id] != "good"]
        good = [row for row in rows_of_pass if labels[row.frame_id] == "good"]
        truth = {
            "miss_rate": sum(row.verdict == "pass" for row in defective) / len(defective),
            "false_detection_rate": sum(row.verdict == "defect" for row in good) / len(good),
        }
        for name, key in (("miss rate", "miss_rate"), ("false-detection rate", "false_detection_rate")):
            rows_printed = re.findall(rf"│ {name} +│(.*)", result.output)  # the rows of each pass's table
            assert len(rows_printed) == 2, result.output
            row_printed = rows_printed[index]
            qa = re.search(r"(\d+)/(\d+)", row_printed)
            assert qa and tuple(map(int, qa.groups())) == (totals["qa"][key]["k"], totals["qa"][key]["n"])
            assert audit_cell(totals["audit"], key) in row_printed
            assert row_printed.rstrip(" │").endswith(pct(truth[key]))
    assert "the two operating points on the line" in result.output
    assert "dashboard: http://127.0.0.1:" in result.output


def test_a_rerun_of_the_demo_starts_at_the_calibrated_threshold_but_keeps_a_persons(
    trained_product, tmp_path: Path
) -> None:
    settings, product = _private_home(trained_product, tmp_path), trained_product.product
    plan = plan_threshold(settings, product, ThresholdRequest(false_detection_rate=0.1))
    record_threshold(settings, plan, "an earlier demo's move", DEMO_ACTOR)
    info = registry.champion(settings, product)
    assert info is not None
    scores = read_served_scores(info)
    calibrated, before = calibrated_served_threshold(info, scores), current_threshold(info, scores)
    assert before is not None and before.source == "qa" and before.value == plan.threshold != calibrated

    assert first_operating_point(settings, product) == "training's calibration"
    info = registry.champion(settings, product)
    assert info is not None
    after = current_threshold(info, scores)
    assert after is not None and after.value == calibrated
    assert first_operating_point(settings, product) == "training's calibration"  # already there: nothing recorded
    assert registry.resolve_version(settings, product, info.version).tags == info.tags

    record_threshold(settings, plan, "the line's own choice", "qa-alice")  # a person's threshold is theirs
    assert first_operating_point(settings, product) == "QA's threshold set by qa-alice"
    kept = current_threshold(registry.resolve_version(settings, product, info.version), scores)
    assert kept is not None and (kept.value, kept.set_by) == (plan.threshold, "qa-alice")
