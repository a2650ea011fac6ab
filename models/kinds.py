"""The kinds of model a product can be trained as (classifier, anomaly, hybrid): an explicit registry.

A dict filled by a decorator, as timm registers its models: `@register_kind` on a class that implements
`ModelKind`. Train, export, evaluate and load look a kind up here by name and call its methods; nothing
dispatches on strings or `isinstance` elsewhere. The implementations live in `training/kinds/` (fitting needs
the training loop, which `models/` may not import) and `training.kinds` imports every one of them, so a fourth
kind is one new file there plus its import line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from inspection.errors import InspectionError


class ModelKind(Protocol):
    """What every kind provides to the one training skeleton, the export, the evaluation and the loader.

    `job`, `fitted` and `scores` are the training skeleton's own types (training.kinds.base); they are named
    `Any` here because `models/` sits below `training/` in the layering.
    """

    name: str
    supports_int8: bool  # whether `inspection export --int8` may quantize it (only with a measured gate)
    typed: bool  # whether it names defect types (False: one type, "anomaly")
    bundle_type: type

    def describe(self, job: Any) -> str:
        """A few words for the run header (after the label counts and split sizes)."""
        ...

    def params(self, job: Any) -> dict[str, Any]:
        """The kind's MLflow parameters (its schedule and settings)."""
        ...

    def fit(self, job: Any) -> Any:
        """Fit on the training split; return the fitted parts and the validation scores to calibrate on."""
        ...

    def fit_share(self, job: Any) -> None:
        """A torchrun rank above 0: its part in the data-parallel side of `fit` (nothing, for a kind without one);
        rank 0 runs `fit` itself, and the collectives of the two must match."""
        ...

    def extra_thresholds(self, val_labels: np.ndarray, val_scores: np.ndarray) -> dict[str, float]:
        """Other validation-chosen operating points to report beside the served one (same units as scores)."""
        ...

    def bundle(self, job: Any, fitted: Any, threshold: float, info: dict[str, Any]) -> Any:
        """The saved model: fitted parts, preprocessing, calibrated threshold and `info`."""
        ...

    def score(self, bundle: Any, records: Sequence[Any], name: str) -> Any:
        """Score records with PyTorch in the units of `bundle.threshold` (with maps when the kind has them)."""
        ...

    def served_scores(self, bundle: Any, scores: np.ndarray) -> np.ndarray:
        """Scores in the units the threshold was calibrated in (`Fitted.val_scores`, `Scores.calibration_units`)
        mapped to the served `defect_probability`, the number a served threshold is compared with; monotone
        non-decreasing, so it keeps every verdict's order."""
        ...

    def report_extras(self, bundle: Any, records: Sequence[Any], scores: Any, fitted: Any | None) -> dict[str, Any]:
        """Kind-specific report blocks (`anomaly`, `hybrid`, `components`, ...); `fitted` is None when a saved
        version is re-evaluated."""
        ...

    def export(self, bundle: Any, staging: Path, metadata: dict[str, Any], images: Sequence[np.ndarray]) -> Any:
        """Export to ONNX in `staging`, optimize, and check parity on decoded test images."""
        ...


KINDS: dict[str, ModelKind] = {}
K = TypeVar("K")


def register_kind(cls: Callable[[], K]) -> Callable[[], K]:
    """Class decorator: register one instance of the kind under its `name`."""
    instance = cls()
    name = instance.name  # type: ignore[attr-defined]
    if name in KINDS:
        raise ValueError(f"model kind {name!r} is registered twice")
    KINDS[name] = instance  # type: ignore[assignment]
    return cls


def get_kind(name: str) -> ModelKind:
    """The registered kind called `name`; a clear error naming the known ones otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS)) or "none (import training.kinds to register them)"
        raise InspectionError(f"unknown model kind {name!r}; known kinds: {known}") from None
