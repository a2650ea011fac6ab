"""Where archived frames are stored: a local folder (the embedded default) or an S3-compatible object store.

A frame's location is the string its inspection row keeps in `archive_path`: a local path, or `s3://bucket/key`
when INSPECTION_ARCHIVE_URL names a bucket, so any replica (and the reviewed-frames importer) can read a frame
another one archived. Keys follow inspection.archive_paths; a location is only followed while it stays inside
this archive (the local root, or the bucket and prefix). Rows written before an object store was configured keep
their local paths and stay readable from the local folder.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from inspection.archive_paths import archived_file
from inspection.atomic import write_atomic_bytes
from inspection.errors import InspectionError

if TYPE_CHECKING:
    from inspection.settings import Settings

S3_SCHEME = "s3://"
_MAX_KNOWN_FOLDERS = 4096


class FrameArchive(Protocol):
    """Archived frames and what is stored beside them (anomaly maps, drawn heatmaps), by location string."""

    # True when a write is a local file (cheap, no waiting); False when it waits on a network (an object store).
    writes_locally: bool

    def location(self, key: str) -> str:
        """Where the object with this key (`<product>/<date>/<file>`) is stored."""
        ...

    def write(self, location: str, data: bytes) -> str:
        """Store `data` at `location` (whole or not at all); returns the location."""
        ...

    def read(self, location: str | None) -> bytes | None:
        """The stored bytes, or None when nothing is stored there or the location lies outside this archive."""
        ...

    def delete(self, location: str) -> bool:
        """Remove what is stored at `location` (retention); False when nothing was there or it lies outside."""
        ...

    def check(self) -> None:
        """Return when frames can be archived here; raise InspectionError saying why not (a missing bucket, bad
        credentials, an unreachable endpoint, a folder that cannot be written)."""
        ...


class LocalArchive:
    """Frames as files under one folder (INSPECTION_HOME/archive by default)."""

    writes_locally = True

    def __init__(self, root: Path) -> None:
        self.root = root
        # Folders found inside the root, so each (a product's day) is resolved once, not on every frame: resolving
        # walks every component of the path, 0.04 ms a write.
        self._inside: set[str] = set()

    def location(self, key: str) -> str:
        return str(self.root / key)

    def write(self, location: str, data: bytes) -> str:
        path = Path(location)
        if not self._is_inside(path):
            raise InspectionError(f"{location} is outside the archive {self.root}")
        return str(write_atomic_bytes(path, data))

    def _is_inside(self, path: Path) -> bool:
        """True when `path` resolves into the root. A file name cannot lead elsewhere ('..' and '.' are
        folders), so the answer for its folder is the answer for every file in it."""
        if path.name in ("", ".", ".."):
            return path.resolve().is_relative_to(self.root.resolve())
        folder = str(path.parent)
        if folder in self._inside:
            return True
        if not path.parent.resolve().is_relative_to(self.root.resolve()):
            return False
        if len(self._inside) >= _MAX_KNOWN_FOLDERS:  # a folder per product and day: this only bounds memory
            self._inside.clear()
        self._inside.add(folder)
        return True

    def read(self, location: str | None) -> bytes | None:
        if location is None or location.startswith(S3_SCHEME):
            return None
        path = archived_file(self.root, location)
        try:
            return path.read_bytes() if path is not None else None
        except FileNotFoundError:  # removed between the check and the read
            return None

    def delete(self, location: str) -> bool:
        if location.startswith(S3_SCHEME):
            return False
        path = archived_file(self.root, location)
        if path is None:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InspectionError(f"archive folder {self.root} cannot be created: {exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise InspectionError(f"archive folder {self.root} is not writable")


class S3Archive:
    """Frames as objects under `s3://bucket/prefix/` of any S3-compatible store (AWS, MinIO, Ceph...)."""

    writes_locally = False

    def __init__(self, url: str, client: Any, local: LocalArchive) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.client = client
        self.local = local  # rows archived before the object store was configured

    def location(self, key: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}{key}"

    def write(self, location: str, data: bytes) -> str:
        key = self._key(location)
        if key is None:
            raise InspectionError(f"{location} is outside the archive s3://{self.bucket}/{self.prefix}")
        # One PUT: an object store never shows a partly written object, so no temporary name is needed.
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return location

    def read(self, location: str | None) -> bytes | None:
        if location is None:
            return None
        if not location.startswith(S3_SCHEME):
            return self.local.read(location)
        key = self._key(location)
        if key is None:
            return None
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return body

    def delete(self, location: str) -> bool:
        if not location.startswith(S3_SCHEME):
            return self.local.delete(location)
        key = self._key(location)
        if key is None:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=key)  # idempotent: a missing key is no error
        return True

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # botocore's ClientError, EndpointConnectionError, NoCredentialsError...
            raise InspectionError(f"archive s3://{self.bucket}/{self.prefix} cannot be reached: {exc}") from exc

    def _key(self, location: str) -> str | None:
        """The object key of a location in this bucket under this prefix, or None."""
        bucket, key = parse_s3_url(location)
        inside = bucket == self.bucket and key.startswith(self.prefix) and key != self.prefix
        return key if inside and ".." not in PurePosixPath(key).parts else None


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix/"); a clear error for anything else."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InspectionError(f"not an S3 location (s3://bucket/prefix): {url!r}")
    path = parsed.path.lstrip("/")
    return parsed.netloc, path if not path or path.endswith("/") else path + "/"


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client from the settings; credentials left unset come from boto3's own chain (AWS_* variables,
    an instance or pod role)."""
    import boto3  # only a deployment with an object store pays for importing it
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        # Path-style addressing: MinIO and most on-premise stores serve buckets under the endpoint's path.
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
    )


def open_archive(settings: Settings) -> FrameArchive:
    """The archive the settings name: the object store of INSPECTION_ARCHIVE_URL, else the local folder."""
    local = LocalArchive(settings.archive_dir)
    if settings.archive_url is None:
        return local
    return S3Archive(settings.archive_url, s3_client(settings), local)
