"""An export of a served version that changes its file (an accepted INT8 file, or fp32 back in its place) moves no
alias: replicas follow the file itself, and QA's threshold only onto the file it was chosen on."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from models import registry
from models.artifacts import FP32_FILE, INT8_FILE, onnx_dir
from models.onnx_export import update_onnx_metadata
from models.onnx_runtime import OnnxScorer
from models.threshold_moves import ThresholdRequest, plan_threshold, record_threshold
from tests.serving.test_server_promotion import _home_with_two_exported_versions
from tests.serving.test_server_threshold import _exported_home, _watching

pytestmark = pytest.mark.slow


def test_the_watcher_serves_a_re_exported_file_and_keeps_qas_threshold_on_it(trained_product, tmp_path: Path) -> None:
    """An export of the champion that puts an accepted INT8 file in service (or fp32 back) moves no alias: the
    watcher sees the file change, swaps the session in the same engine, and judges with QA's threshold once the
    export has moved it onto the new file."""
    from serving.model_watcher import sync_engines
    from training.export_pipeline import Int8Options, export_product

    settings = _exported_home(trained_product, tmp_path)
    product = trained_product.product

    async def main() -> None:
        async with _watching(settings) as state:
            await sync_engines(state)
            engine = state.engines[product]
            assert engine._current[0].path.name == FP32_FILE
            record_threshold(settings, plan_threshold(settings, product, ThresholdRequest(value=0.8125)), "test", "qa")
            await sync_engines(state)
            assert engine.threshold == 0.8125
            # Loose enough that this tiny product's INT8 passes on any CPU: the point is what serving does next.
            lenient = Int8Options(max_auroc_loss=0.05, max_flip_fraction=0.5, alpha=1e-6)
            outcome = await asyncio.to_thread(export_product, settings, product, int8=True, int8_options=lenient)
            assert outcome.int8 is not None and outcome.int8.accepted and outcome.int8_path is not None
            assert await sync_engines(state) == [f"{product}: v1 re-exported, now serving {INT8_FILE}"]
            assert state.engines[product] is engine and engine._current[0].path == outcome.int8_path
            assert (engine.model_version, engine.threshold) == (1, 0.8125)  # a value stays, now on the INT8 file
            assert await sync_engines(state) == []
            await asyncio.to_thread(export_product, settings, product)  # fp32 back in its place
            assert await sync_engines(state) == [f"{product}: v1 re-exported, now serving {FP32_FILE}"]
            assert engine._current[0].path.name == FP32_FILE and engine.threshold == 0.8125

    asyncio.run(main())


def test_qas_threshold_waits_for_the_export_to_move_it_onto_a_new_file(trained_product, tmp_path: Path) -> None:
    """Between an export putting a new file in service and its moving QA's threshold onto that file, a replica
    serves the new file at the file's own threshold, not at one chosen on the other file's scores."""
    from models.serving_choice import champion_model, current_threshold
    from models.threshold_moves import follow_the_served_file

    settings = _exported_home(trained_product, tmp_path)
    product = trained_product.product
    record_threshold(settings, plan_threshold(settings, product, ThresholdRequest(value=0.8125)), "test", "qa")
    served = champion_model(settings, product)
    assert served is not None and served.threshold == 0.8125
    # A new file in service, as an export's INT8 file arrives: another file, with its own threshold inside.
    onnx = served.path.parent
    update_onnx_metadata(shutil.copy(onnx / FP32_FILE, onnx / INT8_FILE), {"threshold": 0.375})
    served = champion_model(settings, product)
    assert served is not None and served.path.name == INT8_FILE and served.threshold is None
    assert OnnxScorer(served.path).threshold == 0.375  # what the engine judges with until the threshold follows
    shown = current_threshold(registry.resolve_version(settings, product, 1))
    assert shown is not None and shown.source == "calibrated"  # the dashboard says what replicas serve
    assert follow_the_served_file(settings, product, 1, "int8") is not None  # the value stays, said so
    served = champion_model(settings, product)
    assert served is not None and served.path.name == INT8_FILE and served.threshold == 0.8125


def test_the_shadow_follows_a_re_export_of_the_challenger(trained_product, tmp_path: Path) -> None:
    """An export of the challenger that changes its served file (an accepted INT8 file) moves no alias: the
    shadow restarts on the new file."""
    from serving.model_watcher import sync_engines

    settings = _home_with_two_exported_versions(trained_product, tmp_path)
    product = trained_product.product
    onnx = onnx_dir(registry.resolve_version(settings, product, 2).artifacts)

    async def main() -> list[str]:
        async with _watching(settings) as state:
            await sync_engines(state)
            old = state.shadows[product]
            assert old._scorer.path.name == FP32_FILE
            # As an export's accepted INT8 file arrives: another file, with its own threshold inside.
            update_onnx_metadata(shutil.copy(onnx / FP32_FILE, onnx / INT8_FILE), {"threshold": 0.375})
            moved = await sync_engines(state)
            new = state.shadows[product]
            assert new is not old and new._scorer.path.name == INT8_FILE and new.model_version == 2
            assert old.join(timeout=10), "the replaced shadow's worker must stop"
            assert await sync_engines(state) == []
        return moved

    moved = asyncio.run(main())
    assert moved == [f"{product}: v2 scoring in shadow from its new file {INT8_FILE}"]
