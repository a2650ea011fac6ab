"""API-key authentication and role checks as FastAPI dependencies (X-API-Key header)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from inspection.storage.api_keys import authenticate
from inspection.storage.schema import ApiKey


def require_role(*roles: str) -> Callable[..., object]:
    """A dependency that admits keys of the given roles: 401 without a valid key, 403 with the wrong role."""

    async def check(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> ApiKey:
        key = await run_in_threadpool(authenticate, request.app.state.serving.sessions, x_api_key)
        if key is None:
            raise HTTPException(401, "missing or invalid API key (X-API-Key header)")
        if key.role not in roles:
            raise HTTPException(403, f"role {key.role!r} may not do this; needs one of {', '.join(roles)}")
        return key

    return check


CameraKey = Annotated[ApiKey, Depends(require_role("camera", "qa"))]
QaKey = Annotated[ApiKey, Depends(require_role("qa"))]
ReaderKey = Annotated[ApiKey, Depends(require_role("qa", "manager"))]
