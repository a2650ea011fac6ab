"""`inspection datasets import folder SRC --product P`: copy a folder in the DESIGN.md layout, checking each image."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datasets.layout import (
    MASKS_DIR,
    image_files,
    label_counts,
    label_folders,
    require_trainable,
    scan_dataset,
    write_metadata,
)
from datasets.staging import staged_dataset
from inspection.errors import DatasetError, InspectionError
from inspection.imaging import IMAGE_SUFFIXES, read_image
from inspection.names import validate_label


@dataclass
class ImportReport:
    """What an import wrote and what it skipped, with the reason for each skipped file."""

    product: str
    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    masks: int = 0


def _count_images(src: Path) -> int:
    return sum(len(image_files(folder)) for folder in label_folders(src))


def import_folder(
    src: Path,
    dest: Path,
    product: str,
    *,
    group_pattern: str | None = None,
    replace: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import `src` (label folders, optional masks/) into `dest`; unreadable files are skipped and reported.

    A folder of good images alone is accepted (it trains the anomaly kind); one without good images is not.
    `group_pattern` is a regex whose first group, searched in the file stem, names the physical part the image
    shows, so that all views of one part land on the same side of the split.
    """
    if not src.is_dir():
        raise DatasetError(f"source folder {src} does not exist")
    grouping = re.compile(group_pattern) if group_pattern else None
    report = ImportReport(product=product, root=dest)
    if on_total:
        on_total(_count_images(src))
    with staged_dataset(dest, replace=replace) as staging:
        metadata: dict[str, dict[str, object]] = {}
        seen_labels: dict[str, Path] = {}
        for folder in label_folders(src):
            try:
                label = validate_label(folder.name.lower())
                if label in seen_labels:
                    raise InspectionError(f"label {label!r} already imported from {seen_labels[label]}")
            except InspectionError as exc:
                report.skipped.append((str(folder), str(exc)))
                if on_progress:
                    on_progress(len(image_files(folder)))
                continue
            seen_labels[label] = folder
            files = sorted(p for p in folder.iterdir() if p.is_file())
            for path in files:
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    report.skipped.append((str(path), f"unsupported file type {path.suffix or '(none)'}"))
                    continue
                try:
                    image = read_image(path)
                except InspectionError as exc:
                    report.skipped.append((str(path), str(exc)))
                    if on_progress:
                        on_progress(1)
                    continue
                target = staging / label / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                report.masks += _copy_mask(src, folder.name, label, path, image.shape[:2], staging, report)
                if grouping and (match := grouping.search(path.stem)):
                    metadata[f"{label}/{path.name}"] = {"group": match.group(1) if match.groups() else match.group(0)}
                if on_progress:
                    on_progress(1)
            if not any((staging / label).glob("*")):
                report.skipped.append((str(folder), "no readable images in this label folder"))
        records = scan_dataset(staging)
        require_trainable(records, product)
        write_metadata(staging, metadata)
        report.counts = label_counts(records)
    return report


def _copy_mask(
    src: Path,
    folder_name: str,
    label: str,
    image: Path,
    shape: tuple[int, ...],
    staging: Path,
    report: ImportReport,
) -> int:
    mask = src / MASKS_DIR / folder_name / f"{image.stem}.png"
    if not mask.exists():
        return 0
    try:
        pixels = read_image(mask)
    except InspectionError as exc:
        report.skipped.append((str(mask), str(exc)))
        return 0
    if pixels.shape[:2] != shape:
        report.skipped.append((str(mask), f"mask is {pixels.shape[:2]}, image is {shape}"))
        return 0
    target = staging / MASKS_DIR / label / mask.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mask, target)
    return 1
