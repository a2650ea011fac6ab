"""Checks on values a client sends (times, ids, names), so a bad one is refused before any work, never stored.

A time must fall within TIME_MIN..TIME_MAX: both databases and Python's datetime hold far more, but a time near
the ends of the calendar overflows once moved to UTC (PostgreSQL then stores a row no driver can read back).
Text may not hold control characters: PostgreSQL refuses a NUL byte in a string, after the frame was scored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from inspection.errors import InspectionError

# A day of margin each side: any time written in years 1970-2199, in any offset, is accepted.
TIME_MIN = datetime(1969, 12, 31, tzinfo=UTC)
TIME_MAX = datetime(2200, 1, 2, tzinfo=UTC)  # exclusive
# ISO 8601 as RFC 3339 writes it, years 1970-2199; the OpenAPI schema carries it so clients know the range.
TIME_PATTERN = (
    r"^(19[7-9][0-9]|2[01][0-9][0-9])-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# No control characters: what the OpenAPI schema says for free text (ids, line and camera names).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
MAX_OFFSET = 2**31 - 1  # a page offset or version number past this is no row on either database


def parse_time(value: str, name: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (no offset means UTC); InspectionError outside TIME_MIN..TIME_MAX."""
    text = value.strip()
    if not re.fullmatch(r"[0-9]{4}-.*", text):  # fromisoformat alone takes "2026" and other shapes no client means
        raise InspectionError(f"{name} {value!r} is not an ISO 8601 time (e.g. 2026-12-07T10:00:00+02:00)")
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise InspectionError(f"{name} {value!r} is not an ISO 8601 time (e.g. 2026-12-07T10:00:00+02:00)") from exc
    return check_time(parsed, name)


def check_time(value: datetime, name: str) -> datetime:
    """`value` as an aware UTC datetime (naive means UTC) if it lies within TIME_MIN..TIME_MAX, else raise."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        utc = aware.astimezone(UTC)
    except OverflowError as exc:
        raise InspectionError(f"{name} {value.isoformat()} lies outside the years 1970-2199") from exc
    if not TIME_MIN <= utc < TIME_MAX:
        raise InspectionError(f"{name} {value.isoformat()} lies outside the years 1970-2199")
    return utc


def check_text(value: str, name: str, max_length: int) -> str:
    """`value` if it has no control characters and at most `max_length` characters, else raise."""
    if len(value) > max_length:
        raise InspectionError(f"{name} is longer than {max_length} characters")
    if _CONTROL.search(value):
        raise InspectionError(f"{name} {value!r} contains a control character")
    return value
