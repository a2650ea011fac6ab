"""The CLI's shared printing: the evaluation report table."""

from __future__ import annotations


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
