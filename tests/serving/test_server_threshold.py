"""A served threshold set by QA reaches running servers at their next poll: the engine judges with it without
reloading the model or dropping a frame, and answers, stored rows, live stats and the curve endpoint follow."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inspection.operating_curve import point_at
from inspection.settings import Settings
from inspection.storage.database import open_database
from inspection.storage.inspections import InspectionFilter, list_inspections
from models import registry
from models.serving_choice import THRESHOLD_TAG, read_served_scores
from serving.prometheus_metrics import ServingMetrics
from serving.state import ServingState
from tests.cli.cli_runner import run_cli
from tests.conftest import serve_on_loopback
from tests.serving.test_shadow_scorer import _frames, _post_all, _wait_for
from tools.home_copy import copy_home

pytestmark = pytest.mark.slow


def _exported_home(trained_product, tmp_path: Path, poll_seconds: float = 0.2) -> Settings:
    """A private copy of the trained home with the champion exported, polling the registry often."""
    from training.export_pipeline import export_product

    export_product(trained_product.settings, trained_product.product)
    source = trained_product.settings
    settings = source.model_copy(update={"home": tmp_path / "var", "model_poll_seconds": poll_seconds})
    copy_home(source, settings)
    return settings


@contextlib.asynccontextmanager
async def _watching(settings: Settings) -> AsyncIterator[ServingState]:
    """A replica's serving state without its HTTP side: the tests call the watcher's sync_engines on it."""
    from serving.model_watcher import stop_shadows
    from serving.row_writer import InspectionRowWriter

    sessions = open_database(settings.resolved_database_url)
    state = ServingState(settings=settings, sessions=sessions, rows=InspectionRowWriter(sessions))
    state.metrics = ServingMetrics(lambda: state.engines, lambda: state.shadows)
    try:
        yield state
    finally:
        await stop_shadows(state, timeout=10)
        for engine in state.engines.values():
            await engine.close()
        await state.rows.close()


def test_the_watcher_sets_the_engines_threshold_without_reloading_the_model(trained_product, tmp_path: Path) -> None:
    from serving.model_watcher import sync_engines

    settings = _exported_home(trained_product, tmp_path)
    product = trained_product.product

    async def main() -> None:
        async with _watching(settings) as state:
            await sync_engines(state)
            engine = state.engines[product]
            own, model = engine.threshold, engine._current[0]
            assert engine.threshold_override is None
            registry.set_version_tags(settings, product, 1, {THRESHOLD_TAG: "0.8125"})
            changes = await sync_engines(state)
            assert changes == [f"{product}: v1 now judged at threshold 0.8125 (set by QA)"]
            assert state.engines[product] is engine and engine._current[0] is model  # the same session
            assert (engine.threshold, engine.threshold_override, engine.model_version) == (0.8125, 0.8125, 1)
            assert await sync_engines(state) == []  # nothing moved: nothing to do
            registry.set_version_tags(settings, product, 1, {THRESHOLD_TAG: "not a number"})  # ignored, logged
            await sync_engines(state)
            assert (engine.threshold, engine.threshold_override) == (own, None)

    asyncio.run(main())


def test_the_threshold_command_moves_served_verdicts_and_live_stats(
    trained_product, synthetic_source: Path, tmp_path: Path
) -> None:
    settings = _exported_home(trained_product, tmp_path)
    product = trained_product.product
    frames = _frames(synthetic_source)
    scores = read_served_scores(registry.resolve_version(settings, product, 1))
    assert scores is not None
    with serve_on_loopback(settings, product, "shadow") as live:
        before = _post_all(live, frames, "line-before")
        calibrated = before[0]["threshold"]
        assert {a["threshold"] for a in before} == {calibrated} and calibrated == pytest.approx(
            scores.calibrated_threshold, abs=1e-6
        )
        probabilities = [a["defect_probability"] for a in before]
        # A threshold that changes verdicts on these frames: flag every one if some passed, else pass every one.
        passed = [p for p in probabilities if p < calibrated]
        value = round(min(probabilities) / 2, 6) if passed else round((max(probabilities) + 1) / 2, 6)
        expected = ["defect" if p >= value else "pass" for p in probabilities]
        assert expected != [a["verdict"] for a in before]
        with live.client("manager") as manager:
            totals_before = manager.get("/v1/stats", params={"product": product}).json()["totals"]

        # A camera keeps streaming while QA moves the threshold: every frame is answered, old threshold then new.
        stream: list[float] = []
        stop = threading.Event()

        def camera() -> None:
            with live.client("camera") as client:
                while not stop.is_set():
                    answer = client.post(
                        f"/v1/inspect/{product}",
                        content=frames[len(stream) % len(frames)][1],
                        headers={"Content-Type": "image/png"},
                        params={"line_id": "line-stream"},
                    )
                    assert answer.status_code == 200, answer.text
                    stream.append(answer.json()["threshold"])

        streaming = threading.Thread(target=camera)
        streaming.start()
        try:
            result = run_cli(
                settings,
                "models",
                "threshold",
                product,
                "--value",
                str(value),
                "--reason",
                "test: move the verdicts",
                "--by",
                "qa-test",
            )
            assert result.returncode == 0, result.stderr
            with live.client("qa") as qa:
                _wait_for(lambda: qa.get("/v1/products").json()[0]["threshold"] == value)
            _wait_for(lambda: stream and stream[-1] == value)
        finally:
            stop.set()
            streaming.join(timeout=30)
        switched = stream.index(value)
        assert set(stream[:switched]) <= {calibrated} and set(stream[switched:]) == {value}

        after = _post_all(live, frames, "line-after")
        assert [a["verdict"] for a in after] == expected
        assert {a["threshold"] for a in after} == {value} and {a["model_version"] for a in after} == {1}
        sessions = open_database(settings.resolved_database_url)
        rows, _ = list_inspections(sessions, InspectionFilter(line_id="line-after"), limit=100)
        assert len(rows) == len(frames) and {row.threshold for row in rows} == {value}
        with live.client("manager") as manager:
            line = manager.get("/v1/stats", params={"product": product, "line": "line-after"}).json()["totals"]
            totals_after = manager.get("/v1/stats", params={"product": product}).json()["totals"]
            curve = manager.get(f"/v1/products/{product}/operating-curve").json()
            (version,) = manager.get(f"/v1/products/{product}/models").json()
        assert line["n_defect"] == expected.count("defect") and line["n"] == len(frames)
        _, streamed_defects = list_inspections(sessions, InspectionFilter(line_id="line-stream", verdict="defect"))
        assert totals_after["n_defect"] == totals_before["n_defect"] + line["n_defect"] + streamed_defects

        # The curve endpoint shows the served version at the threshold it now serves, with who set it and why.
        assert (curve["model_version"], curve["threshold"]) == (1, value)
        assert curve["threshold_set"]["set_by"] == "qa-test"
        assert curve["threshold_set"]["reason"] == "test: move the verdicts"
        assert curve["calibrated_threshold"] == scores.calibrated_threshold
        assert curve["current"]["test"] == point_at(scores.test.labels, scores.test.scores, value)
        assert any(p["threshold"] == value for p in curve["curve"])
        assert [row["target_miss_rate"] for row in curve["costs"]] == [0.01, 0.02, 0.05, 0.10]
        # The models list gives the frozen-test point at the threshold served now, beside training's calibration.
        assert (version["served_threshold"], version["served_threshold_source"]) == (value, "qa")
        assert version["test_at_served_threshold"] == curve["current"]["test"]
        calibrated_point = point_at(scores.test.labels, scores.test.scores, scores.calibrated_threshold)
        assert version["miss_rate"] == pytest.approx(calibrated_point["miss_rate"])
        assert all(("refused" in row) != ("threshold" in row) for row in curve["costs"])
        for row in curve["costs"]:  # refused exactly when validation holds fewer defects than one expected miss needs
            assert ("refused" in row) == (scores.validation.n_defect * row["target_miss_rate"] < 1)
        with live.client("camera") as camera:
            assert camera.get(f"/v1/products/{product}/operating-curve").status_code == 403
        with live.client("qa") as qa:
            assert qa.get("/v1/products/no-such-part/operating-curve").status_code == 404
