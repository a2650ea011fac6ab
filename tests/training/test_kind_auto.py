"""`kind: auto`: the hybrid when the training split holds few defects, the classifier when it holds many."""

from __future__ import annotations

from pathlib import Path

from datasets.layout import scan_dataset
from inspection.product_config import load_product_config
from tests.conftest import make_configs_dir
from training.pipeline import AUTO_HYBRID_BELOW_DEFECTS, resolve_kind


def test_auto_picks_by_the_number_of_training_defects(tmp_path: Path, synthetic_source: Path) -> None:
    config = load_product_config(make_configs_dir(tmp_path, {"part": "kind: auto\n"}), "part")
    records = scan_dataset(synthetic_source)
    goods = [r for r in records if not r.is_defect]
    defects = [r for r in records if r.is_defect]
    few = goods + defects[:10]
    many = goods + (defects * AUTO_HYBRID_BELOW_DEFECTS)[:AUTO_HYBRID_BELOW_DEFECTS]
    assert resolve_kind(config, records, few).name == "hybrid"
    assert resolve_kind(config, records, many).name == "classifier"
    # Without a single defect in the dataset only the anomaly model can learn, whatever the config says.
    assert resolve_kind(config, goods, goods).name == "anomaly"
