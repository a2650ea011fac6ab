"""Frame sources for the camera client: a folder of image files, or a video file / stream read with OpenCV.

Sources are read lazily, one frame per call, so the client never reads ahead of its pacing schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

import cv2

from inspection.errors import InspectionError
from inspection.names import RESERVED_FOLDERS

IMAGE_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


@dataclass(frozen=True)
class Frame:
    """One encoded frame ready to post, and the id that maps its answer back to where it came from."""

    frame_id: str
    data: bytes
    content_type: str


class FrameSource(Protocol):
    """Yields frames one at a time; `read` returns None at the end, `restart` rewinds for --loop."""

    name: str

    def read(self) -> Frame | None: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


class DirectorySource:
    """Image files under a folder, sorted by relative path; sent as their original bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = root.name
        self.files = sorted(
            (path for path in root.rglob("*") if _is_frame_file(root, path)),
            key=lambda path: path.relative_to(root).as_posix(),
        )
        if not self.files:
            suffixes = ", ".join(sorted(IMAGE_CONTENT_TYPES))
            raise InspectionError(f"source folder {root} holds no image files ({suffixes})")
        self._next = 0

    def read(self) -> Frame | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # removed since the listing: a live folder changes under us, that is not fatal
            return Frame(path.relative_to(self.root).as_posix(), data, IMAGE_CONTENT_TYPES[path.suffix.lower()])
        return None

    def restart(self) -> None:
        self._next = 0

    def close(self) -> None:
        pass


class VideoSource:
    """A video file or a stream URL via cv2.VideoCapture; frames are JPEG-encoded at the given quality."""

    def __init__(self, uri: str, name: str, jpeg_quality: int = 90) -> None:
        self.uri, self.name = uri, name
        self._params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        self._capture = self._open()
        self._index = 0

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.uri)
        if not capture.isOpened():
            capture.release()
            raise InspectionError(f"cannot open video source {self.uri!r} (not a readable video or stream)")
        return capture

    def read(self) -> Frame | None:
        ok, image = self._capture.read()
        if not ok or image is None:
            return None
        encoded_ok, encoded = cv2.imencode(".jpg", image, self._params)
        if not encoded_ok:
            raise InspectionError(f"could not JPEG-encode frame {self._index} of {self.uri!r}")
        frame = Frame(f"{self.name}#{self._index}", encoded.tobytes(), "image/jpeg")
        self._index += 1
        return frame

    def restart(self) -> None:
        # Reopening is the one rewind that works for every backend; seeking to frame 0 is unreliable for some codecs.
        self._capture.release()
        self._capture = self._open()
        self._index = 0

    def close(self) -> None:
        self._capture.release()


def _is_frame_file(root: Path, path: Path) -> bool:
    parts = path.relative_to(root).parts
    # A dataset folder may be streamed as is: its masks/ are not camera frames, hidden files are not images.
    if parts[0] in RESERVED_FOLDERS or any(part.startswith(".") for part in parts):
        return False
    return path.suffix.lower() in IMAGE_CONTENT_TYPES and path.is_file()


def _stream_name(url: str) -> str:
    parts = urlsplit(url)
    # The last path segment names a stream well (rtsp://cam/line2); credentials in the URL must not leak into ids.
    return PurePosixPath(parts.path).name or (parts.hostname or "stream")


def open_source(source: str | Path, jpeg_quality: int = 90) -> FrameSource:
    """A folder, a video file or a URL (rtsp://, http://...) as a frame source; a clear error if unusable."""
    text = str(source)
    if "://" in text:
        return VideoSource(text, _stream_name(text), jpeg_quality)
    path = Path(source)
    if not path.exists():
        raise InspectionError(f"source {path} does not exist (expected a folder of images, a video file or a URL)")
    if path.is_dir():
        return DirectorySource(path)
    video = VideoSource(str(path), path.name, jpeg_quality)
    # Opening succeeds for some unreadable files; a first frame proves the video decodes.
    if video.read() is None:
        video.close()
        raise InspectionError(f"video {path} has no readable frames")
    video.restart()
    return video
