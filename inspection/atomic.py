"""Atomic file writes: readers see the old file or the new one, never half of one, and a crash leaves no debris.

One mechanism for every writer (datasets, reports, plots, models, archived frames): write to a temp file in the
same folder (so the rename cannot cross file systems), then rename it over the target.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """An open handle on a fresh temp file beside `path`, readable by other users, and its path.

    Created exclusively under a name nobody else draws, so it never follows or reuses what is already there; the
    folder is created only when the first open finds it missing (a new product or day in the frame archive).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        handle = os.open(tmp, _NEW_FILE, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(tmp, _NEW_FILE, 0o644)
    try:
        os.fchmod(handle, 0o644)  # open's mode went through the umask; a server running as another user reads it
    except BaseException:
        os.close(handle)
        tmp.unlink(missing_ok=True)
        raise
    return handle, tmp


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`, for writers that need a path (torch.save, ONNX, plots); on success it is
    renamed onto `path`, on any error removed."""
    path = Path(path)
    handle, tmp = _new_temp_file(path)
    os.close(handle)
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically, through the temp file's own handle.

    The server archives a flagged frame and its map with this on every defect verdict: written through the handle
    that created the temp file, a 40 KB write cost 0.04 ms against 0.17 ms for mkstemp's create, close, chmod and
    reopen, timed alone (0.23-0.27 against 0.07-0.10 ms for a whole LocalArchive.write).
    """
    path = Path(path)
    handle, tmp = _new_temp_file(path)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_atomic_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_atomic_bytes(path, text.encode())
