"""Who the caller is: the dashboard shows each role only what it may do."""

from __future__ import annotations

from fastapi import APIRouter

from serving.auth import AnyKey
from serving.responses import errors

router = APIRouter(tags=["auth"], responses=errors(401))


@router.get("/v1/me")
async def who_am_i(key: AnyKey) -> dict[str, str]:
    """The name and role of the API key in the X-API-Key header."""
    return {"name": key.name, "role": key.role}
