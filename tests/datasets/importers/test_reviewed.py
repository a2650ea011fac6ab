"""Tests for `inspection datasets import reviewed`: QA-labelled archived frames into a product's dataset.

Real SQLite database, real archived PNG/JPEG files, a small synthetic base dataset; each test runs in well under a
second.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from datasets.importers.reviewed import ReviewedImportReport, import_reviewed, parse_since
from datasets.layout import ImageRecord, read_metadata, scan_dataset
from datasets.splits import (
    SPLITS_FILE,
    assign_splits,
    is_reviewed,
    load_or_create_splits,
    split_records,
)
from datasets.synth import generate_synthetic_product
from inspection.errors import DatasetError, InspectionError
from inspection.settings import Settings
from inspection.storage.database import open_database
from inspection.storage.inspections import add_inspection, record_feedback
from inspection.storage.schema import Inspection

PRODUCT = "widget"
OTHER = "gadget"
VAL, TEST, SEED = 0.15, 0.2, 0
RECEIVED = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def sessions(settings: Settings) -> sessionmaker[Session]:
    """The migrated SQLite database of the test's INSPECTION_HOME (the one the CLI opens too)."""
    return open_database(settings.resolved_database_url)


@pytest.fixture
def dataset(settings: Settings) -> Path:
    """A small synthetic base dataset of PRODUCT (good + four defect types), as `datasets synth` writes it."""
    root = settings.dataset_dir(PRODUCT)
    generate_synthetic_product(root, n=30, seed=3, image_size=32)
    return root


def _image_bytes(seed: int, suffix: str = ".png") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24), dtype=np.uint8)
    ok, encoded = cv2.imencode(suffix, pixels)
    assert ok
    return encoded.tobytes()


def _frame(
    settings: Settings,
    sessions: sessionmaker[Session],
    label: str | None,
    *,
    product: str = PRODUCT,
    verdict: str = "defect",
    suffix: str = ".png",
    data: bytes | None = None,
    archive: bool = True,
) -> Inspection:
    """An answered inspection as the server stores it: archived frame, row, and (given a label) QA feedback."""
    inspection_id = str(uuid.uuid4())
    path = settings.archive_dir / product / "2026-11-30" / f"{inspection_id}{suffix}"
    if archive:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else _image_bytes(uuid.UUID(inspection_id).int % 2**32, suffix))
    row = add_inspection(
        sessions,
        id=inspection_id,
        product=product,
        line_id="line-1",
        camera_id="cam-2",
        frame_id=f"f-{inspection_id[:8]}",
        captured_at=RECEIVED,
        received_at=RECEIVED,
        verdict=verdict,
        defect_probability=0.9 if verdict == "defect" else 0.1,
        defect_type="scratch" if verdict == "defect" else None,
        threshold=0.5,
        model_version=3,
        latency_ms=5.0,
        archive_path=str(path) if archive else None,  # passes outside the archived sample have no file
    )
    if label is not None:
        return record_feedback(sessions, row.id, label, by="qa-alice")
    return row


def _set_feedback_time(sessions: sessionmaker[Session], inspection_id: str, moment: datetime) -> None:
    with sessions.begin() as session:
        row = session.get(Inspection, inspection_id)
        assert row is not None
        row.feedback_at = moment


def _reviewed(root: Path) -> dict[str, ImageRecord]:
    """inspection id -> record of the reviewed images in the dataset."""
    return {str(r.meta["inspection_id"]): r for r in scan_dataset(root) if is_reviewed(r)}


def _no_debris(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def _import(settings: Settings, sessions: sessionmaker[Session], since: datetime | None = None) -> ReviewedImportReport:
    return import_reviewed(settings, sessions, PRODUCT, since=since)


# --- the import ---------------------------------------------------------------------------------------------------


def test_reviewed_frames_round_trip_with_the_qa_label_and_provenance(settings, sessions, dataset: Path) -> None:
    base = {r.relpath for r in scan_dataset(dataset)}
    flagged_good = _frame(settings, sessions, "good", verdict="defect")  # QA overrules the model
    missed_crack = _frame(settings, sessions, "crack", verdict="pass", suffix=".jpg")
    true_scratch = _frame(settings, sessions, "scratch", verdict="defect")
    new_type = _frame(settings, sessions, "dent", verdict="defect")  # a defect type the base dataset lacks
    unlabelled = _frame(settings, sessions, None)
    other_product = _frame(settings, sessions, "good", product=OTHER)

    report = _import(settings, sessions)

    assert report.imported == {"good": 1, "crack": 1, "scratch": 1, "dent": 1}
    assert (report.already_present, report.relabelled, report.repaired, report.skipped) == (0, 0, 0, [])
    reviewed = _reviewed(dataset)
    assert set(reviewed) == {flagged_good.id, missed_crack.id, true_scratch.id, new_type.id}
    assert unlabelled.id not in reviewed and other_product.id not in reviewed
    assert reviewed[flagged_good.id].relpath == f"good/reviewed-{flagged_good.id}.png"
    assert reviewed[missed_crack.id].relpath == f"crack/reviewed-{missed_crack.id}.jpg"
    assert reviewed[new_type.id].label == "dent"
    for row in (flagged_good, missed_crack, true_scratch, new_type):
        assert reviewed[row.id].path.read_bytes() == Path(str(row.archive_path)).read_bytes()
    record = reviewed[flagged_good.id]
    assert record.group == f"inspection:{flagged_good.id}"
    assert record.meta == {
        "source": "reviewed",
        "inspection_id": flagged_good.id,
        "line_id": "line-1",
        "camera_id": "cam-2",
        "frame_id": f"f-{flagged_good.id[:8]}",
        "captured_at": "2026-11-30T08:00:00+00:00",
        "received_at": "2026-11-30T08:00:00+00:00",
        "model_version": 3,
        "model_verdict": "defect",
        "model_defect_probability": 0.9,
        "model_defect_type": "scratch",
        "feedback_by": "qa-alice",
        "feedback_at": record.meta["feedback_at"],
    }
    assert datetime.fromisoformat(record.meta["feedback_at"]).tzinfo is not None
    # The base images are untouched and keep no reviewed provenance.
    assert base <= {r.relpath for r in scan_dataset(dataset)}
    assert all(not is_reviewed(r) for r in scan_dataset(dataset) if r.relpath in base)
    assert _no_debris(dataset)


def test_a_second_import_imports_nothing_new(settings, sessions, dataset: Path) -> None:
    for label in ("good", "crack", "good"):
        _frame(settings, sessions, label)
    _import(settings, sessions)
    metadata_bytes = (dataset / "metadata.jsonl").read_bytes()
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*"))

    again = _import(settings, sessions)

    assert again.imported == {} and again.total_imported == 0
    assert (again.already_present, again.relabelled, again.repaired) == (3, 0, 0)
    assert (dataset / "metadata.jsonl").read_bytes() == metadata_bytes
    assert sorted(p.relative_to(dataset) for p in dataset.rglob("*")) == files


def test_a_relabel_after_import_moves_the_image_and_updates_metadata(settings, sessions, dataset: Path) -> None:
    row = _frame(settings, sessions, "scratch")
    _import(settings, sessions)
    record_feedback(sessions, row.id, "good", by="qa-bob")

    report = _import(settings, sessions)

    assert (report.relabelled, report.imported, report.already_present) == (1, {}, 0)
    assert not (dataset / "scratch" / f"reviewed-{row.id}.png").exists()
    assert (dataset / "good" / f"reviewed-{row.id}.png").exists()
    metadata = read_metadata(dataset)
    assert f"scratch/reviewed-{row.id}.png" not in metadata
    assert metadata[f"good/reviewed-{row.id}.png"]["feedback_by"] == "qa-bob"
    assert len([m for m in metadata.values() if m.get("inspection_id") == row.id]) == 1


def test_since_filters_on_feedback_time(settings, sessions, dataset: Path) -> None:
    old = _frame(settings, sessions, "good")
    recent = _frame(settings, sessions, "crack")
    _set_feedback_time(sessions, old.id, datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    _set_feedback_time(sessions, recent.id, datetime(2026, 6, 1, 9, 30, tzinfo=UTC))

    report = _import(settings, sessions, since=parse_since("2026-06-01"))  # a date: its midnight, UTC
    assert report.imported == {"crack": 1}
    assert set(_reviewed(dataset)) == {recent.id}
    # An ISO datetime with an offset: 11:30+02:00 is 09:30 UTC, inclusive.
    assert _import(settings, sessions, since=parse_since("2026-06-01T11:30:00+02:00")).already_present == 1
    assert _import(settings, sessions, since=parse_since("2026-06-01T09:31:00")).already_present == 0
    assert _import(settings, sessions).imported == {"good": 1}
    with pytest.raises(InspectionError, match="ISO 8601"):
        parse_since("last tuesday")


def test_unusable_archived_frames_are_skipped_and_reported(settings, sessions, dataset: Path, tmp_path: Path) -> None:
    good = _frame(settings, sessions, "good")
    garbage = _frame(settings, sessions, "crack", data=b"\x89PNG\r\n\x1a\n definitely not an image")
    truncated = _frame(settings, sessions, "crack", data=_image_bytes(5)[:40])
    gone = _frame(settings, sessions, "crack")
    Path(str(gone.archive_path)).unlink()
    never_archived = _frame(settings, sessions, "good", archive=False)
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(_image_bytes(6))
    escaped = _frame(settings, sessions, "good")
    with sessions.begin() as session:
        row = session.get(Inspection, escaped.id)
        assert row is not None
        row.archive_path = str(settings.archive_dir / ".." / ".." / outside.name)  # leads out of the archive
    bad_label = _frame(settings, sessions, "Not A Label")

    report = _import(settings, sessions)

    assert report.imported == {"good": 1}
    reasons = dict(report.skipped)
    assert set(reasons) == {garbage.id, truncated.id, gone.id, never_archived.id, escaped.id, bad_label.id}
    assert "unreadable" in reasons[garbage.id] and "unreadable" in reasons[truncated.id]
    assert reasons[gone.id] == reasons[escaped.id] == "archived frame is missing or outside the archive"
    assert reasons[never_archived.id] == "frame was not archived"
    assert "invalid label" in reasons[bad_label.id]
    assert set(_reviewed(dataset)) == {good.id}
    assert _no_debris(dataset)


def test_a_rerun_repairs_images_left_without_metadata(settings, sessions, dataset: Path) -> None:
    rows = [_frame(settings, sessions, label) for label in ("good", "crack")]
    _import(settings, sessions)
    # A crash between copying the images and writing metadata.jsonl leaves images without provenance.
    metadata = {k: v for k, v in read_metadata(dataset).items() if v.get("source") != "reviewed"}
    (dataset / "metadata.jsonl").write_text(
        "".join(json.dumps({"path": k, **v}) + "\n" for k, v in sorted(metadata.items()))
    )
    assert _reviewed(dataset) == {}

    report = _import(settings, sessions)

    assert (report.repaired, report.imported, report.already_present) == (2, {}, 0)
    assert set(_reviewed(dataset)) == {row.id for row in rows}


def test_a_product_without_a_dataset_is_a_clear_error(settings, sessions) -> None:
    _frame(settings, sessions, "good")
    with pytest.raises(DatasetError, match="import the base dataset first"):
        _import(settings, sessions)


# --- splits: reviewed frames never reach test -----------------------------------------------------------------


def _test_entries(root: Path) -> str:
    assignment = json.loads((root / SPLITS_FILE).read_text())["assignment"]
    return json.dumps({k: v for k, v in assignment.items() if v == "test"}, sort_keys=True)


def test_a_frozen_test_split_is_untouched_and_reviewed_frames_never_enter_it(settings, sessions, dataset) -> None:
    base = scan_dataset(dataset)
    frozen = load_or_create_splits(dataset, base, VAL, TEST, SEED)
    test_before = _test_entries(dataset)
    rows = [_frame(settings, sessions, "good" if i % 3 else "crack") for i in range(30)]

    report = _import(settings, sessions)

    assert _test_entries(dataset) == test_before
    saved = json.loads((dataset / SPLITS_FILE).read_text())["assignment"]
    assert {k: saved[k] for k in frozen} == frozen  # val and train of the base images stay too
    reviewed = _reviewed(dataset)
    sides = {row.id: saved[reviewed[row.id].relpath] for row in rows}
    assert set(sides.values()) == {"recent", "train"}
    assert report.splits_frozen and report.sides == {
        side: list(sides.values()).count(side) for side in ("recent", "train")
    }
    # A relabelled frame keeps its side, even after the configured fraction changed.
    moved = rows[0]
    record_feedback(sessions, moved.id, "scratch", by="qa-bob")
    _import(settings, sessions)
    again = load_or_create_splits(dataset, scan_dataset(dataset), VAL, TEST, SEED, recent_fraction=0.99)
    assert again[f"scratch/reviewed-{moved.id}.png"] == sides[moved.id]
    assert _test_entries(dataset) == test_before


def test_splits_created_after_the_import_deal_test_from_the_base_images_only(settings, sessions, dataset) -> None:
    base = scan_dataset(dataset)
    for i in range(20):
        _frame(settings, sessions, "good" if i % 2 else "spot")

    report = _import(settings, sessions)

    assert not report.splits_frozen and not (dataset / SPLITS_FILE).exists()  # freezing is training's job
    records = scan_dataset(dataset)
    assignment = load_or_create_splits(dataset, records, VAL, TEST, SEED)
    assert {k: v for k, v in assignment.items() if v == "test"} == {
        k: v for k, v in assign_splits(base, VAL, TEST, SEED).items() if v == "test"
    }
    reviewed_sides = [assignment[r.relpath] for r in records if is_reviewed(r)]
    assert len(reviewed_sides) == 20 and set(reviewed_sides) <= {"recent", "train"}
    assert report.sides == {side: reviewed_sides.count(side) for side in set(reviewed_sides)}
    parts = split_records(records, assignment)
    assert set(parts) == {"train", "val", "test", "recent"}
    assert all(is_reviewed(r) for r in parts["recent"])
    assert not any(is_reviewed(r) for r in parts["test"] + parts["val"])


def _reviewed_record(name: str, group: str, label: str = "good") -> ImageRecord:
    relpath = f"{label}/reviewed-{name}.png"
    return ImageRecord(relpath, label, Path(relpath), group=group, meta={"source": "reviewed"})


def test_recent_fraction_bounds_and_parts_of_test_groups() -> None:
    base = [ImageRecord(f"good/b{i:02d}.png", "good", Path("b"), group=f"p{i:02d}") for i in range(30)]
    reviewed = [_reviewed_record(f"r{i:02d}", f"inspection:r{i:02d}") for i in range(40)]
    assert {assign_splits(base + reviewed, VAL, TEST, SEED, 0.0)[r.relpath] for r in reviewed} == {"train"}
    assert {assign_splits(base + reviewed, VAL, TEST, SEED, 1.0)[r.relpath] for r in reviewed} == {"recent"}
    # A reviewed frame of a part already in test or validation stays out of training: it goes to recent.
    base_sides = assign_splits(base, VAL, TEST, SEED)
    same_parts = [_reviewed_record(f"x{r.group_key}", r.group_key) for r in base]
    sides = assign_splits(base + same_parts, VAL, TEST, SEED, 0.0)
    assert {k: v for k, v in sides.items() if k in base_sides} == base_sides
    for record, part in zip(same_parts, base, strict=True):
        assert sides[record.relpath] == ("train" if base_sides[part.relpath] == "train" else "recent")
    assert set(base_sides.values()) == {"train", "val", "test"}


def test_a_saved_reviewed_frame_outside_recent_or_train_is_refiled(tmp_path: Path) -> None:
    # Splits written before this rule may hold a reviewed frame in validation; it must leave it, test stays.
    records = [_reviewed_record("a", "inspection:a"), _reviewed_record("b", "inspection:b")]
    (tmp_path / SPLITS_FILE).write_text(
        json.dumps({"assignment": {records[0].relpath: "val", records[1].relpath: "recent"}})
    )
    assignment = load_or_create_splits(tmp_path, records, VAL, TEST, SEED)
    assert assignment[records[0].relpath] in {"recent", "train"}
    assert assignment[records[1].relpath] == "recent"


# --- the command ----------------------------------------------------------------------------------------------


def test_cli_imports_shows_the_report_and_the_recent_column(
    settings: Settings, sessions, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import app

    monkeypatch.setenv("INSPECTION_HOME", str(settings.home))
    monkeypatch.setenv("INSPECTION_CONFIGS_DIR", str(settings.configs_dir))
    monkeypatch.setenv("COLUMNS", "200")
    load_or_create_splits(dataset, scan_dataset(dataset), VAL, TEST, SEED)
    for label in ("good", "good", "crack"):
        _frame(settings, sessions, label)
    _frame(settings, sessions, "good", data=b"garbage")
    runner = CliRunner()

    result = runner.invoke(app, ["datasets", "import", "reviewed", PRODUCT, "--since", "2020-01-01"])

    assert result.exit_code == 0, result.output
    for text in ("reviewed frames of widget", "crack", "already present", "relabelled", "now in recent", "unreadable"):
        assert text in result.stdout
    assert len(_reviewed(dataset)) == 3
    shown = runner.invoke(app, ["datasets", "show", PRODUCT])
    assert shown.exit_code == 0, shown.output
    assert "recent" in shown.stdout and "3 QA-reviewed line frames" in shown.stdout
    bad = runner.invoke(app, ["datasets", "import", "reviewed", PRODUCT, "--since", "yesterday"])
    assert bad.exit_code != 0 and isinstance(bad.exception, InspectionError)
    missing = runner.invoke(app, ["datasets", "import", "reviewed", OTHER])
    assert missing.exit_code != 0 and isinstance(missing.exception, DatasetError)
