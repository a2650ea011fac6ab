"""`inspection datasets`: synthetic products, folder imports refused with nothing left behind, bad names refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.cli.cli_runner import assert_clean_error, run_cli


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


def test_synth_then_show(settings) -> None:
    assert run_cli(settings, "datasets", "synth", "--product", "parts", "--n", "40").returncode == 0
    result = run_cli(settings, "datasets", "show", "parts")
    assert result.returncode == 0
    assert "scratch" in result.stdout and "40 images" in result.stdout
