"""Atomic file writes: whole or absent, readable by other users, no temporary debris, never through a link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from inspection.atomic import write_atomic_bytes


def _debris(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.name.endswith(".tmp")]


def test_write_creates_the_folder_and_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "widget" / "2026-12-06" / "frame.jpg"
    write_atomic_bytes(target, b"first")
    write_atomic_bytes(target, b"second, longer than the first")
    assert target.read_bytes() == b"second, longer than the first"
    assert _debris(target.parent) == []


def test_written_files_are_readable_by_others_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        target = write_atomic_bytes(tmp_path / "frame.jpg", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path: Path) -> None:
    target = write_atomic_bytes(tmp_path / "frame.jpg", b"old")
    with pytest.raises(TypeError):
        write_atomic_bytes(target, "not bytes")  # type: ignore[arg-type]
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(OSError):
        write_atomic_bytes(tmp_path / "folder.jpg", b"cannot replace a folder")
    assert target.read_bytes() == b"old"
    assert _debris(tmp_path) == []


def test_a_link_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep")
    inside = tmp_path / "archive"
    inside.mkdir()
    (inside / "frame.jpg").symlink_to(outside)
    write_atomic_bytes(inside / "frame.jpg", b"new")
    assert outside.read_bytes() == b"keep"
    assert not (inside / "frame.jpg").is_symlink() and (inside / "frame.jpg").read_bytes() == b"new"
