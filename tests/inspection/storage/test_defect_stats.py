"""Defect statistics against real databases (SQLite and PostgreSQL) on rows whose answers are known."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from inspection.errors import InspectionError
from inspection.metrics import wilson_interval
from inspection.storage.defect_stats import compute_stats
from inspection.storage.inspections import add_inspection, record_feedback

DAY = datetime(2026, 11, 29, tzinfo=UTC)


def _add(sessions, at: datetime, verdict: str = "pass", defect_type: str | None = None, label: str | None = None, **kw):
    fields = dict(product="widget", line_id="line-1", defect_probability=0.5, threshold=0.5, model_version=1)
    row = add_inspection(
        sessions, **{**fields, **kw}, received_at=at, verdict=verdict, defect_type=defect_type, latency_ms=5.0
    )
    if label is not None:
        record_feedback(sessions, row.id, label, by="qa-anna")


@pytest.fixture
def populated(sessions) -> sessionmaker[Session]:
    """line-1 (widget, 29 Nov): 40 reviewed defects (4 passed), 60 reviewed goods (3 flagged), 10 unreviewed;
    line-2 (gadget, 30 Nov): 5 frames, one reviewed; one widget frame without a line."""
    at = DAY + timedelta(hours=10)
    for i, label in enumerate(["crack"] * 20 + ["scratch"] * 20):
        missed = i % 10 == 0  # 2 cracks and 2 scratches passed
        _add(sessions, at, "pass" if missed else "defect", None if missed else label, label)
    for i in range(60):
        _add(sessions, at, "defect" if i < 3 else "pass", "spot" if i < 3 else None, "good")
    for i in range(10):
        _add(sessions, at, "defect" if i < 5 else "pass", "crack" if i < 5 else None)
    later = DAY + timedelta(days=1, hours=10)
    for i in range(5):
        _add(
            sessions,
            later,
            "defect" if i < 2 else "pass",
            "dent" if i < 2 else None,
            "dent" if i == 0 else None,
            product="gadget",
            line_id="line-2",
        )
    _add(sessions, DAY + timedelta(hours=12), line_id=None)
    return sessions


def test_counts_rates_and_intervals_are_exact(populated) -> None:
    stats = compute_stats(populated)
    assert stats["totals"]["n"] == 116 and set(stats["by_line"]) == {"line-1", "line-2", "(none)"}
    line = stats["by_line"]["line-1"]
    assert line["n"] == 110 and line["n_defect"] == 44 and line["defect_rate"] == pytest.approx(44 / 110)
    assert line["per_type"] == {"crack": 23, "scratch": 18, "spot": 3}
    qa = line["qa"]
    assert qa["n_reviewed"] == 100  # the 10 unreviewed frames count nowhere in the QA figures
    assert qa["miss_rate"] == {"rate": 0.1, "k": 4, "n": 40, "ci95": list(wilson_interval(4, 40))}
    assert qa["false_detection_rate"] == {"rate": 0.05, "k": 3, "n": 60, "ci95": list(wilson_interval(3, 60))}
    assert qa["warning"] is None
    assert stats["by_product"]["gadget"]["per_type"] == {"dent": 2}
    assert "buckets" not in stats
    json.dumps(stats)  # JSON-ready as it is


def test_few_reviews_warn_and_an_empty_rate_is_none(populated) -> None:
    qa = compute_stats(populated)["by_line"]["line-2"]["qa"]
    assert qa["miss_rate"] == {"rate": 0.0, "k": 0, "n": 1, "ci95": list(wilson_interval(0, 1))}
    assert qa["false_detection_rate"] == {"rate": None, "k": 0, "n": 0, "ci95": [0.0, 1.0]}
    assert "only 1 QA-checked defective frames: too few to trust the miss rate" in qa["warning"]
    assert "only 0 QA-checked good frames: too few to trust the false-detection rate" in qa["warning"]


def test_filters_by_product_line_and_time_window(populated) -> None:
    everything = compute_stats(populated)
    assert compute_stats(populated, line_id="line-1")["totals"] == everything["by_line"]["line-1"]
    assert compute_stats(populated, product="gadget")["totals"] == everything["by_product"]["gadget"]
    assert compute_stats(populated, product="widget")["totals"]["n"] == 111
    next_day = compute_stats(populated, since=DAY + timedelta(days=1))
    assert next_day["totals"]["n"] == 5 and set(next_day["by_line"]) == {"line-2"}
    # An offset is honoured: 01:00 at +01:00 is midnight UTC; `until` is exclusive.
    plus_one = timezone(timedelta(hours=1))
    assert compute_stats(populated, since=datetime(2026, 11, 30, 1, tzinfo=plus_one))["totals"]["n"] == 5
    assert compute_stats(populated, until=DAY + timedelta(hours=12))["totals"]["n"] == 110
    empty = compute_stats(populated, line_id="nowhere")
    assert empty["totals"]["n"] == 0 and empty["totals"]["defect_rate"] is None and empty["by_line"] == {}
    with pytest.raises(InspectionError, match="earlier"):
        compute_stats(populated, since=DAY, until=DAY)


def _spans(stats) -> list[tuple[str, str, int]]:
    return [(b["start"][5:16], b["end"][5:16], b["n"]) for b in stats["buckets"]]


def test_hour_shift_and_day_buckets(sessions) -> None:
    for hour, minute in [(5, 59), (6, 0), (21, 59), (22, 30), (25, 0)]:
        missed = hour == 22  # the 22:30 frame is a crack the server passed
        _add(sessions, DAY + timedelta(hours=hour, minutes=minute), label="crack" if missed else None)
    shifts = compute_stats(sessions, bucket="shift")
    assert _spans(shifts) == [
        ("11-28T22:00", "11-29T06:00", 1),
        ("11-29T06:00", "11-29T14:00", 1),
        ("11-29T14:00", "11-29T22:00", 1),
        ("11-29T22:00", "11-30T06:00", 2),  # the night shift runs past midnight and keeps its start day
    ]
    assert shifts["buckets"][0]["start"] == "2026-11-28T22:00:00+00:00"
    assert shifts["buckets"][-1]["qa"]["miss_rate"]["k"] == 1 and shifts["buckets"][-1]["qa"]["n_reviewed"] == 1
    assert _spans(compute_stats(sessions, bucket="day")) == [
        ("11-29T00:00", "11-30T00:00", 4),
        ("11-30T00:00", "12-01T00:00", 1),
    ]
    hours = _spans(compute_stats(sessions, bucket="hour"))
    assert [h[0] for h in hours] == ["11-29T05:00", "11-29T06:00", "11-29T21:00", "11-29T22:00", "11-30T01:00"]
    two_shifts = compute_stats(sessions, bucket="shift", shift_starts=(19, 7))
    assert _spans(two_shifts) == [
        ("11-28T19:00", "11-29T07:00", 2),
        ("11-29T19:00", "11-30T07:00", 3),
    ]
    with pytest.raises(InspectionError, match="shift starts"):
        compute_stats(sessions, bucket="shift", shift_starts=(6, 6))


def test_buckets_carry_p_chart_limits_and_flag_a_burst(sessions) -> None:
    # Eight steady hours at 5 % defects, then one hour at 40 %: only that hour is out of control.
    for hour in range(9):
        defects = 8 if hour == 8 else 1
        for i in range(20):
            _add(
                sessions,
                DAY + timedelta(hours=hour),
                "defect" if i < defects else "pass",
                "crack" if i < defects else None,
            )
    buckets = compute_stats(sessions, bucket="hour")["buckets"]
    center = (8 * 1 + 8) / 180
    assert all(b["control"]["center"] == pytest.approx(center) for b in buckets)
    assert [b["control"]["out_of_control"] for b in buckets] == [False] * 8 + [True]
    assert buckets[0]["control"]["ucl"] == pytest.approx(center + 3 * (center * (1 - center) / 20) ** 0.5)


def test_cli_prints_tables_and_json(populated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app

    monkeypatch.setenv("INSPECTION_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("INSPECTION_DATABASE_URL", populated.kw["bind"].url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    raw = runner.invoke(app, ["stats", "--line", "line-1", "--json"])
    assert raw.exit_code == 0, raw.output
    assert json.loads(raw.stdout)["totals"]["qa"]["miss_rate"]["k"] == 4
    table = runner.invoke(app, ["stats", "--bucket", "day"])
    assert table.exit_code == 0, table.output
    for text in ("by line", "line-2", "10.00%", "4/40", "crack 23", "2026-11-30T00:00:00+00:00", "too few to trust"):
        assert text in table.stdout
    bad = runner.invoke(app, ["stats", "--bucket", "week"])
    assert bad.exit_code != 0 and isinstance(bad.exception, InspectionError)
