"""Defect statistics for plant managers and QA: counts, defect rate, per-type counts, live miss and
false-detection rates with Wilson intervals, by product, line and time bucket."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from inspection.storage.stats import Bucket, compute_stats
from inspection.storage.throughput import MAX_WINDOW_MINUTES, compute_throughput
from serving.auth import ReaderKey
from serving.deps import SessionsDep

router = APIRouter(tags=["stats"])


@router.get("/v1/stats")
async def get_stats(
    _key: ReaderKey,
    sessions: SessionsDep,
    product: str | None = None,
    line: Annotated[str | None, Query(description="Line id")] = None,
    since: Annotated[datetime | None, Query(description="Inclusive start; without an offset it is UTC")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive end; without an offset it is UTC")] = None,
    bucket: Annotated[Bucket | None, Query(description="Group by UTC hour, shift or day")] = None,
) -> dict[str, Any]:
    """Counts, defect rate, per-type counts and QA-measured miss / false-detection rates with 95% intervals."""
    return await run_in_threadpool(
        compute_stats,
        sessions,
        product=product,
        line_id=line,
        since=since,
        until=until,
        bucket=bucket,
    )


@router.get("/v1/stats/throughput")
async def get_throughput(
    _key: ReaderKey,
    sessions: SessionsDep,
    product: str | None = None,
    line: Annotated[str | None, Query(description="Line id")] = None,
    minutes: Annotated[int, Query(ge=1, le=MAX_WINDOW_MINUTES, description="Window length")] = 60,
) -> dict[str, Any]:
    """Frames per minute over the window, frames/s over the last minute, and p50/p95/p99 server latency."""
    return await run_in_threadpool(compute_throughput, sessions, product=product, line_id=line, minutes=minutes)
