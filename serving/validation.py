"""Request parameters checked at the edge: `Annotated` types the routes declare, so a bad value gets a 4xx with a
JSON body (and its rule appears in the OpenAPI schema) before any work is done."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator

from inspection.errors import InspectionError
from inspection.names import PRODUCT_PATTERN
from inspection.validation import MAX_OFFSET, TEXT_PATTERN, TIME_PATTERN, check_time, parse_time

NAME_MAX_LENGTH = 64  # the line_id, camera_id and product columns' size


def _strict_time(value: Any) -> Any:
    """Only an ISO 8601 string is a time here: pydantic alone would read "0.5" as seconds since 1970."""
    if isinstance(value, str):
        try:
            return parse_time(value, "time")
        except InspectionError as exc:
            raise ValueError(str(exc)) from exc
    return value


def _in_range(value: datetime) -> datetime:
    try:
        return check_time(value, "time")
    except InspectionError as exc:
        raise ValueError(str(exc)) from exc


def time_query(description: str) -> Any:
    """A `since`/`until` query parameter whose schema states the accepted form and years."""
    return Query(description=description, json_schema_extra={"pattern": TIME_PATTERN})


# An ISO 8601 time in 1970-2199, as an aware UTC datetime; None when not sent.
TimeParam = Annotated[datetime | None, BeforeValidator(_strict_time), AfterValidator(_in_range)]
# Free text that names a line or a camera: no control characters, the column's size.
NameQuery = Annotated[str | None, Query(max_length=NAME_MAX_LENGTH, pattern=TEXT_PATTERN)]
ProductQuery = Annotated[str | None, Query(max_length=NAME_MAX_LENGTH, pattern=PRODUCT_PATTERN)]
InspectionIdPath = Annotated[str, Path(max_length=36, pattern=TEXT_PATTERN, description="The inspection's id")]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
VersionPath = Annotated[int, Path(ge=1, le=MAX_OFFSET, description="A registered model version")]
VersionQuery = Annotated[int | None, Query(ge=1, le=MAX_OFFSET)]
