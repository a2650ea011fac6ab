"""The frame archive checked at startup: a misconfigured object store (a missing bucket, wrong credentials, an
unreachable endpoint) shows in the log and in /readyz at once, not at the first flagged frame, whose request
would fail because its frame cannot be archived.

The check runs in the background so a slow endpoint cannot hold up the server's start, and it is repeated until
it passes, so /readyz also shows when the store was fixed. It does not make the replica unready: every replica
archives to the same store, so taking them all out of the balancer would stop passing frames too.
"""

from __future__ import annotations

import asyncio
import logging

from serving.state import ARCHIVE_OK, ARCHIVE_UNCHECKED, ServingState

log = logging.getLogger("serving")


async def check_archive_until_ok(state: ServingState, retry_s: float) -> None:
    """Set `state.archive_status` to "ok" or the reason frames cannot be archived; retry every `retry_s` until ok."""
    while True:
        try:
            await asyncio.to_thread(lambda: state.archive.check())
        except Exception as exc:  # a bad archive URL fails in open_archive, before check() itself
            if state.archive_status != str(exc):
                log.error("frames cannot be archived, so flagged frames will fail until this is fixed: %s", exc)
            state.archive_status = str(exc)
        else:
            if state.archive_status not in (ARCHIVE_UNCHECKED, ARCHIVE_OK):
                log.info("the frame archive is reachable again")
            state.archive_status = ARCHIVE_OK
            return
        await asyncio.sleep(retry_s)
