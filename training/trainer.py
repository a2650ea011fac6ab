"""The training loop: a linear probe on frozen embeddings, then fine-tuning of the upper stages, with validation-based
early stopping and a per-epoch checkpoint that `resume=True` continues from.

Under torchrun (training.distributed) every rank runs this loop on the same cached features: each trains on its
share of every global batch and the gradients are averaged across ranks, so the weights stay identical on all of
them; rank 0 alone fits the probe, validates and saves the checkpoint, and hands the others what it decided.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspection.atomic import atomic_target
from inspection.batching import batched
from inspection.metrics import auroc
from inspection.product_config import TrainConfig
from models.classifier import DefectClassifier
from training import distributed
from training.schedule import learning_rate_factor, stops_early
from training.weight_average import WeightAverage


@dataclass
class EpochStats:
    epoch: int
    phase: str  # "probe" (heads on frozen embeddings) or "finetune"
    train_loss: float
    val_loss: float
    val_auroc: float | None


@dataclass
class TrainingData:
    """Cached trunk features and targets: train views (V, N, ...), clean validation features (M, ...)."""

    train_views: torch.Tensor
    train_is_defect: torch.Tensor
    train_type: torch.Tensor  # defect type index, -1 for good parts
    val_features: torch.Tensor
    val_is_defect: torch.Tensor
    val_type: torch.Tensor


@dataclass
class TrainResult:
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False


def _loss_from_logits(
    defect_logit: torch.Tensor, type_logits: torch.Tensor, is_defect: torch.Tensor, types: torch.Tensor, weights: dict
) -> torch.Tensor:
    loss = nn.functional.binary_cross_entropy_with_logits(defect_logit, is_defect, pos_weight=weights["pos"])
    defective = types >= 0
    if defective.any() and type_logits.shape[1] > 1:
        type_loss = nn.functional.cross_entropy(type_logits[defective], types[defective], weight=weights["types"])
        loss = loss + weights["type_loss"] * type_loss
    return loss


def _losses(
    model: DefectClassifier, features: torch.Tensor, is_defect: torch.Tensor, types: torch.Tensor, weights: dict
) -> torch.Tensor:
    defect_logit, type_logits = model.logits(features)
    return _loss_from_logits(defect_logit, type_logits, is_defect, types, weights)


def _class_weights(data: TrainingData, num_types: int, config: TrainConfig) -> dict[str, Any]:
    n_defect = float(data.train_is_defect.sum())
    n_good = float(len(data.train_is_defect)) - n_defect
    # Balance the binary loss so a rare defect class still pulls; clipped so a handful of defects can't dominate.
    pos = torch.tensor(min(max(n_good / max(n_defect, 1.0), 0.2), 10.0))
    counts = torch.bincount(data.train_type[data.train_type >= 0], minlength=num_types).float()
    types = counts.sum() / (num_types * counts.clamp(min=1.0))
    return {"pos": pos, "types": types, "type_loss": config.defect_type_loss_weight}


def _memory_format(device: torch.device) -> torch.memory_format:
    """The layout the fine-tune runs its convolutions in. On a CPU, channels-last: oneDNN's depthwise convolution
    backward, most of a fine-tune step's time, runs about 1.4x faster in it
    (docs/decisions/0010-channels-last-fine-tune.md). Under torchrun too, so that ranks compute what one process
    computes. Elsewhere (GPUs), as before."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def _to_device(features: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Cached float16 trunk features -> float32 on `device`, in the fine-tune's layout."""
    return features.to(device, torch.float32, memory_format=_memory_format(device))  # one copy, not two


@torch.no_grad()
def _validate(
    model: DefectClassifier, data: TrainingData, weights: dict, batch_size: int, device: torch.device
) -> tuple[float, float | None]:
    model.eval()
    losses, scores = [], []
    for features, is_defect, types in zip(
        batched(data.val_features, batch_size),
        batched(data.val_is_defect, batch_size),
        batched(data.val_type, batch_size),
        strict=True,
    ):
        # The cache is float16 and on the CPU, wherever the model is.
        features, is_defect, types = _to_device(features, device), is_defect.to(device), types.to(device)
        losses.append(float(_losses(model, features, is_defect, types, weights)))
        scores.append(torch.sigmoid(model.logits(features)[0]).cpu())
    score = torch.cat(scores).numpy() if scores else np.zeros(0)
    return float(np.mean(losses)) if losses else math.nan, auroc(data.val_is_defect.numpy(), score)


def _freeze_for_finetune(model: DefectClassifier) -> None:
    model.train()
    model.trunk.eval()
    # Batch-norm layers keep their pretrained running statistics: re-estimating them from small batches of a
    # small dataset shifts every embedding away from what the probe fitted the heads to (the loss jumps 10x).
    for module in model.upper.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    for parameter in model.trunk.parameters():
        parameter.requires_grad_(False)


@torch.no_grad()
def _embeddings(model: DefectClassifier, features: torch.Tensor, device: torch.device, batch: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model.embed(_to_device(features[i : i + batch], device)) for i in range(0, len(features), batch)])


def fit_linear_probe(
    model: DefectClassifier, data: TrainingData, config: TrainConfig, weights: dict, device: torch.device
) -> EpochStats:
    """Fit the heads on frozen pooled embeddings of every training view (cheap, full-batch), keep the best.

    A well-started head stops the fine-tune's first epochs from wrecking the pretrained upper stages with
    gradients from a random classifier.
    """
    views, _n_train = data.train_views.shape[:2]
    train = _embeddings(model, data.train_views.flatten(0, 1), device, config.batch_size)
    val = _embeddings(model, data.val_features, device, config.batch_size)
    is_defect = data.train_is_defect.repeat(views).to(device)
    types = data.train_type.repeat(views).to(device)
    optimizer = torch.optim.AdamW(model.head_parameters(), lr=config.probe_learning_rate, weight_decay=1e-2)
    heads = (model.defect_head, model.type_head)
    best: tuple[tuple[float, float], list[dict], float] | None = None
    for step in range(config.probe_steps):
        loss = _loss_from_logits(heads[0](train).squeeze(1), heads[1](train), is_defect, types, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 20 == 19 or step == config.probe_steps - 1:
            with torch.no_grad():
                val_logit = heads[0](val).squeeze(1)
                val_loss = float(
                    _loss_from_logits(
                        val_logit, heads[1](val), data.val_is_defect.to(device), data.val_type.to(device), weights
                    )
                )
                val_auroc = auroc(data.val_is_defect.numpy(), torch.sigmoid(val_logit).cpu().numpy())
            key = (val_auroc if val_auroc is not None else 0.0, -val_loss)
            if best is None or key > best[0]:
                best = (key, [copy.deepcopy(h.state_dict()) for h in heads], loss.item())
    assert best is not None
    for head, state in zip(heads, best[1], strict=True):
        head.load_state_dict(state)
    val_loss, val_auroc = _validate(model, data, weights, config.batch_size, device)
    return EpochStats(0, "probe", best[2], val_loss, val_auroc)


def train_classifier(
    model: DefectClassifier,
    data: TrainingData,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Linear probe, then fine-tune heads and upper stages on cached trunk features; returns with the best
    validation weights loaded. Epoch 0 is the probe; fine-tune epochs are 1..epochs. Under torchrun, `on_epoch`
    and the checkpoint are rank 0's alone."""
    model.to(device)
    model.to(memory_format=_memory_format(device))
    num_types = model.type_head.out_features
    weights = {
        k: v.to(device) if isinstance(v, torch.Tensor) else v
        for k, v in _class_weights(data, num_types, config).items()
    }
    for parameter in model.trunk.parameters():
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.head_parameters(), "lr": config.learning_rate},
            {"params": model.upper_parameters(), "lr": config.backbone_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    base_rates = [group["lr"] for group in optimizer.param_groups]
    result, best_key, best_state, start_epoch, stale = TrainResult(), (-math.inf, -math.inf), None, 0, 0
    saved = None
    if resume and checkpoint_path and distributed.is_main_process() and checkpoint_path.exists():
        # Ranks receive the checkpoint pickled from rank 0, so it is read onto the CPU there, not onto cuda:0.
        location = torch.device("cpu") if distributed.is_distributed() else device
        saved = torch.load(checkpoint_path, map_location=location, weights_only=False)
    # Every rank starts where rank 0 does, whether or not the checkpoint's file system is shared with it.
    saved = distributed.broadcast_object(saved)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        result.history = [EpochStats(**row) for row in saved["history"]]
        best_key, best_state, stale = tuple(saved["best_key"]), saved["best_state"], saved["stale"]
        result.best_epoch, start_epoch = saved["best_epoch"], saved["epoch"] + 1
    distributed.broadcast_module(model)

    views, n_train = data.train_views.shape[0], data.train_views.shape[1]
    trainable = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    # With `weight_average_decay`, validation, early stopping and the kept weights use the running average of the
    # fine-tune's weights; it starts from the probed weights at the first fine-tune step.
    average: WeightAverage | None = None
    if config.weight_average_decay is not None and saved is not None and saved.get("weight_average") is not None:
        average = WeightAverage(model, config.weight_average_decay)
        average.load_state_dict(saved["weight_average"])
    for epoch in range(start_epoch, config.epochs + 1):
        torch.manual_seed(seed * 1000 + epoch)
        if epoch == 0:
            # Under torchrun rank 0 fits the probe and its heads overwrite the others': cheap, and unlike a fit on
            # every rank it cannot leave the ranks' weights a rounding error apart.
            stats = fit_linear_probe(model, data, config, weights, device) if distributed.is_main_process() else None
            stats = distributed.broadcast_object(stats)
            assert stats is not None
            distributed.broadcast_module(model)
            judged_state = copy.deepcopy(model.state_dict())
        else:
            _freeze_for_finetune(model)
            if config.weight_average_decay is not None and average is None:
                average = WeightAverage(model, config.weight_average_decay)
            # Seeded per epoch, so a resumed run draws exactly the batches an uninterrupted one would.
            generator = torch.Generator().manual_seed(seed * 1000 + epoch)
            order = torch.randperm(n_train, generator=generator)
            chosen_view = torch.randint(views, (n_train,), generator=generator)
            losses = []
            for start in range(0, n_train, config.batch_size):
                index = order[start : start + config.batch_size]
                if len(index) < 2:  # batch-norm cannot train on a single sample
                    continue
                for group, rate in zip(optimizer.param_groups, base_rates, strict=True):
                    group["lr"] = rate * learning_rate_factor(epoch, start / n_train, config)
                if distributed.is_distributed():
                    step_loss = _shared_step(model, optimizer, trainable, data, index, chosen_view, weights, device)
                else:
                    step_loss = _local_step(model, optimizer, data, index, chosen_view, weights, device)
                if step_loss is not None:
                    losses.append(step_loss)
                if average is not None:
                    average.update(model)
            # Rank 0 validates and every rank takes its figures, so early stopping and the best epoch are one
            # decision, not one per rank (a rank that stopped alone would hang the others' next all-reduce).
            with _judged(model, average):  # one set of weights is validated and, if best, kept
                validated = (
                    _validate(model, data, weights, config.batch_size, device)
                    if distributed.is_main_process()
                    else None
                )
                validated = distributed.broadcast_object(validated)
                judged_state = copy.deepcopy(model.state_dict())
            assert validated is not None
            val_loss, val_auroc = validated
            stats = EpochStats(epoch, "finetune", float(np.mean(losses)), val_loss, val_auroc)
        result.history.append(stats)
        key = (stats.val_auroc if stats.val_auroc is not None else 0.0, -stats.val_loss)
        if key > best_key:
            best_key, best_state, stale, result.best_epoch = key, judged_state, 0, epoch
        else:
            stale += 1
        if checkpoint_path and distributed.is_main_process():
            _save_checkpoint(checkpoint_path, epoch, model, optimizer, result, best_key, best_state, stale, average)
        if on_epoch and distributed.is_main_process():
            on_epoch(stats)
        if stops_early(epoch, stale, config):
            result.stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to(memory_format=torch.contiguous_format)  # what export, scoring and the saved weights expect
    model.eval()
    return result


def _judged(model: DefectClassifier, average: WeightAverage | None) -> contextlib.AbstractContextManager[None]:
    """The weights an epoch is judged and kept by: the running average when there is one, else the model's own."""
    return average.applied(model) if average is not None else contextlib.nullcontext()


def _batch(
    data: TrainingData, index: torch.Tensor, chosen_view: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training images at `index`, each in its chosen cached view, with their defect and type targets."""
    features = _to_device(data.train_views[chosen_view[index], index], device)
    return features, data.train_is_defect[index].to(device), data.train_type[index].to(device)


def _local_step(
    model: DefectClassifier,
    optimizer: torch.optim.Optimizer,
    data: TrainingData,
    index: torch.Tensor,
    chosen_view: torch.Tensor,
    weights: dict,
    device: torch.device,
) -> float:
    """One batch in a plain process: forward, backward, step; returns the batch's loss."""
    loss = _losses(model, *_batch(data, index, chosen_view, device), weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _shared_step(
    model: DefectClassifier,
    optimizer: torch.optim.Optimizer,
    trainable: list[nn.Parameter],
    data: TrainingData,
    index: torch.Tensor,
    chosen_view: torch.Tensor,
    weights: dict,
    device: torch.device,
) -> float | None:
    """One global batch under torchrun: this rank's share forward and backward, the gradients averaged over the
    ranks by share size (the same gradient a plain process gets from the whole batch's mean loss, up to the
    type loss's per-class weighting), then the same optimizer step on every rank. Returns the batch's loss, or
    None when no rank has a share it can train on (then no rank steps and none calls a collective).

    Gradients are all-reduced by hand rather than through DistributedDataParallel: the fine-tune calls
    `model.logits`, not `forward`, which DDP's reducer hooks into; a share without a defective sample leaves the
    type head without a gradient, which DDP refuses unless it searches the graph for unused parameters every
    step; and a rank whose share is too small must still join the all-reduce without a backward pass."""
    rank, world_size = distributed.rank(), distributed.world_size()
    shares = [distributed.batch_share(index, r, world_size) for r in range(world_size)]
    # Batch-norm cannot train on a single sample: a share of one sits the step out (with weight 0), everywhere
    # alike, since every rank computes every rank's share.
    sizes = [len(share) if len(share) >= 2 else 0 for share in shares]
    total = sum(sizes)
    if total == 0:
        return None
    optimizer.zero_grad(set_to_none=True)
    loss = torch.zeros((), device=device)
    if sizes[rank]:
        loss = _losses(model, *_batch(data, shares[rank], chosen_view, device), weights)
        loss.backward()
    batch_loss = distributed.average_gradients(trainable, sizes[rank] / total, loss)
    optimizer.step()
    return batch_loss


def _save_checkpoint(
    path: Path,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    result: TrainResult,
    best_key: tuple,
    best_state: dict | None,
    stale: int,
    average: WeightAverage | None = None,
) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": [asdict(s) for s in result.history],
        "best_key": list(best_key),
        "best_state": best_state,
        "best_epoch": result.best_epoch,
        "stale": stale,
        "weight_average": None if average is None else average.state_dict(),
    }
    with atomic_target(path) as tmp:
        torch.save(state, tmp)
