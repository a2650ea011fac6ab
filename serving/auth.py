"""API-key authentication and role checks as FastAPI dependencies (X-API-Key header).

Verified keys are remembered for AUTH_CACHE_SECONDS so a camera at 50 fps does not cost a database query per
frame; a revoked key therefore stops working within that time, not instantly.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from inspection.storage.api_keys import authenticate, hash_key
from inspection.storage.schema import ApiKey

AUTH_CACHE_SECONDS = 30.0


async def _cached_authenticate(request: Request, key: str | None) -> ApiKey | None:
    if not key:
        return None
    cache: dict[str, tuple[ApiKey, float]] = request.app.state.auth_cache
    digest, now = hash_key(key), time.monotonic()
    hit = cache.get(digest)
    if hit is not None and hit[1] > now:
        return hit[0]
    found = await run_in_threadpool(authenticate, request.app.state.serving.sessions, key)
    if found is not None:  # unknown keys are never cached: a flood of bad keys must not grow memory
        cache[digest] = (found, now + AUTH_CACHE_SECONDS)
    return found


def require_role(*roles: str) -> Callable[[Request, str | None], Awaitable[ApiKey]]:
    """A dependency that admits keys of the given roles: 401 without a valid key, 403 with the wrong role."""

    async def check(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> ApiKey:
        key = await _cached_authenticate(request, x_api_key)
        if key is None:
            raise HTTPException(401, "missing or invalid API key (X-API-Key header)")
        if key.role not in roles:
            raise HTTPException(403, f"role {key.role!r} may not do this; needs one of {', '.join(roles)}")
        return key

    return check


# Who may do what, decided here once, as DESIGN.md states it: cameras post frames (and only they: a frame is a
# part on the line); QA engineers see the frames and their images, label them, set thresholds and promote models;
# plant managers read the aggregates (statistics, products, models, operating curves, the shadow comparison) and
# the dashboard. tests/serving/test_roles.py holds the role x route table.
CAMERA, QA, MANAGER = "camera", "qa", "manager"
ROLES = (CAMERA, QA, MANAGER)

AnyKey = Annotated[ApiKey, Depends(require_role(*ROLES))]
# Named: serving.fast_path's route calls it directly for the frames it answers without dependency resolution.
check_camera_key = require_role(CAMERA)
CameraKey = Annotated[ApiKey, Depends(check_camera_key)]
QaKey = Annotated[ApiKey, Depends(require_role(QA))]
ReaderKey = Annotated[ApiKey, Depends(require_role(QA, MANAGER))]
