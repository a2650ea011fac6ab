"""A challenger in shadow on a real server: every answered frame gets one shadow score, the line's answers are those
of champion-only serving, GET /shadow counts what a hand count gives, and the shadow follows the challenger alias.
The budget (queue size, delay) is checked on a real ORT session and a real SQLite database."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from sqlalchemy import select

from inspection.imaging import decode_image
from inspection.metrics import wilson_interval
from inspection.settings import Settings
from inspection.storage.database import open_database
from inspection.storage.schema import ShadowScore
from inspection.storage.shadow_scores import shadow_comparison
from models import registry
from models.onnx_runtime import METADATA_KEY_PREFIX, OnnxScorer
from models.serving_choice import champion_model, serving_file
from serving.frames import frame_to_inputs
from serving.prometheus_metrics import ServingMetrics
from serving.shadow_scorer import ShadowScorer
from tests.conftest import LiveServer, serve_on_loopback
from tests.serving.test_server_promotion import _home_with_two_exported_versions

pytestmark = pytest.mark.slow


def _frames(source: Path) -> list[tuple[str, bytes]]:
    """12 good and 12 defective real frames of the synthetic product: (true label, PNG bytes)."""
    good = [("good", path) for path in sorted((source / "good").glob("*.png"))[:12]]
    defect_dirs = sorted(d for d in source.iterdir() if d.is_dir() and d.name not in {"good", "masks"})
    defects = [(d.name, path) for d in defect_dirs for path in sorted(d.glob("*.png"))[:3]][:12]
    return [(label, path.read_bytes()) for label, path in good + defects]


def _set_threshold(path: Path, threshold: float) -> None:
    """Rewrite the calibrated threshold in an exported model's metadata (a challenger that disagrees)."""
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY_PREFIX + "threshold":
            prop.value = json.dumps(threshold)
    onnx.save(model, str(path))


def _disagreeing_threshold(settings: Settings, product: str, frames: list[tuple[str, bytes]]) -> float:
    """A threshold that flags a different number of these frames than the champion's does."""
    scorer = OnnxScorer(champion_model(settings, product).path)  # type: ignore[union-attr]
    probabilities = np.sort(scorer.score_images([decode_image(data) for _, data in frames])[0])
    champion_flags = int(np.sum(probabilities >= scorer.threshold))
    for q in (0.5, 0.25, 0.75, 0.1, 0.9):
        index = int(q * len(probabilities))
        candidate = float((probabilities[index - 1] + probabilities[index]) / 2)
        if int(np.sum(probabilities >= candidate)) != champion_flags:
            return candidate
    raise AssertionError("the champion's scores give no threshold that disagrees")


def _wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _shadow_rows(settings: Settings) -> dict[str, list[ShadowScore]]:
    sessions = open_database(settings.resolved_database_url)
    rows: dict[str, list[ShadowScore]] = {}
    with sessions() as session:
        for row in session.scalars(select(ShadowScore)):
            rows.setdefault(row.inspection_id, []).append(row)
    return rows


def _post_all(live: LiveServer, frames: list[tuple[str, bytes]], line: str) -> list[dict[str, Any]]:
    # One client, one frame at a time: every frame is scored alone (batch 1) on both passes, so the answers of
    # the two passes are comparable bit for bit.
    answers = []
    with live.client("camera") as camera:
        for i, (_, data) in enumerate(frames):
            response = camera.post(
                f"/v1/inspect/{live.product}",
                content=data,
                headers={"Content-Type": "image/png"},
                params={"line_id": line, "camera_id": "cam-1", "frame_id": str(i)},
            )
            assert response.status_code == 200, response.text
            answers.append(response.json())
    return answers


def _rate(k: int, n: int) -> dict[str, Any]:
    return {"rate": k / n if n else None, "k": k, "n": n, "ci95": list(wilson_interval(k, n))}


def test_challenger_in_shadow_changes_no_answer_and_scores_every_frame(
    trained_product, synthetic_source: Path, tmp_path: Path
) -> None:
    settings = _home_with_two_exported_versions(trained_product, tmp_path)
    product = trained_product.product
    frames = _frames(synthetic_source)
    challenger_threshold = _disagreeing_threshold(settings, product, frames)
    v2 = registry.resolve_version(settings, product, 2)
    _set_threshold(serving_file(v2.artifacts), challenger_threshold)  # type: ignore[arg-type]
    assert registry.challenger(settings, product).version == 2  # type: ignore[union-attr]

    with serve_on_loopback(settings, product, "shadow") as live:
        with live.client("qa") as qa:
            assert qa.get(f"/v1/products/{product}/shadow").json()["in_shadow_now"] is True
        shadowed = _post_all(live, frames, "line-shadow")
        ids = [answer["inspection_id"] for answer in shadowed]
        assert {answer["model_version"] for answer in shadowed} == {1}

        # Every answered frame gets exactly one shadow score, by the challenger, with its own threshold.
        rows = _wait_for(lambda: (found := _shadow_rows(settings)) and len(found) == len(ids) and found)
        assert set(rows) == set(ids)
        for answer in shadowed:
            (row,) = rows[answer["inspection_id"]]
            assert (row.model_version, row.product, row.threshold) == (2, product, challenger_threshold)
            assert row.verdict == ("defect" if row.defect_probability >= challenger_threshold else "pass")
            # Same weights, its own single-threaded session: the same score up to float rounding.
            assert row.defect_probability == pytest.approx(answer["defect_probability"], abs=1e-5)
            assert row.latency_ms >= 0

        # QA labels two frames in three; the endpoint's figures are those counted by hand from the rows.
        labels = {}
        with live.client("qa") as qa:
            for i, ((label, _), inspection_id) in enumerate(zip(frames, ids, strict=True)):
                if i % 3:
                    assert (
                        qa.post(f"/v1/inspections/{inspection_id}/feedback", json={"label": label}).status_code == 200
                    )
                    labels[inspection_id] = label
            shadow = qa.get(f"/v1/products/{product}/shadow").json()
        served = {a["inspection_id"]: a["verdict"] for a in shadowed}
        challenger = {i: rows[i][0].verdict for i in ids}
        agree = sum(served[i] == challenger[i] for i in ids)
        assert 0 < agree < len(ids), "the challenger was built to disagree on some frames"
        defective = [i for i, label in labels.items() if label != "good"]
        good = [i for i, label in labels.items() if label == "good"]
        assert shadow["challenger"] == 2
        assert shadow["served_versions"] == [1]
        assert shadow["frames_shadowed"] == len(ids)
        assert shadow["missing_shadow"] == 0
        assert shadow["agreement"] == _rate(agree, len(ids))
        assert shadow["qa"]["n_reviewed"] == len(labels)
        for model, verdicts in (("champion", served), ("challenger", challenger)):
            missed = sum(verdicts[i] == "pass" for i in defective)
            flagged = sum(verdicts[i] == "defect" for i in good)
            assert shadow["qa"][model]["miss_rate"] == _rate(missed, len(defective))
            assert shadow["qa"][model]["false_detection_rate"] == _rate(flagged, len(good))

        # Roles: QA and managers read it; cameras and strangers do not; unknown products and versions are 404.
        with live.client("manager") as manager:
            assert manager.get(f"/v1/products/{product}/shadow").json() == shadow
            assert manager.get(f"/v1/products/{product}/shadow", params={"version": 2}).json() == shadow
            unknown = manager.get("/v1/products/no-such-part/shadow")
            assert unknown.status_code == 404 and "detail" in unknown.json()
            assert manager.get(f"/v1/products/{product}/shadow", params={"version": 99}).status_code == 404
        with live.client("camera") as camera:
            assert camera.get(f"/v1/products/{product}/shadow").status_code == 403
        with live.client(None) as anonymous:
            assert anonymous.get(f"/v1/products/{product}/shadow").status_code == 401
            metrics = anonymous.get("/metrics").text
        assert f'inspection_shadow_scored_total{{product="{product}"}} {float(len(ids))}' in metrics
        assert "inspection_shadow_queue_depth" in metrics

        # The challenger alias removed: on its next poll the replica stops the shadow.
        registry.delete_alias(settings, product, registry.CHALLENGER)
        with live.client("qa") as qa:
            _wait_for(lambda: qa.get(f"/v1/products/{product}/shadow").json()["challenger"] is None)
            assert qa.get(f"/v1/products/{product}/shadow", params={"version": 2}).json()["in_shadow_now"] is False
        # Champion-only serving on the same frames: the line got exactly these answers while v2 was in shadow.
        alone = _post_all(live, frames, "line-alone")
        time.sleep(1.0)  # a stray shadow worker would have written by now
    keep = ("verdict", "defect_probability", "defect_type", "threshold", "model_version")
    assert [{k: a[k] for k in keep} for a in alone] == [{k: a[k] for k in keep} for a in shadowed]
    assert set(_shadow_rows(settings)) == set(ids), "frames answered after the challenger was removed got shadowed"

    # `inspection models promote` shows this evidence before its gate (which stays the frozen test split).
    from tests.cli.cli_runner import run_cli

    promoted = run_cli(settings, "models", "promote", product, "2")
    assert promoted.returncode == 0, promoted.stderr
    out = promoted.stdout
    assert "shadow evidence on live frames: candidate v2 against the served verdicts of v1" in out
    assert f"frames scored in shadow {len(ids)}, skipped 0" in out
    assert f"({agree} of {len(ids)})" in out
    assert out.index("shadow evidence") < out.index("test miss rate") < out.index("champion is now v2")


@pytest.fixture
def scorer_and_inputs(trained_product, tmp_path: Path, synthetic_source: Path):
    """The exported champion's session, a fresh SQLite database and one preprocessed real frame."""
    from training.export_pipeline import export_product

    export_product(trained_product.settings, trained_product.product)
    served = champion_model(trained_product.settings, trained_product.product)
    assert served is not None
    scorer = OnnxScorer(served.path, threads=1)
    data = next((synthetic_source / "good").glob("*.png")).read_bytes()
    sessions = open_database(f"sqlite:///{tmp_path / 'shadow.db'}")
    return scorer, frame_to_inputs(data, scorer.spec, 50_000_000), data, sessions


def _skipped(metrics: ServingMetrics, reason: str) -> float:
    return (
        metrics.registry.get_sample_value("inspection_shadow_skipped_total", {"product": "widget", "reason": reason})
        or 0
    )


def test_a_full_queue_skips_frames_without_waiting(scorer_and_inputs) -> None:
    scorer, inputs, data, sessions = scorer_and_inputs
    metrics = ServingMetrics(dict)
    shadow = ShadowScorer(
        scorer, product="widget", model_version=2, sessions=sessions, queue_size=2, max_batch=2, metrics=metrics
    )
    started = time.perf_counter()
    offered = [shadow.offer(f"frame-{i}", inputs, scorer.spec, data) for i in range(200)]
    assert time.perf_counter() - started < 0.5, "offering must never wait for the challenger"
    shadow.stop()
    assert shadow.join(30)
    assert shadow.offer("after-stop", inputs, scorer.spec, data) is False
    accepted = sum(offered)
    assert 2 <= accepted < 200
    assert _skipped(metrics, "queue_full") == 200 - accepted
    assert _skipped(metrics, "stopped") == 1
    scored = metrics.registry.get_sample_value("inspection_shadow_scored_total", {"product": "widget"})
    with sessions() as session:
        stored = session.scalars(select(ShadowScore.inspection_id)).all()
    assert scored == len(stored) == accepted


def test_frames_past_the_delay_budget_are_skipped_and_other_preprocessing_decodes_again(scorer_and_inputs) -> None:
    from dataclasses import replace

    scorer, inputs, data, sessions = scorer_and_inputs
    metrics = ServingMetrics(dict)
    late = ShadowScorer(
        scorer, product="widget", model_version=2, sessions=sessions, max_delay_ms=1e-6, metrics=metrics
    )
    for i in range(5):
        late.offer(f"late-{i}", inputs, scorer.spec, data)
    late.stop()
    assert late.join(30)
    assert _skipped(metrics, "late") == 5
    # A champion with other preprocessing: its tensor is useless here, so the raw frame is decoded again.
    other_spec = replace(scorer.spec, image_size=scorer.spec.image_size * 2)
    shadow = ShadowScorer(scorer, product="widget", model_version=3, sessions=sessions, metrics=metrics)
    assert shadow.offer("resized", np.zeros((3, 1, 1), np.float32), other_spec, data)
    shadow.stop()
    assert shadow.join(30)
    with sessions() as session:
        (row,) = session.scalars(select(ShadowScore)).all()
    expected = scorer.score_batch(inputs[None])[0][0]
    assert (row.inspection_id, row.model_version) == ("resized", 3)
    assert row.defect_probability == pytest.approx(float(expected), abs=1e-6)
    assert shadow_comparison(sessions, "widget", 3).frames_shadowed == 0  # no inspection row: nothing to compare


def test_the_shadow_follows_the_challenger_alias_to_a_newer_version(
    trained_product, synthetic_source: Path, tmp_path: Path
) -> None:
    from serving.model_watcher import stop_shadows, sync_engines
    from serving.row_writer import InspectionRowWriter
    from serving.state import ServingState

    settings = _home_with_two_exported_versions(trained_product, tmp_path)
    product = trained_product.product
    v1 = registry.resolve_version(settings, product, 1)
    client = registry.mlflow_client(settings)
    run = client.create_run(client.get_experiment_by_name(product).experiment_id)
    client.set_terminated(run.info.run_id)
    v3_artifacts = tmp_path / "v3-artifacts"
    shutil.copytree(v1.artifacts, v3_artifacts)
    assert registry.register_version(settings, product, run.info.run_id, v3_artifacts.as_uri(), {}) == 3
    registry.set_alias(settings, product, registry.CHALLENGER, 2)
    sessions = open_database(settings.resolved_database_url)
    data = next((synthetic_source / "good").glob("*.png")).read_bytes()

    async def main() -> tuple[list[str], list[str]]:
        state = ServingState(settings=settings, sessions=sessions, rows=InspectionRowWriter(sessions))
        state.metrics = ServingMetrics(lambda: state.engines, lambda: state.shadows)
        try:
            first = await sync_engines(state)
            old = state.shadows[product]
            registry.set_alias(settings, product, registry.CHALLENGER, 3)  # a newer challenger is registered
            second = await sync_engines(state)
            new = state.shadows[product]
            assert (old.model_version, new.model_version) == (2, 3)
            assert old.join(timeout=10), "the replaced shadow's worker must stop"
            spec = state.engines[product].spec
            assert new.offer("after-the-move", frame_to_inputs(data, spec, 50_000_000), spec, data)
        finally:
            await stop_shadows(state, timeout=10)
            for engine in state.engines.values():
                await engine.close()
            await state.rows.close()
        return first, second

    first, second = asyncio.run(main())
    assert f"{product}: v2 scoring in shadow" in first
    assert second == [f"{product}: v3 scoring in shadow"]
    rows = _shadow_rows(settings)
    assert [row.model_version for row in rows["after-the-move"]] == [3]


def test_the_shadow_judges_at_qas_served_threshold_of_the_challenger(
    trained_product, synthetic_source: Path, tmp_path: Path
) -> None:
    """QA may set the challenger's served threshold before promoting it (`inspection models threshold`); its shadow
    verdicts are then the ones it would give once promoted, and moving that threshold restarts the shadow there."""
    from models.serving_choice import THRESHOLD_TAG
    from serving.model_watcher import stop_shadows, sync_engines
    from serving.row_writer import InspectionRowWriter
    from serving.state import ServingState

    settings = _home_with_two_exported_versions(trained_product, tmp_path)
    product = trained_product.product
    client = registry.mlflow_client(settings)
    client.set_model_version_tag(product, "2", THRESHOLD_TAG, "0.25")
    sessions = open_database(settings.resolved_database_url)
    data = next((synthetic_source / "good").glob("*.png")).read_bytes()

    async def main() -> tuple[list[str], list[str], list[str]]:
        state = ServingState(settings=settings, sessions=sessions, rows=InspectionRowWriter(sessions))
        state.metrics = ServingMetrics(lambda: state.engines, lambda: state.shadows)
        try:
            first = await sync_engines(state)
            spec = state.engines[product].spec
            assert state.shadows[product].offer("at-qa-0.25", frame_to_inputs(data, spec, 50_000_000), spec, data)
            unchanged = await sync_engines(state)
            client.set_model_version_tag(product, "2", THRESHOLD_TAG, "0.75")
            moved = await sync_engines(state)
            assert state.shadows[product].offer("at-qa-0.75", frame_to_inputs(data, spec, 50_000_000), spec, data)
        finally:
            await stop_shadows(state, timeout=10)
            for engine in state.engines.values():
                await engine.close()
            await state.rows.close()
        return first, unchanged, moved

    first, unchanged, moved = asyncio.run(main())
    assert f"{product}: v2 scoring in shadow at QA's threshold 0.2500" in first
    assert unchanged == []  # the same version at the same threshold: the shadow keeps running
    assert f"{product}: v2 scoring in shadow at QA's threshold 0.7500" in moved
    rows = _shadow_rows(settings)
    for inspection_id, threshold in (("at-qa-0.25", 0.25), ("at-qa-0.75", 0.75)):
        (row,) = rows[inspection_id]
        assert (row.model_version, row.threshold) == (2, threshold)
        assert row.verdict == ("defect" if row.defect_probability >= threshold else "pass")
