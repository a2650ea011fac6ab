"""The frame archive on a real S3 API: moto's S3 server over HTTP on loopback (boto3 talks to it as to any
S3-compatible endpoint), and the local folder that stays the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.errors import InspectionError
from inspection.frame_archive import LocalArchive, S3Archive, open_archive, parse_s3_url
from inspection.settings import Settings
from tests.conftest import S3_BUCKET as BUCKET


def _s3_settings(home: Path, endpoint: str, url: str = f"s3://{BUCKET}/plant-1") -> Settings:
    return Settings(
        home=home,
        archive_url=url,
        s3_endpoint_url=endpoint,
        s3_region="us-east-1",
        s3_access_key_id="test-key",
        s3_secret_access_key="test-secret",  # type: ignore[arg-type]
    )


def test_local_folder_is_the_default(tmp_path: Path) -> None:
    archive = open_archive(Settings(home=tmp_path))
    assert isinstance(archive, LocalArchive)
    location = archive.write(archive.location("widget/2026-12-02/abc.png"), b"frame")
    assert location == str(tmp_path / "archive" / "widget" / "2026-12-02" / "abc.png")
    assert archive.read(location) == b"frame"
    assert archive.read(str(tmp_path / "elsewhere.png")) is None
    with pytest.raises(InspectionError):
        archive.write(str(tmp_path / "archive" / ".." / "escape.png"), b"x")


def test_frames_round_trip_through_the_object_store(tmp_path: Path, s3_endpoint: str) -> None:
    archive = open_archive(_s3_settings(tmp_path, s3_endpoint))
    assert isinstance(archive, S3Archive)
    location = archive.write(archive.location("widget/2026-12-02/abc.png"), b"\x89PNG frame")
    assert location == f"s3://{BUCKET}/plant-1/widget/2026-12-02/abc.png"
    # Another replica, with its own empty home, reads it back from the store.
    other = open_archive(_s3_settings(tmp_path / "other", s3_endpoint))
    assert other.read(location) == b"\x89PNG frame"
    assert not (tmp_path / "archive").exists()  # nothing went to the local folder


def test_a_location_outside_the_bucket_or_prefix_is_not_followed(tmp_path: Path, s3_endpoint: str) -> None:
    archive = open_archive(_s3_settings(tmp_path, s3_endpoint))
    archive.write(archive.location("widget/2026-12-02/abc.png"), b"frame")
    assert archive.read(f"s3://{BUCKET}/plant-1/widget/2026-12-02/missing.png") is None
    assert archive.read(f"s3://{BUCKET}/plant-2/widget/2026-12-02/abc.png") is None  # another prefix
    assert archive.read("s3://other-bucket/plant-1/widget/2026-12-02/abc.png") is None
    assert archive.read(f"s3://{BUCKET}/plant-1/../plant-1/widget/2026-12-02/abc.png") is None
    with pytest.raises(InspectionError):
        archive.write(f"s3://{BUCKET}/plant-2/x.png", b"x")


def test_rows_archived_locally_before_the_store_stay_readable(tmp_path: Path, s3_endpoint: str) -> None:
    before = open_archive(Settings(home=tmp_path))
    location = before.write(before.location("widget/2026-12-01/old.jpg"), b"old frame")
    assert open_archive(_s3_settings(tmp_path, s3_endpoint)).read(location) == b"old frame"


def test_archive_url_must_name_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Settings(home=tmp_path, archive_url="/var/frames")
    assert parse_s3_url("s3://frames") == ("frames", "")
    assert parse_s3_url("s3://frames/a/b/") == ("frames", "a/b/")


def test_check_passes_on_a_reachable_store_and_names_what_is_wrong_otherwise(tmp_path: Path, s3_endpoint: str) -> None:
    open_archive(_s3_settings(tmp_path, s3_endpoint)).check()
    with pytest.raises(InspectionError, match=r"s3://no-such-bucket/plant-1/ cannot be reached"):
        open_archive(_s3_settings(tmp_path, s3_endpoint, url="s3://no-such-bucket/plant-1")).check()
    local = open_archive(Settings(home=tmp_path / "fresh"))
    local.check()  # creates the folder it will write to
    assert (tmp_path / "fresh" / "archive").is_dir()
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(InspectionError, match="cannot be created"):
        LocalArchive(tmp_path / "a-file" / "archive").check()


def test_a_folder_linked_outside_the_archive_is_refused_even_after_writes_inside(tmp_path: Path) -> None:
    archive = LocalArchive(tmp_path / "archive")
    archive.write(archive.location("widget/2026-12-06/a.jpg"), b"inside")  # the folder is now known to be inside
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "archive" / "widget" / "2026-12-07").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InspectionError, match="outside the archive"):
        archive.write(archive.location("widget/2026-12-07/b.jpg"), b"x")
    with pytest.raises(InspectionError, match="outside the archive"):
        archive.write(archive.location("widget/2026-12-06/../../../escape.jpg"), b"x")
    assert archive.write(archive.location("widget/2026-12-06/c.jpg"), b"again") == archive.location(
        "widget/2026-12-06/c.jpg"
    )
    assert list(outside.iterdir()) == []
