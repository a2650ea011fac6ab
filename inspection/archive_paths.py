"""Where archived line frames live: `<archive root>/<product>/<YYYY-MM-DD>/<inspection id>.<ext>`, the root being a
local folder or an object store's bucket and prefix (inspection.frame_archive).

The server writes frames there and the reviewed-frames importer reads them back by the path stored in the
inspection row; both use this one rule, and a stored path is only followed while it stays inside the root.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path, PurePosixPath

# The received content type chooses the extension; anything else (the JPEG family) is stored as .jpg.
EXTENSIONS = {"image/png": ".png", "image/bmp": ".bmp", "image/x-ms-bmp": ".bmp", "image/tiff": ".tif"}
DEFAULT_EXTENSION = ".jpg"
_MEDIA_TYPES = {".png": "image/png", ".bmp": "image/bmp", ".tif": "image/tiff"}


def archive_key(product: str, inspection_id: str, received: datetime, content_type: str) -> str:
    """Where under the archive root (a folder or a bucket prefix) an inspection's frame goes, dated by when it was
    received."""
    extension = EXTENSIONS.get(content_type.split(";")[0].strip().lower(), DEFAULT_EXTENSION)
    return f"{product}/{received.strftime('%Y-%m-%d')}/{inspection_id}{extension}"


def beside(location: str, suffix: str) -> str:
    """What is stored next to an archived frame: `.../<id>.<ext>` -> `.../<id><suffix>` (a path or an s3:// URL)."""
    folder, _, name = location.rpartition("/")
    return f"{folder}/{name.split('.', 1)[0]}{suffix}" if folder else f"{name.split('.', 1)[0]}{suffix}"


def archived_file(root: Path, archive_path: str | None) -> Path | None:
    """The archived file if it exists inside the archive root; a stored path never leads outside it."""
    if not archive_path:
        return None
    path, base = Path(archive_path).resolve(), root.resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def archived_media_type(location: str | Path) -> str:
    """The image content type an archived frame was received with, from the extension archive_key chose."""
    return _MEDIA_TYPES.get(PurePosixPath(str(location)).suffix, "image/jpeg")
