"""What OpenAPI says of a frame request that FastAPI cannot infer: the route reads its body and the frame's fields
itself (serving.inspect_service), so the body's media types and the query fields are declared here."""

from __future__ import annotations

from typing import Any

from inspection.validation import TEXT_PATTERN, TIME_PATTERN

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_FIELDS = {
    "camera_id": ("The camera that took the frame (or header X-Camera-Id)", 64),
    "line_id": ("The production line (or header X-Line-Id)", 64),
    "frame_id": ("The part's id on the line (or header X-Frame-Id)", 128),
}

FRAME_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            **{media: _BINARY for media in ("image/png", "image/jpeg", "image/bmp", "image/tiff")},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    },
    "parameters": [
        *(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": text,
                "schema": {"type": "string", "maxLength": length, "pattern": TEXT_PATTERN},
            }
            for name, (text, length) in _FIELDS.items()
        ),
        {
            "name": "captured_at",
            "in": "query",
            "required": False,
            "description": "When the camera took the frame, ISO 8601 (without an offset it is UTC); years 1970-2199",
            "schema": {"type": "string", "format": "date-time", "pattern": TIME_PATTERN},
        },
    ],
}
