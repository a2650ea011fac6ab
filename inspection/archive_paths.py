"""Where archived line frames live: `<archive root>/<product>/<YYYY-MM-DD>/<inspection id>.<ext>`.

The server writes frames there and the reviewed-frames importer reads them back by the path stored in the
inspection row; both use this one rule, and a stored path is only followed while it stays inside the root.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

# The received content type chooses the extension; anything else (the JPEG family) is stored as .jpg.
EXTENSIONS = {"image/png": ".png", "image/bmp": ".bmp", "image/x-ms-bmp": ".bmp", "image/tiff": ".tif"}
DEFAULT_EXTENSION = ".jpg"
_MEDIA_TYPES = {".png": "image/png", ".bmp": "image/bmp", ".tif": "image/tiff"}


def archive_target(root: Path, product: str, inspection_id: str, received: datetime, content_type: str) -> Path:
    """The path an inspection's frame is archived at, dated by when it was received."""
    extension = EXTENSIONS.get(content_type.split(";")[0].strip().lower(), DEFAULT_EXTENSION)
    return root / product / received.strftime("%Y-%m-%d") / f"{inspection_id}{extension}"


def archived_file(root: Path, archive_path: str | None) -> Path | None:
    """The archived file if it exists inside the archive root; a stored path never leads outside it."""
    if not archive_path:
        return None
    path, base = Path(archive_path).resolve(), root.resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def archived_media_type(path: Path) -> str:
    """The image content type an archived file was received with, from the extension archive_target chose."""
    return _MEDIA_TYPES.get(path.suffix, "image/jpeg")
