"""`image_size: auto`: the input size chosen from the product's own images, recorded with the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets.importers.folder import import_folder
from datasets.layout import scan_dataset
from datasets.synth import generate_synthetic_product
from inspection.errors import ConfigError
from inspection.product_config import load_product_config
from inspection.settings import Settings
from models.artifacts import bundle_path
from models.registry import mlflow_client
from tests.conftest import make_configs_dir
from training.data import AUTO_SIZE_CAP, auto_image_size, resolve_image_size
from training.kinds import load_bundle


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([300] * 5, 288),  # an ELPV cell: the nearest multiple of 32
        ([128, 128, 140], 128),
        ([150], 160),
        ([2048, 1024, 4000], AUTO_SIZE_CAP),  # large frames are capped: the cost grows with the square
        ([40, 20, 10], 32),  # never below one cell of the network's total stride
    ],
)
def test_auto_size_is_the_capped_rounded_median(sizes: list[int], expected: int) -> None:
    assert auto_image_size(sizes) == expected


def test_config_takes_auto_or_a_size_in_range(tmp_path: Path) -> None:
    configs = make_configs_dir(tmp_path, {"a": "image_size: auto\n", "b": "image_size: 16\n", "c": "image_size: big\n"})
    assert load_product_config(configs, "a").image_size == "auto"
    for product in ("b", "c"):
        with pytest.raises(ConfigError, match="image_size"):
            load_product_config(configs, product)


def test_a_number_is_kept_as_is(synthetic_source: Path) -> None:
    assert resolve_image_size(scan_dataset(synthetic_source), 200) == 200
    assert resolve_image_size(scan_dataset(synthetic_source), "auto") == 128  # the fixture's native size


@pytest.mark.slow
def test_training_with_auto_records_the_size_it_became(tmp_path: Path) -> None:
    from training.pipeline import train_product

    source = tmp_path / "source"
    generate_synthetic_product(source, n=60, seed=3, image_size=96)
    configs = make_configs_dir(
        tmp_path / "configs",
        {"part": "image_size: auto\ntrain:\n  epochs: 1\n  augmented_views: 1\n  probe_steps: 20\n"},
    )
    settings = Settings(home=tmp_path / "var", configs_dir=configs, device="cpu")
    import_folder(source, settings.dataset_dir("part"), "part")
    outcome = train_product(settings, "part")
    assert load_bundle(bundle_path(outcome.artifacts)).spec.image_size == 96
    client = mlflow_client(settings)
    assert client.get_run(outcome.run_id).data.params["image_size"] == "96"
    resolved = Path(client.download_artifacts(outcome.run_id, "config/resolved_config.json", str(tmp_path)))
    assert json.loads(resolved.read_text())["image_size"] == 96
