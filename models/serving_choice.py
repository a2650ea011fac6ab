"""What a version serves: which ONNX file, at which threshold and on what evidence, told apart across exports.

A version serves its accepted INT8 export when there is one, else its fp32 export (`serving_file`). Its served
threshold is QA's `served_threshold` tag when it was chosen on the file that serves, else training's calibrated
one (`current_threshold`); the evidence for choosing one is the served scores of that file
(`read_served_scores`: the INT8 file's own while it serves). An export of the same version can put another file in
service without moving any alias: a replica notices by the file's stamp (path, size, modification time: cheap,
local); a threshold QA chose records the file's identity (name and content digest: the same on every machine that
holds the file, a replica's downloaded copy too). The champion and the challenger (the one scored in shadow) are
chosen the same way (`champion_model`, `challenger_model`), by training, the CLI and every replica alike.
Thresholds here are in served units: what the server compares a part's `defect_probability` with. Moving QA's
threshold is models/threshold_moves.py's job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inspection.operating_curve import point_at
from inspection.report import EvaluationReport
from inspection.settings import Settings
from models import registry
from models.artifacts import FP32_FILE, INT8_FILE, int8_served_scores_path, onnx_dir, served_scores_path

# Export writes model.int8.onnx only when INT8 passed its accuracy gate, so its presence is the decision.
SERVING_PREFERENCE = (INT8_FILE, FP32_FILE)

THRESHOLD_TAG = "served_threshold"
SET_AT_TAG = "threshold_set_at"
SET_BY_TAG = "threshold_set_by"
REASON_TAG = "threshold_reason"
RULE_TAG = "threshold_rule"

# The served file QA's threshold was chosen on ("<file name>:<16 hex of its SHA-256>"), written after the threshold
# itself: a reader between the two writes sees a mismatch and serves the file's own threshold. Empty or missing (a
# version not yet exported, or a threshold set before this tag existed): the threshold applies to any file.
FILE_TAG = "threshold_file"

log = logging.getLogger(__name__)
_identities: dict[tuple[str, int, int], str] = {}  # file stamp -> identity: each file is hashed once


def file_stamp(path: Path) -> tuple[str, int, int]:
    """Path, size and modification time: a re-exported file at the same path is a new file."""
    try:
        stat = path.stat()
    except OSError:
        return str(path), -1, -1
    return str(path), stat.st_size, stat.st_mtime_ns


def served_file_identity(path: Path) -> str:
    """The file's name and 16 hex of its SHA-256. Hashed once per stamp, since replicas ask at every poll:
    hashing ELPV's 13.5 MB export took 9-15 ms, a cached answer 0.014 ms (2026-12-06, five timings). Raises
    OSError when the file cannot be read (replaced while being read)."""
    stamp = file_stamp(path)
    if stamp not in _identities:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _identities[stamp] = f"{path.name}:{digest.hexdigest()[:16]}"
    return _identities[stamp]


def current_file_identity(info: registry.ModelVersionInfo) -> str:
    """The identity of the file the version serves now, or "" when it is not exported (or is being replaced)."""
    path = serving_file(info.artifacts)
    try:
        return "" if path is None else served_file_identity(path)
    except OSError:  # replaced by an export while being read; that export moves the threshold onto its file
        return ""


def threshold_applies(tags: Mapping[str, str], path: Path) -> bool:
    """Whether QA's served threshold in `tags` was chosen on the file at `path` (or on no particular file)."""
    chosen_on = tags.get(FILE_TAG)
    if not chosen_on:
        return True
    try:
        return chosen_on == served_file_identity(path)
    except OSError:  # replaced by an export while being read: not the file it was chosen on, as far as is known
        return False


def serving_file(artifacts: Path) -> Path | None:
    """The ONNX file to serve from a version's artifacts (INT8 when accepted, else fp32), or None if not exported."""
    for name in SERVING_PREFERENCE:
        if (candidate := onnx_dir(artifacts) / name).exists():
            return candidate
    return None


def served_evidence_path(artifacts: Path) -> Path:
    """The served scores of the file that serves: the INT8 file's own when it serves (its scores sit a little
    apart from fp32's, so a threshold chosen on fp32's would run the line at a point nobody measured), else
    training's."""
    serving = serving_file(artifacts)
    if serving is not None and serving.name == INT8_FILE:
        return int8_served_scores_path(artifacts)
    return served_scores_path(artifacts)


@dataclass(frozen=True)
class LabeledScores:
    """One split's labels (1 = defective) and served scores."""

    labels: np.ndarray
    scores: np.ndarray

    @property
    def n_defect(self) -> int:
        return int(self.labels.sum())

    @property
    def n_good(self) -> int:
        return int(self.labels.size - self.labels.sum())

    def point(self, threshold: float) -> dict[str, Any]:
        return point_at(self.labels, self.scores, threshold)


@dataclass(frozen=True)
class ServedScores:
    """What training recorded for choosing a served threshold later: the calibrated one and both splits."""

    calibrated_threshold: float
    validation: LabeledScores
    test: LabeledScores


def _split(data: Any) -> LabeledScores:
    labels = np.asarray(data["labels"], dtype=np.int64)
    scores = np.asarray(data["scores"], dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError("labels and scores differ in shape")
    return LabeledScores(labels, scores)


def read_served_scores(info: registry.ModelVersionInfo) -> ServedScores | None:
    """The served scores of the file the version serves (its accepted INT8 export's own, else training's), or
    None (trained before they were recorded, or unreadable)."""
    path = served_evidence_path(info.artifacts)
    try:
        data = json.loads(path.read_text())
        return ServedScores(float(data["threshold"]), _split(data["validation"]), _split(data["test"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("unreadable served scores %s: %s", path, exc)
        return None


def tagged_threshold(tags: Mapping[str, str]) -> float | None:
    """The QA-set served threshold in a version's tags, or None (not set, or not a finite number)."""
    text = tags.get(THRESHOLD_TAG)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        log.warning("ignoring served_threshold tag %r: not a number", text)
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ServedThreshold:
    """The threshold a version serves and where it comes from: QA's tag, or training's calibration."""

    value: float
    source: Literal["qa", "calibrated"]
    set_at: str | None = None
    set_by: str | None = None
    reason: str | None = None
    rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.value,
            "source": self.source,
            "set_at": self.set_at,
            "set_by": self.set_by,
            "reason": self.reason,
            "rule": self.rule,
        }


def calibrated_served_threshold(info: registry.ModelVersionInfo, scores: ServedScores | None) -> float | None:
    """The served threshold training calibrated (from the served scores, else the report's curve), or None."""
    if scores is not None:
        return scores.calibrated_threshold
    curve = report_curve(info)
    return None if curve is None else curve.threshold


def current_threshold(info: registry.ModelVersionInfo, scores: ServedScores | None = None) -> ServedThreshold | None:
    """The threshold the version serves: QA's tag when set on the file that serves (as replicas apply it), else
    the calibrated one; None when neither is known (a version trained before the curve was recorded serves its
    ONNX file's threshold)."""
    tagged = tagged_threshold(info.tags)
    served = serving_file(info.artifacts)
    if tagged is not None and (served is None or threshold_applies(info.tags, served)):
        tags = info.tags
        return ServedThreshold(
            tagged, "qa", tags.get(SET_AT_TAG), tags.get(SET_BY_TAG), tags.get(REASON_TAG), tags.get(RULE_TAG)
        )
    calibrated = calibrated_served_threshold(info, scores)
    return None if calibrated is None else ServedThreshold(calibrated, "calibrated")


@dataclass(frozen=True)
class ServedModel:
    """An exported version as a replica serves it: its file, and QA's threshold when chosen on that file."""

    product: str
    version: int
    path: Path
    threshold: float | None = None  # QA's served threshold (version tag); None: the ONNX metadata's


def _served_model(product: str, info: registry.ModelVersionInfo | None) -> ServedModel | None:
    if info is None:
        return None
    path = serving_file(info.artifacts)
    if path is None:
        return None
    # QA's threshold only on the file it was chosen on; between an export and its threshold, the file's own.
    threshold = tagged_threshold(info.tags) if threshold_applies(info.tags, path) else None
    return ServedModel(product, info.version, path, threshold)


def champion_model(settings: Settings, product: str) -> ServedModel | None:
    """The exported champion of `product`, or None (no model, or champion not exported yet)."""
    return _served_model(product, registry.champion(settings, product))


def challenger_model(settings: Settings, product: str) -> ServedModel | None:
    """The exported challenger of `product`, or None (no challenger, or not exported yet)."""
    return _served_model(product, registry.challenger(settings, product))


def report_curve(info: registry.ModelVersionInfo) -> Any:
    """The operating curve of the version's evaluation report, or None (no report, or not the shape written)."""
    report = registry.read_report(info)
    if report is None:
        return None
    try:
        return EvaluationReport.from_json(report).operating_curve
    except ValueError:  # pydantic's ValidationError: not the shape the pipeline writes
        return None
