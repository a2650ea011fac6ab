"""The per-product registry on a real MLflow SQLite store: champion rule, gated promotion, rollback, model card.

No training: each fake version is a real MLflow run whose artifacts hold a handcrafted evaluation report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inspection.errors import InspectionError
from inspection.metrics import wilson_interval
from inspection.report import EvaluationReport
from inspection.settings import Settings
from models import registry
from models.model_card import write_model_card
from models.promotion import PromotionRefused, champion_history, promote, promotion_log, rollback

PRODUCT = "widget"


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated, empty MLflow database: creating the schema costs seconds, copying it costs nothing."""
    settings = Settings(home=tmp_path_factory.mktemp("store"))
    registry.mlflow_client(settings).search_experiments()
    return settings.mlflow_dir / "mlflow.db"


@pytest.fixture
def settings(settings: Settings, empty_store: Path) -> Settings:
    """The shared fresh-home fixture, with its MLflow store pre-created from the empty template."""
    settings.mlflow_dir.mkdir(parents=True)
    shutil.copy(empty_store, settings.mlflow_dir / "mlflow.db")
    return settings


def make_report(version: int, missed: int, n_defect: int = 100, flagged: int = 3, n_good: int = 200) -> dict[str, Any]:
    """A report shaped like training.evaluate.build_report's, with real Wilson intervals."""
    per_type = {"scratch": (missed, n_defect - 12), "crack": (0, 12)}
    return {
        "product": PRODUCT,
        "model_version": version,
        "threshold": 0.4321,
        "target_miss_rate": 0.02,
        "data": "test split",
        "test": {
            "n_good": n_good,
            "n_defect": n_defect,
            "miss_rate": missed / n_defect,
            "miss_rate_ci95": list(wilson_interval(missed, n_defect)),
            "n_missed": missed,
            "false_detection_rate": flagged / n_good,
            "false_detection_rate_ci95": list(wilson_interval(flagged, n_good)),
            "auroc": 0.987,
            "accuracy": 1 - (missed + flagged) / (n_defect + n_good),
            "n_false_detections": flagged,
            "per_defect_type": {
                name: {"n": n, "n_missed": k, "miss_rate": k / n, "miss_rate_ci95": list(wilson_interval(k, n))}
                for name, (k, n) in per_type.items()
            },
            "confusion_matrix": {
                "classes": ["good", "crack", "scratch"],
                "matrix": [[n_good - flagged, 0, flagged], [0, 12, 0], [missed, 0, n_defect - 12 - missed]],
                "binary": {
                    "true_defect_flagged": n_defect - missed,
                    "true_defect_passed": missed,
                    "true_good_flagged": flagged,
                    "true_good_passed": n_good - flagged,
                },
            },
        },
        "operating_points": {
            "target_miss_rate": {
                "threshold": 0.4321,
                "miss_rate": missed / n_defect,
                "miss_rate_ci95": list(wilson_interval(missed, n_defect)),
                "false_detection_rate": flagged / n_good,
                "false_detection_rate_ci95": list(wilson_interval(flagged, n_good)),
                "accuracy": 1 - (missed + flagged) / (n_defect + n_good),
            }
        },
        "calibration": {"method": "miss_rate", "note": "highest threshold with validation miss rate <= 0.02"},
    }


def add_version(settings: Settings, tmp_path: Path, report: dict[str, Any]) -> int:
    """Register a real MLflow run whose `model/evaluation/report.json` artifact is the given report."""
    client = registry.mlflow_client(settings)
    experiment = client.get_experiment_by_name(PRODUCT)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(PRODUCT, artifact_location=settings.mlflow_artifacts_dir.resolve().as_uri())
    )
    run = client.create_run(experiment_id)
    local = tmp_path / f"report-{run.info.run_id}" / "report.json"
    local.parent.mkdir(parents=True)
    local.write_text(json.dumps(report))
    client.log_artifact(run.info.run_id, str(local), artifact_path="model/evaluation")
    client.set_terminated(run.info.run_id)
    uri = f"{run.info.artifact_uri}/model"
    return registry.register_version(settings, PRODUCT, run.info.run_id, uri, tags={"threshold": "0.432100"})


def aliases(settings: Settings) -> dict[int, tuple[str, ...]]:
    return {v.version: v.aliases for v in registry.list_versions(settings, PRODUCT)}


def test_first_version_is_champion_later_ones_challengers(settings: Settings, tmp_path: Path) -> None:
    assert add_version(settings, tmp_path, make_report(1, missed=2)) == 1
    assert add_version(settings, tmp_path, make_report(2, missed=3)) == 2
    assert aliases(settings) == {1: ("champion",), 2: ("challenger",)}
    found = registry.challenger(settings, PRODUCT)
    assert found is not None and found.version == 2
    assert registry.read_report(found) == make_report(2, missed=3)


def test_round_trip_list_promote_rollback(settings: Settings, tmp_path: Path) -> None:
    for version in (1, 2, 3):
        add_version(settings, tmp_path, make_report(version, missed=2))
    first = promote(settings, PRODUCT, 2, reason="new lighting rig")
    assert (first.old_version, first.new_version, first.forced) == (1, 2, False)
    assert "champion v1" in first.comparison and "2.00% (0.55–7.00%, n=100)" in first.comparison
    result = promote(settings, PRODUCT)  # the challenger, v3
    assert result.new_version == 3
    assert aliases(settings) == {1: (), 2: ("previous-champion",), 3: ("champion",)}
    assert champion_history(settings, PRODUCT) == [1, 2]
    tags = registry.resolve_version(settings, PRODUCT, 2).tags
    assert tags["promoted_from"] == "1" and tags["promotion_reason"] == "new lighting rig" and tags["forced"] == "false"

    assert rollback(settings, PRODUCT).new_version == 2
    assert aliases(settings) == {1: ("previous-champion",), 2: ("champion",), 3: ()}
    assert rollback(settings, PRODUCT).new_version == 1
    with pytest.raises(InspectionError, match="no earlier champion"):
        rollback(settings, PRODUCT)
    served = registry.champion(settings, PRODUCT)
    assert served is not None and served.version == 1
    assert [(e["action"], e["from"], e["to"]) for e in promotion_log(settings, PRODUCT)] == [
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
    ]


def test_gate_refuses_a_worse_candidate_and_force_with_reason_overrides(settings: Settings, tmp_path: Path) -> None:
    add_version(settings, tmp_path, make_report(1, missed=2))  # 2/100: Wilson upper bound ~7.0%
    add_version(settings, tmp_path, make_report(2, missed=12))
    with pytest.raises(PromotionRefused) as refused:
        promote(settings, PRODUCT, 2)
    message = str(refused.value)
    assert "2.00% (0.55–7.00%, n=100)" in message and "12.00% (7.00–19.81%, n=100)" in message
    assert "--force" in message
    with pytest.raises(InspectionError, match="--reason"):
        promote(settings, PRODUCT, 2, force=True)
    with pytest.raises(InspectionError, match="--reason"):
        promote(settings, PRODUCT, 2, force=True, reason="   ")
    assert registry.champion(settings, PRODUCT).version == 1  # type: ignore[union-attr]

    result = promote(settings, PRODUCT, 2, force=True, reason="champion camera was replaced")
    assert result.forced and result.reason == "champion camera was replaced"
    tags = registry.resolve_version(settings, PRODUCT, 2).tags
    assert tags["forced"] == "true" and tags["promotion_reason"] == "champion camera was replaced"
    assert promotion_log(settings, PRODUCT)[-1]["reason"] == "champion camera was replaced"
    assert "challenger" not in registry.resolve_version(settings, PRODUCT, 2).aliases


@pytest.mark.parametrize("missed", [0, 2, 6])
def test_a_better_equal_or_within_noise_candidate_is_accepted(settings: Settings, tmp_path: Path, missed: int) -> None:
    add_version(settings, tmp_path, make_report(1, missed=2))
    add_version(settings, tmp_path, make_report(2, missed=missed))
    result = promote(settings, PRODUCT, 2)
    assert result.changed and not result.forced and result.new_version == 2


def test_different_test_sets_are_not_compared(settings: Settings, tmp_path: Path) -> None:
    add_version(settings, tmp_path, make_report(1, missed=2))
    add_version(settings, tmp_path, make_report(2, missed=0, n_defect=120))
    with pytest.raises(PromotionRefused, match="not like-for-like"):
        promote(settings, PRODUCT, 2)


def test_promoting_the_champion_is_a_no_op_and_unknown_version_is_clear(settings: Settings, tmp_path: Path) -> None:
    add_version(settings, tmp_path, make_report(1, missed=2))
    result = promote(settings, PRODUCT, 1)
    assert not result.changed and result.old_version == result.new_version == 1
    assert promotion_log(settings, PRODUCT) == []
    with pytest.raises(InspectionError, match="no model version 9"):
        promote(settings, PRODUCT, 9)


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INSPECTION_HOME": str(settings.home), "INSPECTION_CONFIGS_DIR": str(settings.configs_dir)}
    env["COLUMNS"] = "250"
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True)


def test_cli_refusal_exits_2_without_traceback_and_list_shows_rates(settings: Settings, tmp_path: Path) -> None:
    add_version(settings, tmp_path, make_report(1, missed=2))
    add_version(settings, tmp_path, make_report(2, missed=12))
    refused = run_cli(settings, "models", "promote", PRODUCT, "2")
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output
    assert "refusing to promote" in output and "12.00%" in output and "Traceback" not in output
    listed = run_cli(settings, "models", "list", PRODUCT)
    assert listed.returncode == 0, listed.stderr
    assert "champion" in listed.stdout and "challenger" in listed.stdout
    assert "2.00% (0.55–7.00%, n=100)" in listed.stdout and "1.50% (0.51–4.32%, n=200)" in listed.stdout


def test_model_card_has_the_numbers_and_known_limits(tmp_path: Path) -> None:
    report = make_report(3, missed=2)
    report["calibration"] = {"method": "good_quantile", "note": "validation split has no defective images"}
    info = {"label_counts": {"good": 1000, "scratch": 440, "crack": 60}, "split_counts": {"train": 1000, "test": 300}}
    path = write_model_card(EvaluationReport.from_json(report), info, tmp_path / "cards" / "MODEL_CARD.md")
    card = path.read_text()
    assert card.startswith("# Model card: widget v3")
    assert "| miss rate | 2.00% | 0.55%–7.00% | 100 |" in card
    assert "| false-detection rate | 1.50% | 0.51%–4.32% | 200 |" in card
    assert "| crack | 12 |" in card and "train 1000, test 300" in card and "0.4321" in card
    limits = card.split("## Known limits")[1]
    assert "`crack` has only 12 test examples" in limits and "too few examples" in limits
    assert "`scratch`" not in limits
    assert "fell back" in limits
    assert not list(path.parent.glob(".*"))  # no temp file left behind
