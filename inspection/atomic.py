"""Atomic file writes: readers see the old file or the new one, never half of one, and a crash leaves no debris.

One mechanism for every writer (datasets, reports, plots, models, archived frames): write to a temp file in the
same folder (so the rename cannot cross file systems), then rename it over the target.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


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
    """Write `data` to `path` atomically.

    The same temp-and-rename as atomic_target, in fewer system calls: the server archives a flagged frame and its
    map with this on every defect verdict, where mkstemp's create, close, chmod and reopen cost 0.17 ms a write
    against 0.04 ms this way (40 KB, timed alone; 0.23-0.27 against 0.07-0.10 ms for a whole LocalArchive.write).
    """
    path = Path(path)
    # Exclusive create of a name nobody else draws: never follows or reuses what is already there.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        handle = os.open(tmp, _NEW_FILE, 0o644)
    except FileNotFoundError:  # the first file of a folder (a new product or day): create the folder once
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(tmp, _NEW_FILE, 0o644)
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # open's mode went through the umask; a server as another user reads it
            file.write(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_atomic_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_atomic_bytes(path, text.encode())
