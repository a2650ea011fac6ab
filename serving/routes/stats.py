"""Defect statistics for plant managers and QA: counts, defect rate, per-type counts, live miss and
false-detection rates with Wilson intervals, by product, line and time bucket."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from inspection.storage.defect_stats import Bucket, compute_stats
from inspection.storage.throughput import MAX_WINDOW_MINUTES, compute_throughput
from inspection.validation import TEXT_PATTERN
from serving.auth import ReaderKey
from serving.deps import SessionsDep
from serving.responses import KEYED, errors
from serving.validation import NAME_MAX_LENGTH, ProductQuery, TimeParam, time_query

router = APIRouter(tags=["stats"], responses=errors(400, *KEYED))


@router.get("/v1/stats")
async def get_stats(
    _key: ReaderKey,
    sessions: SessionsDep,
    product: ProductQuery = None,
    line: Annotated[str | None, Query(description="Line id", max_length=NAME_MAX_LENGTH, pattern=TEXT_PATTERN)] = None,
    since: Annotated[TimeParam, time_query("Inclusive start; without an offset it is UTC")] = None,
    until: Annotated[TimeParam, time_query("Exclusive end; without an offset it is UTC")] = None,
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
    product: ProductQuery = None,
    line: Annotated[str | None, Query(description="Line id", max_length=NAME_MAX_LENGTH, pattern=TEXT_PATTERN)] = None,
    minutes: Annotated[int, Query(ge=1, le=MAX_WINDOW_MINUTES, description="Window length")] = 60,
) -> dict[str, Any]:
    """Frames per minute over the window, frames/s over the last minute, and p50/p95/p99 server latency."""
    return await run_in_threadpool(compute_throughput, sessions, product=product, line_id=line, minutes=minutes)
