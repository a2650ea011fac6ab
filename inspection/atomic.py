"""Atomic file writes: readers see the old file or the new one, never half of one, and a crash leaves no debris.

One mechanism for every writer (datasets, reports, plots, models, archived frames): write to a temp file in the
same folder (so the rename cannot cross file systems), then rename it over the target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is renamed onto `path`, on any error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes files owner-only; a server running as another user must read them
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_atomic_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_atomic_bytes(path, text.encode())
