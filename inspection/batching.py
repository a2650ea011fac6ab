"""Cutting a sequence (a list, an array, a tensor) into consecutive batches: one helper for every scoring loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from inspection.preprocessing import PreprocessSpec, preprocess


class Sliceable(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: slice) -> Any: ...


S = TypeVar("S", bound=Sliceable)


def batched(items: S, size: int) -> Iterator[S]:
    """Consecutive slices of at most `size` items, in order (itertools.batched arrives only in Python 3.12 and
    returns tuples, not slices of the array or tensor it was given)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def preprocessed_batches(images: Sequence[np.ndarray], spec: PreprocessSpec, size: int) -> Iterator[np.ndarray]:
    """Decoded images in batches of at most `size`, each through the shared preprocessing: (B, 3, S, S) float32."""
    for chunk in batched(images, size):
        yield np.stack([preprocess(image, spec) for image in chunk])
