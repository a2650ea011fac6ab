"""The error answers each route documents in OpenAPI: every one is JSON `{"detail": ...}`, so a client generated
from the schema can read them (422, the request's shape, is FastAPI's own and documented by it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

WHAT = {
    400: "A value the server refuses (a bad name, time, label, or a frame that does not decode)",
    401: "Missing or unknown API key (X-API-Key header)",
    403: "The key's role may not do this",
    404: "No such product, model version, inspection or archived image",
    409: "Refused by the promotion gate, or the version is not exported or cannot serve",
    413: "The frame is larger than the server's limit (bytes or pixels)",
    415: "The body is not a supported image type",
    503: "The product's model is not loaded, the inference queue is full, or the server is stopping",
}


class ErrorBody(BaseModel):
    """Why a request was refused."""

    detail: str = Field(description="What went wrong, in words")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry documenting these error statuses with their JSON body."""
    return {status: {"model": ErrorBody, "description": WHAT[status]} for status in statuses}


KEYED = (401, 403)  # every /v1 route checks the key and its role
