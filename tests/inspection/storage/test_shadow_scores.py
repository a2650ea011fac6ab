"""Shadow scores and their comparison on hand-made rows, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from inspection.metrics import wilson_interval
from inspection.storage.inspections import add_inspection, record_feedback
from inspection.storage.shadow_scores import add_shadow_scores, shadow_comparison

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _served(sessions, i: int, verdict: str, *, version: int = 1, label: str | None = None, product: str = "widget"):
    """An answered inspection received at T0 + i seconds, with optional QA feedback; returns its id."""
    row = add_inspection(
        sessions,
        product=product,
        line_id="line-1",
        received_at=T0 + timedelta(seconds=i),
        verdict=verdict,
        defect_probability=0.9 if verdict == "defect" else 0.1,
        defect_type="crack" if verdict == "defect" else None,
        threshold=0.5,
        model_version=version,
        latency_ms=5.0,
    )
    if label is not None:
        record_feedback(sessions, row.id, label, "qa")
    return row.id


def _shadow(inspection_id: str, verdict: str, *, version: int = 2, product: str = "widget") -> dict:
    return dict(
        inspection_id=inspection_id,
        product=product,
        model_version=version,
        defect_probability=0.8 if verdict == "defect" else 0.2,
        verdict=verdict,
        defect_type="crack" if verdict == "defect" else None,
        threshold=0.4,
        latency_ms=3.0,
        scored_at=T0 + timedelta(minutes=5),
    )


def _block(k: int, n: int) -> dict:
    return {"rate": k / n if n else None, "k": k, "n": n, "ci95": list(wilson_interval(k, n))}


def test_comparison_counts_agreement_rates_and_missing_shadows(sessions) -> None:
    # (served verdict, shadow verdict or None = skipped, QA label)
    frames = [
        ("pass", "pass", "good"),
        ("pass", "defect", "good"),  # challenger flags a good part
        ("defect", "defect", "crack"),
        ("pass", "defect", "crack"),  # champion missed, challenger caught
        ("pass", "pass", "spot"),  # both missed
        ("defect", "pass", None),  # disagreement, unlabelled
        ("pass", None, "good"),  # skipped: no shadow score
        ("pass", "pass", None),
    ]
    rows = []
    for i, (served, shadow, label) in enumerate(frames):
        inspection_id = _served(sessions, i, served, label=label)
        if shadow is not None:
            rows.append(_shadow(inspection_id, shadow))
    assert add_shadow_scores(sessions, rows) == 7
    _served(sessions, 100, "pass")  # after the last shadowed frame: still in the queue, not "missing"
    _served(sessions, 3, "pass", product="other")  # another product never counts
    add_shadow_scores(sessions, [_shadow(_served(sessions, 4, "pass", product="other"), "defect", product="other")])

    result = shadow_comparison(sessions, "widget", 2).to_dict()
    assert result["challenger"] == 2
    assert result["served_versions"] == [1]
    assert result["frames_shadowed"] == 7
    assert result["missing_shadow"] == 1
    assert result["agreement"] == _block(4, 7)
    assert result["since"] == T0.isoformat()
    assert result["until"] == (T0 + timedelta(seconds=7)).isoformat()
    qa = result["qa"]
    assert (qa["n_reviewed"], qa["n_defective"], qa["n_good"]) == (5, 3, 2)
    assert qa["champion"] == {"miss_rate": _block(2, 3), "false_detection_rate": _block(0, 2)}
    assert qa["challenger"] == {"miss_rate": _block(1, 3), "false_detection_rate": _block(1, 2)}
    assert "too few" in result["warning"]


def test_champion_filter_since_and_the_challenger_never_compared_with_itself(sessions) -> None:
    first = _served(sessions, 0, "pass", version=1, label="good")
    second = _served(sessions, 10, "defect", version=3, label="good")
    own = _served(sessions, 20, "defect", version=2)  # served by v2 itself after a promotion
    add_shadow_scores(sessions, [_shadow(first, "pass"), _shadow(second, "pass"), _shadow(own, "defect")])

    everything = shadow_comparison(sessions, "widget", 2)
    assert everything.frames_shadowed == 2
    assert everything.served_versions == (1, 3)
    only_v3 = shadow_comparison(sessions, "widget", 2, champion_version=3).to_dict()
    assert only_v3["frames_shadowed"] == 1
    assert only_v3["qa"]["champion"]["false_detection_rate"] == _block(1, 1)
    assert only_v3["qa"]["challenger"]["false_detection_rate"] == _block(0, 1)
    later = shadow_comparison(sessions, "widget", 2, since=T0 + timedelta(seconds=5))
    assert later.frames_shadowed == 1
    assert later.since == T0 + timedelta(seconds=10)


def test_no_shadow_scores_and_versions(sessions) -> None:
    _served(sessions, 0, "pass")
    empty = shadow_comparison(sessions, "widget", 2).to_dict()
    assert empty["frames_shadowed"] == 0
    assert empty["missing_shadow"] == 0
    assert empty["agreement"] == _block(0, 0)
    assert empty["since"] is None
    assert empty["warning"].startswith("no frame")


def test_a_batch_is_one_transaction(sessions) -> None:
    inspection_id = _served(sessions, 0, "pass")
    add_shadow_scores(sessions, [_shadow(inspection_id, "pass")])
    other = _served(sessions, 1, "pass")
    # The second row repeats a key: the whole batch is refused, so no half-written batch remains.
    with pytest.raises(IntegrityError):
        add_shadow_scores(sessions, [_shadow(other, "pass"), _shadow(inspection_id, "defect")])
    assert shadow_comparison(sessions, "widget", 2).frames_shadowed == 1
