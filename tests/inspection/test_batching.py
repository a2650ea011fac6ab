"""The one batching helper: consecutive slices that cover the input exactly once, in order."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.batching import batched, preprocessed_batches
from inspection.preprocessing import PreprocessSpec, preprocess


def test_batches_cover_every_item_once_in_order() -> None:
    items = list(range(10))
    chunks = list(batched(items, 4))
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(batched([], 4)) == []
    array_chunks = list(batched(np.arange(5), 2))
    assert [c.tolist() for c in array_chunks] == [[0, 1], [2, 3], [4]]  # slices of the array, not tuples
    with pytest.raises(ValueError, match="at least 1"):
        list(batched(items, 0))


def test_preprocessed_batches_match_preprocessing_one_by_one() -> None:
    spec = PreprocessSpec(image_size=32, color_mode="gray")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8) for i in range(5)]
    stacked = np.concatenate(list(preprocessed_batches(images, spec, 2)))
    np.testing.assert_array_equal(stacked, np.stack([preprocess(image, spec) for image in images]))
