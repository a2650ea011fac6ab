"""Soft labels: the defect head trains on a per-image defect probability from the metadata (ELPV's vote share)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.layout import ImageRecord
from inspection.errors import DatasetError
from inspection.product_config import TrainConfig
from training.data import defect_targets
from training.kinds.classifier import _targets


def _record(label: str, name: str, **meta: object) -> ImageRecord:
    return ImageRecord(f"{label}/{name}", label, Path(f"/nowhere/{label}/{name}"), meta=dict(meta))


RECORDS = [
    _record("good", "a.png", defect_probability=0.0),
    _record("good", "b.png", defect_probability=1 / 3),
    _record("crack", "c.png", defect_probability=2 / 3),
    _record("crack", "d.png", defect_probability=1.0),
    _record("crack", "e.png"),  # no vote recorded: keeps its folder label
    _record("good", "f.png"),
]


def test_without_a_key_the_targets_are_the_folder_labels() -> None:
    assert defect_targets(RECORDS).tolist() == [0, 0, 1, 1, 1, 0]


def test_with_a_key_the_targets_are_the_recorded_probabilities() -> None:
    targets = defect_targets(RECORDS, "defect_probability")
    assert targets == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 0])
    assert targets.dtype == np.float32


def test_the_classifier_trains_on_soft_targets_and_keeps_hard_types() -> None:
    is_defect, types = _targets(RECORDS, ["crack"], "defect_probability")
    assert is_defect.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 0])
    assert types.tolist() == [-1, -1, 0, 0, 0, -1]
    assert is_defect.dtype == torch.float32


@pytest.mark.parametrize("value", [1.5, -0.1, "high", True, None])
def test_a_value_that_is_not_a_probability_is_refused_with_the_image_named(value: object) -> None:
    with pytest.raises(DatasetError, match=r"good/x\.png.*\[0, 1\]"):
        defect_targets([_record("good", "x.png", p=value)], "p")


def test_a_probability_that_contradicts_the_folder_is_refused() -> None:
    with pytest.raises(DatasetError, match="contradicts its folder label 'good'"):
        defect_targets([_record("good", "x.png", p=0.9)], "p")
    with pytest.raises(DatasetError, match="contradicts its folder label 'crack'"):
        defect_targets([_record("crack", "y.png", p=0.1)], "p")
    assert defect_targets([_record("good", "z.png", p=0.5)], "p").tolist() == [0.5]  # a tie fits either folder


def test_the_option_is_off_by_default_and_names_a_key() -> None:
    assert TrainConfig().soft_label_key is None
    assert TrainConfig(soft_label_key="defect_probability").soft_label_key == "defect_probability"
    with pytest.raises(ValueError):
        TrainConfig(soft_label_key="")
