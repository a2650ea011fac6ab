"""The untuned defaults on a product nobody configured: synthetic color parts, no product YAML at all.

A stand-in for "a folder of some hundred real images of another part": no second real defect data set is
installable here, so this checks the defaults on a part that differs from ELPV in every respect we control
(color, texture, image size, four defect types, defects 30% of images).
"""

from __future__ import annotations

import time

from benchmarks.context import BenchContext
from datasets.synth import generate_synthetic_product
from inspection.settings import Settings
from training.pipeline import train_product

PRODUCT = "untuned-part"


def run(context: BenchContext) -> dict[str, float]:
    """Figures: wall time and the test-split headline numbers with nothing but configs/default.yaml."""
    settings = Settings(home=context.workdir / "untuned-home", configs_dir=context.configs_dir)
    assert not (context.configs_dir / "products" / f"{PRODUCT}.yaml").exists()
    generate_synthetic_product(
        settings.dataset_dir(PRODUCT), n=400, seed=11, color=True, image_size=160, defect_fraction=0.3
    )
    started = time.perf_counter()
    outcome = train_product(settings, PRODUCT)
    seconds = time.perf_counter() - started
    test = outcome.report["test"]
    balanced = outcome.report["operating_points"]["max_validation_accuracy"]
    return {
        "untuned_train_seconds": round(seconds, 1),
        "untuned_test_auroc": test["auroc"],
        "untuned_test_miss_rate": test["miss_rate"],
        "untuned_test_false_detection_rate": test["false_detection_rate"],
        "untuned_test_accuracy_max_val_accuracy_point": balanced["accuracy"],
    }
