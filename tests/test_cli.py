"""The `inspection` command as a user runs it: a real subprocess, clear errors, no tracebacks."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli.main import main
from inspection.settings import Settings


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "INSPECTION_HOME": str(settings.home),
        "INSPECTION_CONFIGS_DIR": str(settings.configs_dir),
        "INSPECTION_DEVICE": "cpu",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True, timeout=600
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result
    output = result.stdout + result.stderr
    assert fragment in output
    assert "Traceback" not in output


def test_help_lists_the_contract_commands(settings) -> None:
    result = run_cli(settings, "--help")
    assert result.returncode == 0
    for command in ("datasets", "train", "evaluate", "models"):
        assert command in result.stdout


def test_the_installed_command_points_at_the_cli_package() -> None:
    """pyproject's `inspection` script names a callable that exists (the CLI left the core package for `cli/`)."""
    target = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = target["inspection"].partition(":")
    assert getattr(importlib.import_module(module), name) is main


def test_unknown_product_is_a_clear_error(settings) -> None:
    assert_clean_error(run_cli(settings, "train", "nosuch"), "no dataset")


def test_invalid_product_name_is_refused(settings) -> None:
    assert_clean_error(run_cli(settings, "datasets", "show", "../etc"), "invalid product name")


def test_import_of_a_folder_without_good_images_is_refused_and_leaves_nothing(settings, tmp_path: Path) -> None:
    source = tmp_path / "only-defects" / "scratch"
    source.mkdir(parents=True)
    cv2.imwrite(str(source / "a.png"), np.full((16, 16), 128, np.uint8))
    result = run_cli(settings, "datasets", "import", "folder", str(source.parent), "--product", "lonely")
    assert_clean_error(result, "no 'good' images")
    assert not settings.dataset_dir("lonely").exists()
    assert not list(settings.datasets_dir.glob(".staging-*"))


def test_evaluate_without_a_model_says_how_to_get_one(settings, synthetic_source: Path) -> None:
    assert (
        run_cli(settings, "datasets", "import", "folder", str(synthetic_source), "--product", "widget").returncode == 0
    )
    assert_clean_error(run_cli(settings, "evaluate", "widget"), "inspection train widget")


def test_synth_then_show(settings) -> None:
    assert run_cli(settings, "datasets", "synth", "--product", "parts", "--n", "40").returncode == 0
    result = run_cli(settings, "datasets", "show", "parts")
    assert result.returncode == 0
    assert "scratch" in result.stdout and "40 images" in result.stdout


@pytest.mark.slow
def test_evaluate_writes_the_json_report(trained_product, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_cli(trained_product.settings, "evaluate", trained_product.product, "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["model_version"] == 1
    assert report["test"]["auroc"] == trained_product.outcome.report["test"]["auroc"]
    assert "miss rate" in result.stdout


def test_keys_create_prints_the_key_alone_and_stores_only_its_hash(settings) -> None:
    from inspection.storage.api_keys import authenticate
    from inspection.storage.database import open_database

    result = run_cli(settings, "keys", "create", "--role", "qa", "--name", "anna")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("insp_") and "\n" not in key
    found = authenticate(open_database(settings.resolved_database_url), key)
    assert found is not None and found.role == "qa"
    # WAL mode: recent writes may still sit in the -wal file, so look in every file of the database.
    for path in settings.home.glob("inspection.db*"):
        assert key.encode() not in path.read_bytes()
    assert_clean_error(run_cli(settings, "keys", "create", "--role", "admin", "--name", "x"), "unknown role")


def test_report_table_shows_pixel_metrics_only_when_the_report_has_them(capsys) -> None:
    from cli.common import print_report

    test = {
        "n_good": 40,
        "n_defect": 20,
        "miss_rate": 0.05,
        "miss_rate_ci95": [0.01, 0.24],
        "false_detection_rate": 0.1,
        "false_detection_rate_ci95": [0.04, 0.23],
        "auroc": 0.97,
        "accuracy": 0.9,
        "per_defect_type": {},
    }
    report = {"product": "widget", "model_version": 1, "data": "test split", "threshold": 0.5, "target_miss_rate": 0.02}
    print_report({**report, "test": test})
    assert "pixel AUROC" not in capsys.readouterr().out
    print_report({**report, "test": {**test, "pixel_auroc": 0.925, "pro": 0.867, "n_pixel_images": 60}})
    out = capsys.readouterr().out
    assert "0.9250" in out and "0.8670" in out and "60 images with masks" in out
