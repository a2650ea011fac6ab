"""Archived frames without an inspection row: a process killed between archiving a frame and committing its row
leaves its files behind. They are found by their name (`<inspection id>.<ext>` and what is stored beside it) in
the recent day folders of a local archive, and removed once older than a grace period, so a frame whose row is
still on its way is never taken."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from inspection.storage.schema import Inspection

_DAY_FOLDER = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_QUERY_CHUNK = 500  # ids per IN (...) query: well under every database's parameter limit


def _recent_files(root: Path, days: int) -> dict[str, list[Path]]:
    """Inspection id -> its files, in the day folders of the last `days` days (a crash leaves files only there)."""
    oldest = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d")
    found: dict[str, list[Path]] = {}
    if not root.is_dir():
        return found
    for product in root.iterdir():
        if not product.is_dir():
            continue
        for day in product.iterdir():
            if not (day.is_dir() and _DAY_FOLDER.fullmatch(day.name) and day.name >= oldest):
                continue
            for path in day.iterdir():
                inspection_id = path.name.split(".", 1)[0]
                if path.is_file() and _ID.fullmatch(inspection_id):
                    found.setdefault(inspection_id, []).append(path)
    return found


def sweep_orphan_frames(
    root: Path, sessions: sessionmaker[Session], *, grace_s: float = 60.0, days: int = 2
) -> list[Path]:
    """Remove files under a local archive `root` whose inspection has no row and that are older than `grace_s`;
    the removed paths."""
    files = _recent_files(root, days)
    ids = sorted(files)
    stored: set[str] = set()
    with sessions() as session:
        for start in range(0, len(ids), _QUERY_CHUNK):
            chunk = ids[start : start + _QUERY_CHUNK]
            stored.update(session.scalars(select(Inspection.id).where(Inspection.id.in_(chunk))))
    cutoff, removed = time.time() - grace_s, []
    for inspection_id in set(ids) - stored:
        for path in files[inspection_id]:
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:  # removed meanwhile (another replica's sweep)
                continue
    return removed
