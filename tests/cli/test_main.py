"""The `inspection` command and its top-level commands as a user runs them: a real subprocess, clear errors."""

from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path

import pytest

from cli.main import main
from tests.cli.cli_runner import assert_clean_error, run_cli


def test_help_lists_the_contract_commands(settings) -> None:
    result = run_cli(settings, "--help")
    assert result.returncode == 0
    for command in ("datasets", "train", "evaluate", "models"):
        assert command in result.stdout


def test_the_installed_command_points_at_the_cli_package() -> None:
    """pyproject's `inspection` script names a callable that exists (the CLI left the core package for `cli/`)."""
    target = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = target["inspection"].partition(":")
    assert getattr(importlib.import_module(module), name) is main


def test_unknown_product_is_a_clear_error(settings) -> None:
    assert_clean_error(run_cli(settings, "train", "nosuch"), "no dataset")


def test_evaluate_without_a_model_says_how_to_get_one(settings, synthetic_source: Path) -> None:
    assert (
        run_cli(settings, "datasets", "import", "folder", str(synthetic_source), "--product", "widget").returncode == 0
    )
    assert_clean_error(run_cli(settings, "evaluate", "widget"), "inspection train widget")


@pytest.mark.slow
def test_evaluate_writes_the_json_report(trained_product, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_cli(trained_product.settings, "evaluate", trained_product.product, "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["model_version"] == 1
    assert report["test"]["auroc"] == trained_product.outcome.report["test"]["auroc"]
    assert "miss rate" in result.stdout
