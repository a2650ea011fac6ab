"""The training loop on small random feature tensors: it learns, stops early, and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from inspection.product_config import TrainConfig
from models.classifier import DefectClassifier
from training.schedule import learning_rate_factor, stops_early
from training.trainer import EpochStats, TrainingData, train_classifier

CPU = torch.device("cpu")


def _model() -> DefectClassifier:
    torch.manual_seed(0)
    return DefectClassifier(num_defect_types=2, trainable_stages=1, pretrained=True)


def _data(n: int = 48, views: int = 2) -> TrainingData:
    # Inputs of the last stage (192 channels); defects carry a shifted channel block the model can learn.
    g = torch.Generator().manual_seed(1)
    is_defect = (torch.arange(n) % 3 == 0).float()
    types = torch.where(is_defect > 0, torch.arange(n) % 2, torch.full((n,), -1))
    views_tensor = torch.randn(views, n, 192, 4, 4, generator=g)
    views_tensor[:, is_defect > 0, :32] += 1.5
    val = torch.randn(n // 2, 192, 4, 4, generator=g)
    val_defect = (torch.arange(n // 2) % 3 == 0).float()
    val[val_defect > 0, :32] += 1.5
    val_types = torch.where(val_defect > 0, torch.arange(n // 2) % 2, torch.full((n // 2,), -1))
    return TrainingData(views_tensor.half(), is_defect, types, val.half(), val_defect, val_types)


CONFIG = TrainConfig(epochs=3, batch_size=16, probe_steps=40, patience=10)
AVERAGED = CONFIG.model_copy(update={"weight_average_decay": 0.9})


def test_loop_learns_a_separable_signal() -> None:
    result = train_classifier(_model(), _data(), CONFIG, seed=0, device=CPU)
    assert [s.phase for s in result.history] == ["probe", "finetune", "finetune", "finetune"]
    assert max(s.val_auroc for s in result.history) >= 0.95


def test_early_stopping_keeps_the_best_epoch_and_waits_for_the_schedules_second_half() -> None:
    config = TrainConfig(epochs=8, batch_size=16, probe_steps=40, patience=1)
    result = train_classifier(_model(), _data(), config, seed=0, device=CPU)
    assert result.stopped_early or len(result.history) == 9
    # The probe, then at least epochs 1-5: epoch 5 is the first at half the peak learning rate.
    assert len(result.history) >= 6
    best = max(result.history, key=lambda s: (s.val_auroc, -s.val_loss))
    assert result.best_epoch == best.epoch


def test_a_stale_run_stops_only_once_the_learning_rate_has_halved() -> None:
    config = TrainConfig(epochs=10, patience=4)
    assert not stops_early(4, stale=4, config=config)  # the first epochs may trail the probe, then pass it
    assert not stops_early(5, stale=4, config=config)
    assert stops_early(6, stale=4, config=config)  # cosine factor 0.5 from epoch 6 of 10
    assert not stops_early(9, stale=3, config=config)
    assert learning_rate_factor(6, 0.0, config) == pytest.approx(0.5)


@pytest.mark.parametrize("config", [CONFIG, AVERAGED], ids=["raw weights", "weight average"])
def test_resume_continues_exactly_where_it_stopped(tmp_path, config: TrainConfig) -> None:
    reference = _model()
    train_classifier(reference, _data(), config, seed=0, device=CPU)

    checkpoint = tmp_path / "checkpoint.pt"

    def crash_after_epoch_one(stats: EpochStats) -> None:
        if stats.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            _model(), _data(), config, seed=0, device=CPU, checkpoint_path=checkpoint, on_epoch=crash_after_epoch_one
        )
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1
    resumed = _model()
    result = train_classifier(resumed, _data(), config, seed=0, device=CPU, checkpoint_path=checkpoint, resume=True)
    assert [s.epoch for s in result.history] == [0, 1, 2, 3]
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_with_a_weight_average_each_epoch_is_judged_by_the_average() -> None:
    # An average that barely moves (decay near 1) stays at the probed weights, so every fine-tune epoch must
    # validate exactly as the probe did, though the raw fine-tune moved the weights.
    start = {n: p.detach().clone() for n, p in _model().named_parameters() if n.startswith("upper")}
    still = CONFIG.model_copy(update={"weight_average_decay": 1 - 1e-9})
    model = _model()
    result = train_classifier(model, _data(), still, seed=0, device=CPU)
    probe, *finetune = result.history
    assert finetune and all(
        (s.val_auroc, s.val_loss) == pytest.approx((probe.val_auroc, probe.val_loss), abs=1e-6) for s in finetune
    )
    raw = _model()
    train_classifier(raw, _data(), CONFIG, seed=0, device=CPU)
    assert any(not torch.allclose(dict(raw.named_parameters())[n], start[n], atol=1e-4) for n in start)


def test_a_moderate_weight_average_still_learns() -> None:
    result = train_classifier(_model(), _data(), AVERAGED, seed=0, device=CPU)
    assert max(s.val_auroc for s in result.history[1:]) >= 0.95


def test_the_cpu_fine_tune_runs_channels_last_and_hands_back_a_plain_layout() -> None:
    model = _model()
    layouts: list[bool] = []
    # What the fine-tune's convolutions are given: their inputs in channels-last, the layout that is faster on CPUs.
    first_conv = next(m for m in model.upper.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_pre_hook(
        lambda _module, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    try:
        train_classifier(model, _data(), CONFIG, seed=0, device=CPU)
    finally:
        hook.remove()
    assert layouts and all(layouts)
    # Export, scoring and the saved weights get the layout they always had.
    assert all(p.is_contiguous() for p in model.parameters())
    # The layout changes the kernels, not the model: the same weights give the same logits either way.
    features = _data().val_features[:8].float()
    with torch.no_grad():
        plain = model.logits(features)[0]
        model.to(memory_format=torch.channels_last)
        last = model.logits(features.contiguous(memory_format=torch.channels_last))[0]
    torch.testing.assert_close(last, plain, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on CI)")
def test_the_loop_trains_on_a_gpu_from_the_cpu_cache() -> None:
    # The cache stays on the CPU in float16 whatever the device: every batch, validation's included, is moved.
    result = train_classifier(_model(), _data(), CONFIG, seed=0, device=torch.device("cuda"))
    assert max(s.val_auroc for s in result.history) >= 0.95
