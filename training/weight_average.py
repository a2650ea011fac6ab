"""An exponential moving average of the fine-tuned weights, judged and kept in place of the raw ones.

On ELPV the raw fine-tune's validation AUROC swings from epoch to epoch (0.85, 0.93, 0.90, 0.94, 0.96 in one run):
each epoch ends wherever its last noisy steps left it. The average over the last few hundred steps sits in the
middle of that wandering, which is what early stopping and the saved model should see.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """`decay`-weighted running mean of a model's trainable parameters (batch-norm statistics are frozen in the
    fine-tune, so parameters are all that move)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averaged = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights in (after every optimizer step)."""
        for name, parameter in model.named_parameters():
            if name in self.averaged:
                self.averaged[name].lerp_(parameter.detach(), 1.0 - self.decay)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block and its own again after it."""
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            own = {name: parameters[name].detach().clone() for name in self.averaged}
            for name, value in self.averaged.items():
                parameters[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in own.items():
                    parameters[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: value.clone() for name, value in self.averaged.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.averaged):
            raise ValueError("the saved weight average is of other parameters than this model's trainable ones")
        for name, value in state.items():
            self.averaged[name].copy_(value)
