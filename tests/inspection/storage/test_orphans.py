"""Archived files whose inspection has no row (a process killed between the archive write and the row's commit)
are removed by the sweep, once older than its grace period; files with a row, young files and others stay."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

from inspection.storage.database import open_database
from inspection.storage.inspections import add_inspection
from inspection.storage.orphans import sweep_orphan_frames


def _file(folder, name: str, age_s: float):
    path = folder / name
    path.write_bytes(b"frame")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_orphan_frames_are_swept(tmp_path) -> None:
    sessions = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    root = tmp_path / "archive"
    day = root / "widget" / datetime.now(UTC).strftime("%Y-%m-%d")
    day.mkdir(parents=True)
    kept_id, orphan_id, young_id = (str(uuid.uuid4()) for _ in range(3))
    add_inspection(
        sessions, id=kept_id, product="widget", verdict="defect", defect_probability=0.9, threshold=0.5,
        model_version=1, latency_ms=1.0,
    )  # fmt: skip
    kept = _file(day, f"{kept_id}.png", 600)
    orphans = [_file(day, f"{orphan_id}.jpg", 600), _file(day, f"{orphan_id}.map.png", 600)]
    young = _file(day, f"{young_id}.png", 1)  # its row may still be on its way
    other = _file(day, "notes.txt", 600)

    removed = sweep_orphan_frames(root, sessions, grace_s=60)

    assert sorted(removed) == sorted(orphans)
    assert kept.exists() and young.exists() and other.exists()
    assert not any(path.exists() for path in orphans)
