"""Atomic dataset writes: importers fill a hidden staging folder that replaces the product's folder at the end.

A crash or a refused dataset leaves the previous dataset (or nothing) in place, never a half-written one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inspection.errors import DatasetError


@contextmanager
def staged_dataset(dest: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes `dest`, on any error it is removed."""
    if dest.exists() and any(dest.iterdir()) and not replace:
        raise DatasetError(f"dataset {dest} already exists; pass --replace to re-import it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".staging-{dest.name}-"))
    try:
        yield staging
        if dest.exists():
            trash = dest.with_name(f".trash-{dest.name}")
            shutil.rmtree(trash, ignore_errors=True)
            dest.rename(trash)
            staging.rename(dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
