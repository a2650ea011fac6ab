"""Tiling from training to the served verdict on a small large-frame product (512 px frames, 128 px tiles)."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import torch

from datasets.layout import scan_dataset
from datasets.synth_large import generate_large_frame_product, make_large_frame
from inspection.imaging import read_image
from inspection.preprocessing import TiledFrame, preprocess_tiles
from inspection.settings import Settings
from inspection.storage.database import open_database
from inspection.storage.inspections import InspectionFilter, list_inspections
from inspection.tiling import TileGeometry, tile_boxes
from models.artifacts import bundle_path
from models.onnx_runtime import OnnxScorer, read_onnx_metadata
from models.registry import resolve_version
from serving.engine import InferenceEngine
from serving.frames import frame_to_inputs
from tests.conftest import make_configs_dir, serve_on_loopback
from training.export_pipeline import export_product
from training.kinds import kind_of, load_bundle
from training.pipeline import train_product

PRODUCT = "sheet"
CONFIG = """
image_size: 128
tiling: {tile: 128, overlap: 16}
target_false_detection_rate: 0.05
train: {epochs: 2, augmented_views: 1, probe_steps: 100}
"""


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    root = tmp_path_factory.mktemp("tiled")
    settings = Settings(
        home=root / "var", configs_dir=make_configs_dir(root / "configs", {PRODUCT: CONFIG}), device="cpu"
    )
    generate_large_frame_product(settings.dataset_dir(PRODUCT), n=40, seed=1, size=512, max_defect_px=12)
    outcome = train_product(settings, PRODUCT)
    return settings, outcome.report


@pytest.mark.slow
def test_the_report_is_per_image_and_says_how_tiles_were_labeled(tiled: tuple[Settings, dict]) -> None:
    settings, report = tiled
    records = scan_dataset(settings.dataset_dir(PRODUCT))
    test = report["test"]
    assert test["n_good"] + test["n_defect"] < len(records)  # frames, not the 25 tiles of each
    assert test["n_defect"] >= 2 and test["auroc"] is not None
    assert test["n_pixel_images"] == test["n_good"] + test["n_defect"]  # stitched maps against every mask
    assert report["tiling"]["tile_labels"].startswith("masks")
    assert report["tiling"]["geometry"] == {"tile": 128, "overlap": 16, "roi": None}
    assert report["tiling"]["image_score"] == "maximum over tiles"


@pytest.mark.slow
def test_served_tile_scores_match_pytorch_and_the_frame_scores_their_maximum(tiled: tuple[Settings, dict]) -> None:
    settings, _ = tiled
    outcome = export_product(settings, PRODUCT)
    metadata = read_onnx_metadata(outcome.fp32_path)
    assert metadata["preprocess"]["tiling"] == {"tile": 128, "overlap": 16, "roi": None}
    scorer = OnnxScorer(outcome.fp32_path)
    assert scorer.spec.tiling == TileGeometry(tile=128, overlap=16)
    bundle = load_bundle(bundle_path(resolve_version(settings, PRODUCT, None).artifacts))
    assert kind_of(bundle).name == "classifier" and bundle.spec.tiling is not None
    frame = read_image(next(r for r in scan_dataset(settings.dataset_dir(PRODUCT)) if r.is_defect).path)
    tiles = preprocess_tiles(frame, scorer.spec)
    assert len(tiles.boxes) == len(tile_boxes(scorer.spec.tiling, 512, 512)) == 25
    with torch.no_grad():
        expected = bundle.model.eval()(torch.from_numpy(tiles.inputs)).defect_probability.numpy()
    served, _ = scorer.score_batch(tiles.inputs)
    np.testing.assert_allclose(served, expected, atol=1e-4)

    encoded = cv2.imencode(".png", frame)[1].tobytes()
    inputs = frame_to_inputs(encoded, scorer.spec, 50_000_000)
    assert isinstance(inputs, TiledFrame)

    async def serve() -> object:
        engine = InferenceEngine(scorer, model_version=1)
        try:
            return await engine.submit(inputs, want_map=True)
        finally:
            await engine.close()

    verdict = asyncio.run(serve())
    assert verdict.defect_probability == pytest.approx(float(expected.max()), abs=1e-4)  # type: ignore[attr-defined]
    assert verdict.batch_size == 25  # type: ignore[attr-defined]
    heatmap = verdict.anomaly_map  # type: ignore[attr-defined]
    assert heatmap is not None and heatmap.shape == (512, 512) and heatmap.dtype == np.uint8


@pytest.mark.slow
def test_the_resolved_config_of_the_run_holds_the_tiles(tiled: tuple[Settings, dict]) -> None:
    settings, _ = tiled
    artifacts = resolve_version(settings, PRODUCT, None).artifacts
    found = [json.loads(p.read_text()) for p in Path(settings.home).rglob("resolved_config.json")]
    assert found and found[-1]["tiling"] == {"tile": 128, "overlap": 16}, artifacts


def _png_header_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (its pixels are never read)."""
    png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + png[24:29]
    return png[:16] + ihdr + zlib.crc32(b"IHDR" + ihdr).to_bytes(4, "big") + png[33:]


@pytest.mark.slow
def test_the_real_server_scores_a_large_frame_in_tiles_and_refuses_a_50_megapixel_header(
    tiled: tuple[Settings, dict],
) -> None:
    """Over HTTP on loopback: a 1024x1024 frame (81 tiles of 128 px) is scored, its row stored and its stitched
    heatmap served at the frame's size; a header declaring 56 megapixels is answered 413 and writes no row."""
    settings, _ = tiled
    export_product(settings, PRODUCT)
    sessions = open_database(settings.resolved_database_url)
    frame, _ = make_large_frame(np.random.default_rng(7), 1024, "spot", 12)
    with serve_on_loopback(settings, PRODUCT, "tiled") as server:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys["camera"]}, timeout=120) as camera:
            png = {"Content-Type": "image/png"}
            refused = camera.post(
                f"/v1/inspect/{PRODUCT}",
                content=_png_header_declaring(8000, 7000),
                headers=png,
                params={"line_id": "huge"},
            )
            answer = camera.post(
                f"/v1/inspect/{PRODUCT}",
                content=cv2.imencode(".png", frame)[1].tobytes(),
                headers=png,
                params={"line_id": "large", "heatmap": "true"},
            )
        assert refused.status_code == 413 and "Traceback" not in refused.text
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["heatmap_url"] == f"/v1/inspections/{body['inspection_id']}/heatmap"
        with httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys["qa"]}, timeout=60) as qa:
            for _ in range(100):  # rows are written behind the answers
                stored = list_inspections(sessions, InspectionFilter(product=PRODUCT, line_id="large"))[0]
                if stored:
                    break
                time.sleep(0.1)
            heatmap = qa.get(body["heatmap_url"])
        assert [row.id for row in stored] == [body["inspection_id"]]
        assert list_inspections(sessions, InspectionFilter(product=PRODUCT, line_id="huge"))[1] == 0
        assert heatmap.status_code == 200
        drawn = cv2.imdecode(np.frombuffer(heatmap.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert drawn.shape[:2] == (1024, 1024)
