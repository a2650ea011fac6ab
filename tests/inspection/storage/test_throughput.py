"""Throughput and latency per minute, against real SQLite and PostgreSQL databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inspection.errors import InspectionError
from inspection.storage.inspections import add_inspection
from inspection.storage.throughput import compute_throughput

NOW = datetime(2026, 11, 30, 10, 30, 40, tzinfo=UTC)


def _add(sessions, at: datetime, latency_ms: float, product: str = "widget", line_id: str = "line-1") -> None:
    add_inspection(
        sessions,
        product=product,
        line_id=line_id,
        received_at=at,
        verdict="pass",
        defect_probability=0.1,
        threshold=0.5,
        model_version=1,
        latency_ms=latency_ms,
    )


def test_counts_per_minute_are_zero_filled_and_latency_percentiles_exact(sessions) -> None:
    for second in range(0, 60, 2):  # 30 frames in the current minute (10:30), latencies 1..30 ms
        _add(sessions, NOW.replace(second=0) + timedelta(seconds=second / 2), latency_ms=1 + second / 2)
    for _ in range(6):  # 6 frames two minutes earlier (10:28), on another line
        _add(sessions, NOW - timedelta(minutes=2), latency_ms=100.0, line_id="line-2")
    _add(sessions, NOW - timedelta(minutes=30), latency_ms=5.0)  # outside a 10-minute window

    result = compute_throughput(sessions, minutes=10, now=NOW)
    minutes = result["per_minute"]
    assert len(minutes) == 10 and minutes[-1]["start"] == "2026-11-30T10:30:00+00:00"
    assert [m["n"] for m in minutes] == [0] * 7 + [6, 0, 30]
    assert minutes[-1]["fps"] == pytest.approx(0.5)
    assert minutes[-1]["latency_p50_ms"] == pytest.approx(15.5)
    assert minutes[-3]["latency_p95_ms"] == pytest.approx(100.0) and minutes[-2]["latency_p50_ms"] is None
    assert result["n"] == 36
    # The last 60 s hold the 30 frames of 10:30 and none of 10:28.
    assert result["frames_per_second"] == pytest.approx(0.5)
    assert result["latency_ms"]["p99"] == pytest.approx(100.0)

    line_1 = compute_throughput(sessions, minutes=10, now=NOW, line_id="line-1")
    assert line_1["n"] == 30 and line_1["latency_ms"]["p99"] < 31
    assert compute_throughput(sessions, minutes=10, now=NOW, product="gadget")["n"] == 0


def test_an_empty_window_has_no_latency_and_bad_windows_are_refused(sessions) -> None:
    result = compute_throughput(sessions, minutes=5, now=NOW)
    assert result["n"] == 0 and result["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert [m["n"] for m in result["per_minute"]] == [0] * 5
    with pytest.raises(InspectionError):
        compute_throughput(sessions, minutes=0)
