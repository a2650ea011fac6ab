"""Throughput and latency of the recent past, per minute: what a control room watches to see the line keep up."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from inspection.errors import InspectionError
from inspection.storage.schema import Inspection
from inspection.storage.time_keys import parse_time_key, time_key

MAX_WINDOW_MINUTES = 24 * 60
# Latency percentiles come from the newest frames only: at 150 frames/s an hour holds 540,000 rows, and a
# dashboard refreshing every few seconds must not pull them all; 20,000 frames pin a p99 well enough.
LATENCY_SAMPLE = 20_000


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
    """Frames per minute (every minute of the window, zero-filled), frames/s over the last 60 s, latency."""
    if not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise InspectionError(f"minutes must be in [1, {MAX_WINDOW_MINUTES}]")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    first_minute = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    conditions = [Inspection.received_at >= first_minute]
    if product is not None:
        conditions.append(Inspection.product == product)
    if line_id is not None:
        conditions.append(Inspection.line_id == line_id)
    minute = time_key(sessions, "minute").label("minute")
    with sessions() as session:
        counts = session.execute(select(minute, func.count()).where(*conditions).group_by(minute)).all()
        last_60s = session.scalar(
            select(func.count()).where(*conditions, Inspection.received_at >= now - timedelta(seconds=60))
        )
        recent = session.execute(
            select(Inspection.received_at, Inspection.latency_ms)
            .where(*conditions)
            .order_by(Inspection.received_at.desc())
            .limit(LATENCY_SAMPLE)
        ).all()

    per_minute_n = {parse_time_key(key, "minute"): int(n) for key, n in counts}
    latencies: defaultdict[datetime, list[float]] = defaultdict(list)
    for received_at, latency_ms in recent:
        moment = received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC)  # SQLite drops the offset
        latencies[moment.astimezone(UTC).replace(second=0, microsecond=0)].append(float(latency_ms))
    per_minute = []
    for index in range(minutes):
        start = first_minute + timedelta(minutes=index)
        n = per_minute_n.get(start, 0)
        spread = _percentiles(latencies.get(start, []))
        per_minute.append(
            {
                "start": start.isoformat(),
                "n": n,
                "fps": n / 60.0,
                "latency_p50_ms": spread["p50"],
                "latency_p95_ms": spread["p95"],
            }
        )
    return {
        "window_minutes": minutes,
        "n": sum(per_minute_n.values()),
        "frames_per_second": (last_60s or 0) / 60.0,
        "latency_ms": _percentiles([float(latency) for _, latency in recent]),
        "latency_sample": len(recent),
        "per_minute": per_minute,
    }
