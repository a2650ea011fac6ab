"""The moving average of fine-tuned weights: its arithmetic, the swap in and out, and its saved state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.weight_average import WeightAverage


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)  # a frozen parameter is not averaged
    return model


def test_each_update_moves_the_average_by_one_minus_decay_and_skips_frozen_parameters() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.75)
    start = model[1].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.add_(4.0)
    average.update(model)
    assert torch.allclose(average.averaged["1.weight"], start + 1.0)  # 0.75 * w + 0.25 * (w + 4)
    assert "0.weight" not in average.averaged and "0.bias" in average.averaged


def test_applied_swaps_the_average_in_and_restores_the_weights_even_on_error() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.5)
    own = model[1].weight.detach().clone()
    average.averaged["1.weight"].fill_(7.0)
    with pytest.raises(RuntimeError), average.applied(model):
        assert torch.all(model[1].weight == 7.0)
        raise RuntimeError("validation failed")
    assert torch.equal(model[1].weight, own)


def test_state_round_trips_and_refuses_another_models() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.9)
    average.averaged["1.bias"].fill_(3.0)
    other = WeightAverage(_model(), decay=0.9)
    other.load_state_dict(average.state_dict())
    assert torch.equal(other.averaged["1.bias"], torch.full_like(other.averaged["1.bias"], 3.0))
    with pytest.raises(ValueError, match="other parameters"):
        WeightAverage(nn.Linear(2, 1), decay=0.9).load_state_dict(average.state_dict())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)
