"""The fine-tune's schedule: its learning rate epoch by epoch, and when early stopping may end it."""

from __future__ import annotations

import math

from inspection.product_config import TrainConfig


def learning_rate_factor(epoch: int, progress: float, config: TrainConfig) -> float:
    """Linear warm-up through fine-tune epoch 1 (the probed heads must not be knocked off by the first, noisiest
    steps), then cosine decay so the last epochs settle. `progress` is the fraction of the epoch done."""
    if epoch == 1:
        return max(progress, 0.05)
    return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(config.epochs, 1)))


def stops_early(epoch: int, stale: int, config: TrainConfig) -> bool:
    """After `patience` epochs without a better validation figure, once the cosine schedule is past its midpoint:
    the first epochs, at the highest learning rate, may trail the probe before they pass it
    (docs/decisions/0003-early-stopping-waits-for-the-second-half.md)."""
    return stale >= config.patience and epoch - 1 >= config.epochs / 2
