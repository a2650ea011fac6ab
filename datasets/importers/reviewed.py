"""`inspection datasets import reviewed P`: QA-reviewed line frames from the archive into the product's dataset.

Each inspection of the product that QA labelled (feedback) and whose archived frame still exists becomes
`<QA label>/reviewed-<inspection id><ext>`: the QA label is the ground truth, whatever the model said. Provenance
(line, camera, frame, times, the model's verdict, who reviewed it) goes into metadata.jsonl with
`source: "reviewed"` and the group `inspection:<id>`, which datasets.splits uses to keep these frames out of the
frozen test split.

The import is idempotent and repairs itself: the inspection id names the file, so a rerun finds frames already
imported (moving them when QA changed the label since), and an image copied before a crash but missing from
metadata.jsonl gets its metadata on the next run. Images are copied through a temp file and a rename;
metadata.jsonl is written atomically once at the end.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from datasets.layout import image_files, label_folders, read_metadata, scan_dataset, write_metadata
from datasets.splits import REVIEWED_SOURCE, SPLITS_FILE, assign_splits, is_reviewed, product_splits
from inspection.atomic import write_atomic_bytes
from inspection.errors import DatasetError, InspectionError
from inspection.frame_archive import open_archive
from inspection.imaging import IMAGE_SUFFIXES, decode_image
from inspection.names import validate_label, validate_product_name
from inspection.product_config import load_product_config
from inspection.settings import Settings
from inspection.storage.schema import Inspection

FILE_PREFIX = "reviewed-"
# The id becomes part of a file name; the server's ids are UUIDs, anything else must not reach the file system.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class ReviewedImportReport:
    """What an import of reviewed frames added, moved and skipped, and where the reviewed frames now sit."""

    product: str
    root: Path
    imported: dict[str, int] = field(default_factory=dict)  # label -> frames newly copied in
    already_present: int = 0
    relabelled: int = 0  # moved to another label folder because QA changed the label
    repaired: int = 0  # found on disk without metadata (an interrupted import) and completed
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (inspection id, reason)
    sides: dict[str, int] = field(default_factory=dict)  # split -> reviewed images of the whole dataset
    splits_frozen: bool = False  # False: sides are what the first training run will freeze

    @property
    def total_imported(self) -> int:
        return sum(self.imported.values())


def _as_utc(moment: datetime) -> datetime:
    # SQLite stores UTC wall-clock time without an offset, so a naive value is taken to be UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _as_utc(moment).isoformat()


def parse_since(text: str) -> datetime:
    """A date (`2026-11-30`, its midnight) or an ISO 8601 datetime, as aware UTC (naive input is UTC)."""
    try:
        return _as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise InspectionError(f"--since must be an ISO 8601 date or datetime, got {text!r}") from None


def _reviewed_rows(sessions: sessionmaker[Session], product: str, since: datetime | None) -> list[Inspection]:
    """The product's inspections with a QA label, reviewed at or after `since`, oldest review first."""
    query = select(Inspection).where(Inspection.product == product, Inspection.feedback_label.is_not(None))
    if since is not None:
        query = query.where(Inspection.feedback_at >= _as_utc(since))
    with sessions() as session:
        return list(session.scalars(query.order_by(Inspection.feedback_at, Inspection.id)).all())


def _provenance(row: Inspection) -> dict[str, Any]:
    """The metadata.jsonl entry of a reviewed frame: where it came from and what the model said."""
    return {
        "source": REVIEWED_SOURCE,
        "group": f"inspection:{row.id}",
        "inspection_id": row.id,
        "line_id": row.line_id,
        "camera_id": row.camera_id,
        "frame_id": row.frame_id,
        "captured_at": _iso(row.captured_at),
        "received_at": _iso(row.received_at),
        "model_version": row.model_version,
        "model_verdict": row.verdict,
        "model_defect_probability": row.defect_probability,
        "model_defect_type": row.defect_type,
        "feedback_by": row.feedback_by,
        "feedback_at": _iso(row.feedback_at),
    }


def _files_on_disk(root: Path) -> dict[str, list[str]]:
    """inspection id -> relpaths of reviewed images in the label folders (normally one)."""
    found: dict[str, list[str]] = {}
    for folder in label_folders(root):
        for image in image_files(folder):
            if image.stem.startswith(FILE_PREFIX):
                found.setdefault(image.stem.removeprefix(FILE_PREFIX), []).append(f"{folder.name}/{image.name}")
    return found


def _metadata_by_id(metadata: dict[str, dict[str, Any]]) -> dict[str, str]:
    """inspection id -> relpath, for the metadata entries of reviewed frames."""
    return {
        str(meta["inspection_id"]): relpath
        for relpath, meta in metadata.items()
        if meta.get("source") == REVIEWED_SOURCE and "inspection_id" in meta
    }


def _require_dataset(root: Path, product: str) -> None:
    if not root.is_dir() or not label_folders(root):
        raise DatasetError(
            f"product {product!r} has no dataset at {root}: import the base dataset first "
            "(`inspection datasets import folder|elpv` or `inspection datasets synth`)"
        )


class _Importer:
    """One pass over the reviewed rows; keeps the dataset's metadata in memory until the end."""

    def __init__(self, settings: Settings, root: Path, report: ReviewedImportReport) -> None:
        self.archive = open_archive(settings)  # the local folder, or the object store every replica writes to
        self.root = root
        self.report = report
        self.metadata = read_metadata(root)
        self.original_metadata = json.dumps(self.metadata, sort_keys=True)
        self.by_id = _metadata_by_id(self.metadata)
        self.on_disk = _files_on_disk(root)

    def place(self, row: Inspection) -> None:
        """Bring one reviewed frame into the dataset under its QA label, or report why it was skipped."""
        if not _SAFE_ID.fullmatch(row.id):
            self.report.skipped.append((row.id, "inspection id cannot name a file"))
            return
        try:
            label = validate_label(str(row.feedback_label))
        except InspectionError as exc:
            self.report.skipped.append((row.id, f"QA label: {exc}"))
            return
        recorded = self.by_id.get(row.id)  # where metadata.jsonl last put it
        current = self._current_file(row.id)
        if current is None:
            relpath = self._copy_from_archive(row, label)
            if relpath is None:
                return
        else:
            relpath = self._move_to_label(current, label)
            self._count_existing(recorded, relpath)
        if recorded is not None and recorded != relpath:
            self.metadata.pop(recorded, None)
        self.metadata[relpath] = _provenance(row)
        self.by_id[row.id] = relpath

    def _current_file(self, inspection_id: str) -> str | None:
        """The frame's relpath on disk now, or None; extra copies (made only by hand) are removed, one kept."""
        paths = self.on_disk.get(inspection_id, [])
        if not paths:
            return None
        recorded = self.by_id.get(inspection_id)
        keep = recorded if recorded in paths else paths[0]
        for extra in paths:
            if extra != keep:
                (self.root / extra).unlink(missing_ok=True)
        return keep

    def _count_existing(self, recorded: str | None, relpath: str) -> None:
        # Compared with metadata, not with the file's folder: a relabel interrupted after the move still counts.
        if recorded is None:
            self.report.repaired += 1
        elif recorded != relpath:
            self.report.relabelled += 1
        else:
            self.report.already_present += 1

    def _move_to_label(self, relpath: str, label: str) -> str:
        """Move an imported frame into `label`'s folder (a rename: atomic, same file system); its new relpath."""
        name = Path(relpath).name
        target = f"{label}/{name}"
        if target != relpath:
            (self.root / label).mkdir(exist_ok=True)
            (self.root / relpath).replace(self.root / target)
        return target

    def _copy_from_archive(self, row: Inspection, label: str) -> str | None:
        """Check the archived frame decodes, then copy it in atomically; its relpath, or None when skipped."""
        source = row.archive_path
        data = self.archive.read(source)
        if source is None or data is None:
            reason = "frame was not archived" if not source else "archived frame is missing or outside the archive"
            self.report.skipped.append((row.id, reason))
            return None
        suffix = PurePosixPath(source).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            self.report.skipped.append((row.id, f"archived frame has unsupported file type {suffix or '(none)'}"))
            return None
        try:
            decode_image(data)  # the bytes checked are the bytes written
        except Exception as exc:  # decoders raise many types for garbage input; a bad frame must not stop the import
            self.report.skipped.append((row.id, f"archived frame {source} is unreadable: {exc}"))
            return None
        relpath = f"{label}/{FILE_PREFIX}{row.id}{suffix}"
        write_atomic_bytes(self.root / relpath, data)
        self.report.imported[label] = self.report.imported.get(label, 0) + 1
        return relpath

    def save_metadata(self) -> None:
        """Write metadata.jsonl once, atomically, and only when something changed (no churn on a no-op rerun)."""
        if json.dumps(self.metadata, sort_keys=True) != self.original_metadata:
            write_metadata(self.root, self.metadata)


def _count_sides(settings: Settings, root: Path, product: str, report: ReviewedImportReport) -> None:
    """How many reviewed images sit in each split; extends a frozen splits.json, never creates one."""
    config = load_product_config(settings.configs_dir, product).split
    records = scan_dataset(root)
    if (root / SPLITS_FILE).exists():
        # The frozen split keeps every saved side; the reviewed frames get recent or train, never test.
        assignment = product_splits(root, records, config)
        report.splits_frozen = True
    else:
        # Creating the split is the first training run's job; this is the side it will give each frame.
        assignment = assign_splits(
            records, config.val_fraction, config.test_fraction, config.seed, config.recent_fraction
        )
    report.sides = dict(Counter(assignment[r.relpath] for r in records if is_reviewed(r)))


def import_reviewed(
    settings: Settings,
    sessions: sessionmaker[Session],
    product: str,
    *,
    since: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ReviewedImportReport:
    """Import the product's QA-labelled, archived frames into its existing dataset under their QA labels.

    `since` keeps only frames whose QA feedback was given at or after it (naive: UTC). Frames that cannot be
    imported (not archived, file gone, undecodable, invalid label) are skipped and reported."""
    validate_product_name(product)
    root = settings.dataset_dir(product)
    _require_dataset(root, product)
    rows = _reviewed_rows(sessions, product, since)
    if on_total:
        on_total(len(rows))
    report = ReviewedImportReport(product=product, root=root)
    importer = _Importer(settings, root, report)
    try:
        for row in rows:
            importer.place(row)
            if on_progress:
                on_progress(1)
    finally:
        # Even after an unexpected error, the images already copied get their metadata.
        importer.save_metadata()
    _count_sides(settings, root, product, report)
    return report
