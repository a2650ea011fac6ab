"""Throughput and latency of the recent past, per minute: what a control room watches to see the line keep up."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from inspection.errors import InspectionError
from inspection.storage.minute_counts import minute_totals
from inspection.storage.schema import Inspection
from inspection.storage.time_keys import format_time_key

MAX_WINDOW_MINUTES = 24 * 60
# Latency percentiles come from the newest frames only: a dashboard refreshing every few seconds must not pull an
# hour of rows (540,000 at 150 frames/s), and a fixed sample keeps the request's cost flat as the line speeds up.
# 1,000 frames pin a p95 within about a percentile point; minutes older than the sample show their mean latency
# (from the minute counts) and no percentiles.
LATENCY_SAMPLE = 1_000


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def compute_throughput(
    sessions: sessionmaker[Session],
    *,
    product: str | None = None,
    line_id: str | None = None,
    minutes: int = 60,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Frames per minute (every minute of the window, zero-filled), frames/s over the last 60 s, latency.

    The counts come from the minute cells (inspection.storage.minute_counts), so the cost follows the minutes and
    lines shown, not the frames; the percentiles from the newest LATENCY_SAMPLE frames.
    """
    if not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise InspectionError(f"minutes must be in [1, {MAX_WINDOW_MINUTES}]")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    first_minute = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    conditions = [Inspection.received_at >= first_minute]
    if product is not None:
        conditions.append(Inspection.product == product)
    if line_id is not None:
        conditions.append(Inspection.line_id == line_id)
    counts = minute_totals(sessions, since=first_minute, product=product, line_id=line_id)
    with sessions() as session:
        # At most a minute of rows, through the (product|line, received_at) index.
        last_60s = session.scalar(
            select(func.count()).where(*conditions, Inspection.received_at >= now - timedelta(seconds=60))
        )
        recent = session.execute(
            select(Inspection.received_at, Inspection.latency_ms)
            .where(*conditions)
            .order_by(Inspection.received_at.desc())
            .limit(LATENCY_SAMPLE)
        ).all()

    latencies: defaultdict[datetime, list[float]] = defaultdict(list)
    for received_at, latency_ms in recent:
        moment = received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC)  # SQLite drops the offset
        latencies[moment.astimezone(UTC).replace(second=0, microsecond=0)].append(float(latency_ms))
    # A minute wholly inside the sample has exact percentiles; the oldest sampled minute may be cut by the limit.
    oldest_whole = min(latencies) + timedelta(minutes=1) if len(recent) == LATENCY_SAMPLE else first_minute
    per_minute = []
    total = 0
    for index in range(minutes):
        start = first_minute + timedelta(minutes=index)
        n, latency_sum = counts.get(format_time_key(start, "minute"), (0, 0.0))
        total += n
        spread = _percentiles(latencies.get(start, []) if start >= oldest_whole else [])
        per_minute.append(
            {
                "start": start.isoformat(),
                "n": n,
                "fps": n / 60.0,
                "latency_mean_ms": latency_sum / n if n else None,
                "latency_p50_ms": spread["p50"],
                "latency_p95_ms": spread["p95"],
            }
        )
    return {
        "window_minutes": minutes,
        "n": total,
        "frames_per_second": (last_60s or 0) / 60.0,
        "latency_ms": _percentiles([float(latency) for _, latency in recent]),
        "latency_sample": len(recent),
        "per_minute": per_minute,
    }
