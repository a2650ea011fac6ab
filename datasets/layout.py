"""The on-disk dataset format of DESIGN.md: `<root>/<label>/<image>` plus optional `masks/<label>/<stem>.png`.

Per-image metadata (group key, importer-specific facts such as ELPV's defect probability) lives in
`<root>/metadata.jsonl`, one JSON object per line keyed by the image's relative path.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspection.atomic import write_atomic_text
from inspection.errors import DatasetError
from inspection.imaging import IMAGE_SUFFIXES
from inspection.names import GOOD_LABEL, RESERVED_FOLDERS

METADATA_FILE = "metadata.jsonl"
MASKS_DIR = "masks"


@dataclass(frozen=True)
class ImageRecord:
    """One labeled image of a dataset."""

    relpath: str  # "<label>/<file>", the image's identity inside the dataset
    label: str
    path: Path
    mask: Path | None = None
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_defect(self) -> bool:
        return self.label != GOOD_LABEL

    @property
    def group_key(self) -> str:
        """Images sharing a physical part share this key; ungrouped images are their own group."""
        return self.group if self.group is not None else self.relpath


def read_metadata(root: Path) -> dict[str, dict[str, Any]]:
    """relpath -> metadata dict, from metadata.jsonl (empty when absent)."""
    path = root / METADATA_FILE
    if not path.exists():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row.pop("path"): row for row in rows}


def write_metadata(root: Path, metadata: dict[str, dict[str, Any]]) -> None:
    """Write metadata.jsonl atomically, sorted by path so the file diffs cleanly."""
    lines = [json.dumps({"path": path, **meta}, sort_keys=True) for path, meta in sorted(metadata.items())]
    write_atomic_text(root / METADATA_FILE, "\n".join(lines) + ("\n" if lines else ""))


def label_folders(root: Path) -> list[Path]:
    """The label folders of a dataset root, sorted by name."""
    return sorted(
        p for p in root.iterdir() if p.is_dir() and p.name not in RESERVED_FOLDERS and not p.name.startswith(".")
    )


def image_files(folder: Path) -> list[Path]:
    """Image files of one label folder (by extension), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_dataset(root: Path) -> list[ImageRecord]:
    """All labeled images of an imported dataset, in a stable order."""
    if not root.is_dir():
        raise DatasetError(f"no dataset at {root}: import one with `inspection datasets import`")
    metadata = read_metadata(root)
    records = []
    for folder in label_folders(root):
        for image in image_files(folder):
            relpath = f"{folder.name}/{image.name}"
            meta = dict(metadata.get(relpath, {}))
            mask = root / MASKS_DIR / folder.name / f"{image.stem}.png"
            records.append(
                ImageRecord(
                    relpath=relpath,
                    label=folder.name,
                    path=image,
                    mask=mask if mask.exists() else None,
                    group=meta.pop("group", None),
                    meta=meta,
                )
            )
    return records


def label_counts(records: Iterable[ImageRecord]) -> dict[str, int]:
    """label -> number of images, "good" first, then defect types alphabetically."""
    counts = Counter(r.label for r in records)
    return {label: counts[label] for label in sorted(counts, key=lambda lab: (lab != GOOD_LABEL, lab))}


def require_trainable(records: list[ImageRecord], product: str) -> None:
    """Refuse datasets no model kind can learn from, with a message that says what is missing.

    Good images alone are enough: such a product trains the anomaly kind (good parts only)."""
    counts = label_counts(records)
    if not records:
        raise DatasetError(f"dataset of product {product!r} has no images")
    if GOOD_LABEL not in counts:
        raise DatasetError(
            f"dataset of product {product!r} has no 'good' images; every model kind needs good parts "
            "(a classifier needs defective examples too, an anomaly model learns from good ones alone)"
        )
