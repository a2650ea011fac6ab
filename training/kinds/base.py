"""What the training skeleton hands a kind and what a kind hands back (see models.kinds.ModelKind)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.layout import ImageRecord
from datasets.splits import Split
from inspection.batching import batched
from inspection.imaging import read_image
from inspection.preprocessing import PreprocessSpec
from inspection.product_config import ProductConfig
from inspection.progress import progress_task
from inspection.settings import Settings
from training.predict import Predictions


@dataclass
class TrainingJob:
    """One `inspection train` run: the product's resolved config, its records and frozen splits, where to train."""

    settings: Settings
    product: str
    config: ProductConfig
    records: list[ImageRecord]
    parts: dict[Split, list[ImageRecord]]
    spec: PreprocessSpec
    device: torch.device
    resume: bool = False

    @property
    def train_goods(self) -> list[ImageRecord]:
        return [r for r in self.parts["train"] if not r.is_defect]

    @property
    def checkpoint(self) -> Path:
        """Where a resumable run keeps its per-epoch checkpoint (deleted once the version is registered)."""
        return self.settings.run_dir(self.product) / "checkpoint.pt"


@dataclass
class Fitted:
    """A kind's fitted parts, the validation scores calibration works on, and what the report should say."""

    parts: Any  # the kind's own fitted objects (a model, a (classifier, patchcore, fusion) tuple, ...)
    val_scores: np.ndarray  # in the units the threshold is calibrated in
    info: dict[str, Any] = field(default_factory=dict)  # into the bundle's `info` (and the model card)
    training: dict[str, Any] = field(default_factory=dict)  # into the report's `training` block
    report: dict[str, Any] = field(default_factory=dict)  # fit-time evidence for `report_extras`
    cleanup: Callable[[], None] = lambda: None  # after the version is registered (e.g. delete the checkpoint)


@dataclass(frozen=True)
class Scores:
    """Scores of one record set: report predictions in the bundle's threshold units, maps when the kind has
    them (N, S, S), named per-part scores for comparisons (the hybrid's components), and the scores in the
    units the threshold was calibrated in when those are not the predictions' (the hybrid's fused z)."""

    predictions: Predictions
    maps: np.ndarray | None = None
    components: dict[str, np.ndarray] = field(default_factory=dict)
    calibration: np.ndarray | None = None

    @property
    def calibration_units(self) -> np.ndarray:
        """The scores in the units of `Fitted.val_scores`, what `ModelKind.served_scores` maps."""
        return self.predictions.defect_probability if self.calibration is None else self.calibration


def decoded_batches(records: Sequence[ImageRecord], batch_size: int, name: str) -> Iterator[list[np.ndarray]]:
    """Decode records in batches of `batch_size`, advancing a progress bar named `scoring <name>`."""
    with progress_task(f"scoring {name}", len(records)) as advance:
        for chunk in batched(records, batch_size):
            yield [read_image(r.path) for r in chunk]
            advance(len(chunk))


@dataclass(frozen=True)
class ExportedOnnx:
    """A kind's export: the raw traced file (what INT8 quantizes), the optimized fp32 file, and its parity check."""

    raw: Path
    fp32: Path
    parity: Any  # models.onnx_parity.ParityResult or models.anomaly_export.ServedAnomalyParity
