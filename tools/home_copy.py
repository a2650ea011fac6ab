"""Copying an INSPECTION_HOME so that the copy stands alone.

MLflow's embedded store records where each experiment, run and model version keeps its artifacts as absolute
`file:` URIs. A plain copy of the folder therefore still points into the original: exporting a version of the
copy would write its ONNX files into the original's artifacts. `copy_home` copies, then points those records at
the copy's own folders.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterable
from contextlib import closing

from inspection.settings import Settings

# (table, column) pairs of MLflow's SQLite schema that hold an artifact location; those a schema lacks are skipped.
_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
)


def copy_home(source: Settings, destination: Settings, parts: Iterable[str] | None = None) -> None:
    """Copy `source`'s home into `destination`'s (the named top-level entries, default all), then make the copy's
    embedded MLflow store point at the copy's artifacts. The destination's entries are replaced."""
    names = sorted(p.name for p in source.home.iterdir()) if parts is None else list(parts)
    destination.home.mkdir(parents=True, exist_ok=True)
    for name in names:
        origin, target = source.home / name, destination.home / name
        if target.is_dir():
            shutil.rmtree(target)
        if origin.is_dir():
            shutil.copytree(origin, target)
        elif origin.is_file():
            shutil.copy2(origin, target)
    if (destination.mlflow_dir / "mlflow.db").is_file():
        rebase_artifact_locations(destination, moved_from=source)


def rebase_artifact_locations(settings: Settings, moved_from: Settings) -> int:
    """Point the embedded store's artifact locations under `moved_from`'s artifact folder at `settings`' own; the
    number of records changed."""
    old = moved_from.mlflow_artifacts_dir.resolve().as_uri()
    new = settings.mlflow_artifacts_dir.resolve().as_uri()
    changed = 0
    with closing(sqlite3.connect(settings.mlflow_dir / "mlflow.db")) as connection, connection:
        for table, column in _LOCATION_COLUMNS:
            columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                continue
            # A prefix compare, not LIKE: a path may hold '%' or '_'. The separator check keeps /a/b from
            # matching /a/bc.
            cursor = connection.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                (new, len(old) + 1, old, len(old) + 1, old + "/"),
            )
            changed += cursor.rowcount
    return changed
