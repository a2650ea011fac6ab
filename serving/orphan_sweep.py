"""The startup (and then hourly) sweep of archived frames that a crash left without a row."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from inspection.frame_archive import LocalArchive
from inspection.storage.orphans import sweep_orphan_frames
from serving.state import ServingState

log = logging.getLogger("serving")
SWEEP_INTERVAL_S = 3600.0


async def sweep_orphans_forever(state: ServingState, interval_s: float = SWEEP_INTERVAL_S) -> None:
    """Sweep the local archive now, then every `interval_s` (cancelled at shutdown); errors are logged, never fatal."""
    while True:
        archive = state.archive
        # An object store is shared by every replica and lists slowly: its orphans are left to its lifecycle rules.
        if isinstance(archive, LocalArchive):
            try:
                removed = await run_in_threadpool(sweep_orphan_frames, archive.root, state.sessions)
                if removed:
                    log.warning("removed %d archived files that had no inspection row (a crash)", len(removed))
            except Exception:
                log.exception("sweeping orphan archive files failed")
        await asyncio.sleep(interval_s)
