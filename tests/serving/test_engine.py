"""The micro-batching engine: same numbers as direct scoring, batching, backpressure, hot swap, graceful close."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from inspection.preprocessing import PreprocessSpec, preprocess, preprocess_tiles
from inspection.tiling import TileGeometry
from models.classifier import DefectClassifier
from models.onnx_export import export_classifier
from models.onnx_runtime import OnnxScorer
from serving.engine import (
    MIN_TILES_PER_PART,
    SPLIT_ALWAYS,
    SPLIT_IDLE_RUNNERS,
    SPLIT_NEVER,
    EngineClosed,
    EngineOverloaded,
    InferenceEngine,
    Verdict,
    engine_runners,
)

REPO = Path(__file__).resolve().parents[2]
SPEC = PreprocessSpec(image_size=64, color_mode="gray")
DEFECT_TYPES = ["crack", "spot"]
ATOL_BATCHED = 1e-5  # ORT may pick other kernels for another batch size; the numbers agree to float rounding


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real tiny classifier exported twice: version 1, and version 2 with a shifted defect head."""
    torch.manual_seed(0)  # the heads are random: seeded so every run exports the same models
    model = DefectClassifier(num_defect_types=len(DEFECT_TYPES), trainable_stages=1, pretrained=True).eval()
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.defect_head.bias += 2.0  # version 2 scores visibly differently, so a verdict shows its model
    root = tmp_path_factory.mktemp("engine-models")
    paths = []
    for version, network in ((1, model), (2, shifted)):
        metadata = {"model_version": version, "threshold": 0.5, "defect_types": DEFECT_TYPES}
        paths.append(export_classifier(network, SPEC, root / f"v{version}.onnx", metadata))
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def scorer_v1(model_files: tuple[Path, Path]) -> OnnxScorer:
    return OnnxScorer(model_files[0], threads=1)  # one thread: the tests share 2 cores with other work


@pytest.fixture(scope="module")
def scorer_v2(model_files: tuple[Path, Path]) -> OnnxScorer:
    return OnnxScorer(model_files[1], threads=1)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """100 preprocessed frames from decoded images of assorted sizes, as the server would submit them."""
    rng = np.random.default_rng(0)
    shapes = [(64, 64), (80, 96), (50, 70), (64, 64, 3)]
    images = [rng.integers(0, 256, size=shapes[i % len(shapes)], dtype=np.uint8) for i in range(100)]
    return [preprocess(image, SPEC) for image in images]


class SlowScorer:
    """A real scorer that takes `delay` seconds per batch, so the worker stays busy and the queue fills."""

    def __init__(self, inner: OnnxScorer, delay: float):
        self.inner, self.delay = inner, delay
        self.spec, self.defect_types = inner.spec, inner.defect_types
        self.threshold, self.metadata = inner.threshold, inner.metadata

    def score_batch_with_maps(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        time.sleep(self.delay)
        return self.inner.score_batch_with_maps(inputs)


class FlakyScorer(SlowScorer):
    """A real scorer that fails any batch holding a frame whose first value is the poison marker."""

    POISON = 99.0

    def score_batch_with_maps(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if np.any(inputs[:, 0, 0, 0] == self.POISON):
            raise RuntimeError("scoring failed")
        return self.inner.score_batch_with_maps(inputs)


def direct(scorer: OnnxScorer, frame: np.ndarray) -> tuple[float, np.ndarray]:
    """The defect probability and type probabilities of one frame scored straight through ONNX Runtime."""
    defect, types = scorer.score_batch(frame[None])
    return float(defect[0]), types[0]


def test_verdict_carries_the_models_map_as_bytes(
    scorer_v1: OnnxScorer, model_files: tuple[Path, Path], frames: list[np.ndarray], tmp_path: Path
) -> None:
    proto = onnx.load(str(model_files[0]))
    kept = [output for output in proto.graph.output if output.name != "anomaly_map"]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    onnx.save(proto, str(tmp_path / "no-map.onnx"))
    mapless = OnnxScorer(tmp_path / "no-map.onnx", threads=1)

    async def scenario(scorer: OnnxScorer, want_map: bool = True) -> Verdict:
        engine = InferenceEngine(scorer)
        try:
            return await engine.submit(frames[0], want_map=want_map)
        finally:
            await engine.close()

    with_map, without = asyncio.run(scenario(scorer_v1)), asyncio.run(scenario(mapless))
    _, _, maps = scorer_v1.score_batch_with_maps(frames[0][None])
    assert maps is not None and with_map.anomaly_map is not None
    assert with_map.anomaly_map.dtype == np.uint8 and with_map.anomaly_map.shape == (64, 64)
    np.testing.assert_allclose(with_map.anomaly_map / 255.0, maps[0], atol=1 / 255 + 1e-6)
    assert without.anomaly_map is None
    assert without == with_map  # the map is extra: it does not take part in comparing verdicts
    # Unasked, only a flagged frame carries its map: a pass's map would never be stored.
    unasked = asyncio.run(scenario(scorer_v1, want_map=False))
    assert (unasked.anomaly_map is not None) == unasked.is_defect


def test_verdict_equals_direct_scoring(scorer_v1: OnnxScorer, frames: list[np.ndarray]) -> None:
    async def scenario() -> Verdict:
        engine = InferenceEngine(scorer_v1)
        try:
            return await engine.submit(frames[0])
        finally:
            await engine.close()

    verdict = asyncio.run(scenario())
    probability, types = direct(scorer_v1, frames[0])
    assert verdict.defect_probability == pytest.approx(probability, abs=1e-6)
    assert (verdict.model_version, verdict.threshold, verdict.batch_size) == (1, 0.5, 1)
    assert verdict.is_defect == (probability >= 0.5)
    assert verdict.defect_type == (DEFECT_TYPES[int(np.argmax(types))] if verdict.is_defect else None)


def test_concurrent_submits_are_batched_and_each_frame_gets_its_own_result(
    scorer_v1: OnnxScorer, frames: list[np.ndarray]
) -> None:
    async def scenario() -> list[Verdict]:
        engine = InferenceEngine(scorer_v1, max_batch=8, max_wait_ms=5, queue_size=64)
        try:
            return await asyncio.gather(*(engine.submit(frame) for frame in frames[:64]))
        finally:
            await engine.close()

    verdicts = asyncio.run(scenario())
    assert len(verdicts) == 64
    assert max(verdict.batch_size for verdict in verdicts) > 1
    assert all(verdict.batch_size <= 8 for verdict in verdicts)
    for frame, verdict in zip(frames[:64], verdicts, strict=True):
        assert verdict.defect_probability == pytest.approx(direct(scorer_v1, frame)[0], abs=ATOL_BATCHED)


def test_full_queue_refuses_at_once_and_never_grows(scorer_v1: OnnxScorer, frames: list[np.ndarray]) -> None:
    async def scenario() -> None:
        engine = InferenceEngine(SlowScorer(scorer_v1, delay=0.3), max_batch=1, queue_size=2)  # type: ignore[arg-type]
        first = asyncio.create_task(engine.submit(frames[0]))
        await asyncio.sleep(0)  # the first frame is queued
        for _ in range(1000):  # until the worker has taken it and spends 0.3 s scoring it
            if not engine.queue_depth:
                break
            await asyncio.sleep(0.001)
        burst = [asyncio.create_task(engine.submit(frame)) for frame in frames[1:11]]
        await asyncio.sleep(0)  # every burst task has now tried to enqueue
        assert engine.queue_depth == 2
        started = time.perf_counter()
        with pytest.raises(EngineOverloaded):
            await engine.submit(frames[11])
        assert time.perf_counter() - started < 0.05  # refused immediately, not after waiting for room
        outcomes = await asyncio.gather(first, *burst, return_exceptions=True)
        assert sum(isinstance(outcome, Verdict) for outcome in outcomes) == 3  # in flight + the two queued
        assert sum(isinstance(outcome, EngineOverloaded) for outcome in outcomes) == 8
        await engine.close()

    asyncio.run(scenario())


def test_hot_swap_mid_stream_answers_every_frame_with_the_model_that_scored_it(
    scorer_v1: OnnxScorer, scorer_v2: OnnxScorer, frames: list[np.ndarray]
) -> None:
    async def scenario() -> list[Verdict]:
        engine = InferenceEngine(scorer_v1, max_batch=8, max_wait_ms=2, queue_size=128)
        tasks = []
        for index, frame in enumerate(frames):
            tasks.append(asyncio.create_task(engine.submit(frame)))
            if index == 49:
                engine.swap(scorer_v2, 2)
                assert engine.model_version == 2 and engine.spec == scorer_v2.spec
            await asyncio.sleep(0.002)  # a stream, not one burst: batches close on both sides of the swap
        try:
            return await asyncio.gather(*tasks)  # any failed frame fails the test
        finally:
            await engine.close()

    verdicts = asyncio.run(scenario())
    versions = [verdict.model_version for verdict in verdicts]
    assert versions == sorted(versions) and set(versions) == {1, 2}
    assert set(versions[50:]) == {2}  # submitted after the swap: never scored by the old model
    scorers = {1: scorer_v1, 2: scorer_v2}
    for frame, verdict in zip(frames, verdicts, strict=True):
        expected = direct(scorers[verdict.model_version], frame)[0]
        assert verdict.defect_probability == pytest.approx(expected, abs=ATOL_BATCHED)


def test_close_answers_every_queued_frame_then_refuses(scorer_v1: OnnxScorer, frames: list[np.ndarray]) -> None:
    async def scenario() -> None:
        engine = InferenceEngine(SlowScorer(scorer_v1, delay=0.05), max_batch=2, queue_size=16)  # type: ignore[arg-type]
        tasks = [asyncio.create_task(engine.submit(frame)) for frame in frames[:10]]
        await asyncio.sleep(0)
        assert engine.queue_depth > 0  # frames are still waiting when close() begins
        await engine.close()
        assert all(task.done() and isinstance(task.result(), Verdict) for task in tasks)
        with pytest.raises(EngineClosed):
            await engine.submit(frames[0])
        with pytest.raises(EngineClosed):
            engine.swap(scorer_v1, 3)
        await engine.close()  # idempotent

    asyncio.run(scenario())


def test_a_failing_batch_fails_only_its_frames_and_the_worker_survives(
    scorer_v1: OnnxScorer, frames: list[np.ndarray]
) -> None:
    poisoned = frames[2].copy()
    poisoned[0, 0, 0] = FlakyScorer.POISON

    async def scenario() -> tuple[list[object], Verdict]:
        engine = InferenceEngine(FlakyScorer(scorer_v1, delay=0.0), max_batch=1)  # type: ignore[arg-type]
        try:
            batch = [frames[0], frames[1], poisoned, frames[3], frames[4]]
            outcomes = await asyncio.gather(*(engine.submit(frame) for frame in batch), return_exceptions=True)
            return outcomes, await engine.submit(frames[5])
        finally:
            await engine.close()

    outcomes, later = asyncio.run(scenario())
    assert isinstance(outcomes[2], RuntimeError)
    assert all(isinstance(outcome, Verdict) for index, outcome in enumerate(outcomes) if index != 2)
    assert later.defect_probability == pytest.approx(direct(scorer_v1, frames[5])[0], abs=1e-6)


def test_a_frame_of_the_wrong_size_fails_alone(scorer_v1: OnnxScorer, frames: list[np.ndarray]) -> None:
    wrong = preprocess(np.zeros((32, 32), np.uint8), PreprocessSpec(image_size=32, color_mode="gray"))

    async def scenario() -> list[object]:
        engine = InferenceEngine(scorer_v1, max_batch=8, max_wait_ms=20)
        try:
            submitted = [frames[0], wrong, frames[1]]
            return await asyncio.gather(*(engine.submit(frame) for frame in submitted), return_exceptions=True)
        finally:
            await engine.close()

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[0], Verdict) and isinstance(outcomes[2], Verdict)
    assert isinstance(outcomes[1], ValueError) and "does not match" in str(outcomes[1])


def test_engine_import_does_not_pull_in_torch() -> None:
    code = "import sys, serving.engine; assert 'torch' not in sys.modules, 'serving.engine imported torch'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


class OverlapScorer(SlowScorer):
    """A slow real scorer that records how many batches it was scoring at once, at most."""

    def __init__(self, inner: OnnxScorer, delay: float):
        super().__init__(inner, delay)
        self.running, self.most, self.lock = 0, 0, threading.Lock()

    def score_batch_with_maps(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().score_batch_with_maps(inputs)
        finally:
            with self.lock:
                self.running -= 1


def test_two_runners_score_side_by_side_and_close_drains_both(scorer_v1: OnnxScorer, frames: list[np.ndarray]) -> None:
    scorer = OverlapScorer(scorer_v1, delay=0.2)

    async def scenario() -> tuple[list[Verdict], list[Verdict]]:
        engine = InferenceEngine(scorer, max_batch=1, runners=2)  # type: ignore[arg-type]
        first = await asyncio.gather(*(engine.submit(frame) for frame in frames[:4]))
        queued = [asyncio.create_task(engine.submit(frame)) for frame in frames[4:10]]
        await asyncio.sleep(0)
        await engine.close()  # both runners stop only after every accepted frame is answered
        return first, [task.result() for task in queued]

    first, drained = asyncio.run(scenario())
    assert scorer.most == 2  # two batches were being scored at the same time
    for frame, verdict in zip(frames[:10], first + drained, strict=True):
        assert verdict.defect_probability == pytest.approx(direct(scorer_v1, frame)[0], abs=ATOL_BATCHED)


def test_runners_default_to_one_per_core_the_sessions_threads_leave() -> None:
    assert engine_runners(0, 1, cores=2) == 2  # the default: single-threaded session, a runner per core
    assert engine_runners(0, 2, cores=2) == 1
    assert engine_runners(0, 0, cores=8) == 1  # ORT takes every core itself
    assert engine_runners(0, 4, cores=2) == 1
    assert engine_runners(3, 1, cores=2) == 3  # as configured


@pytest.fixture(scope="module")
def tiled_scorer(tmp_path_factory: pytest.TempPathFactory) -> OnnxScorer:
    """A real tiny classifier exported with 64 px tiles overlapping by 16 px, threshold 0 (every frame flagged)."""
    torch.manual_seed(0)
    model = DefectClassifier(num_defect_types=len(DEFECT_TYPES), trainable_stages=1, pretrained=True).eval()
    spec = PreprocessSpec(image_size=64, color_mode="gray", tiling=TileGeometry(tile=64, overlap=16))
    metadata = {"model_version": 1, "threshold": 0.0, "defect_types": DEFECT_TYPES}
    path = tmp_path_factory.mktemp("tiled-model") / "tiled.onnx"
    return OnnxScorer(export_classifier(model, spec, path, metadata), threads=1)


def test_a_tiled_frame_split_across_runners_gets_the_verdict_of_one_run(tiled_scorer: OnnxScorer) -> None:
    """Parts of one frame scored by two runners side by side: the same score, type, tile count and stitched map
    as all the tiles in one run; a part that fails fails its frame, and the engine keeps serving."""
    scorer = tiled_scorer
    image = np.random.default_rng(5).integers(0, 256, (200, 330), dtype=np.uint8)
    tiles = preprocess_tiles(image, scorer.spec)
    assert len(tiles.boxes) >= 2 * MIN_TILES_PER_PART

    async def verdict(runners: int, split: str) -> Verdict:
        engine = InferenceEngine(scorer, max_batch=2, runners=runners, split_tiles=split)
        try:
            return await engine.submit(tiles, want_map=True)
        finally:
            await engine.close()

    whole, split = asyncio.run(verdict(1, SPLIT_NEVER)), asyncio.run(verdict(2, SPLIT_ALWAYS))
    assert split.batch_size == whole.batch_size == len(tiles.boxes)
    assert split.defect_probability == pytest.approx(whole.defect_probability, abs=ATOL_BATCHED)
    assert split.defect_type == whole.defect_type and split.is_defect
    assert split.anomaly_map is not None and whole.anomaly_map is not None
    assert split.anomaly_map.shape == whole.anomaly_map.shape == (200, 330)
    assert np.abs(split.anomaly_map.astype(int) - whole.anomaly_map.astype(int)).max() <= 1

    class FailingSecondPart(SlowScorer):
        def score_batch_with_maps(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            if len(inputs) < len(tiles.boxes) and np.shares_memory(inputs, tiles.inputs[-1]):
                raise RuntimeError("part failed")
            return self.inner.score_batch_with_maps(inputs)

    async def failing() -> tuple[BaseException | None, Verdict]:
        engine = InferenceEngine(FailingSecondPart(scorer, 0), runners=2, split_tiles=SPLIT_ALWAYS)  # type: ignore[arg-type]
        try:
            error = None
            try:
                await engine.submit(tiles)
            except RuntimeError as exc:
                error = exc
            engine.swap(scorer, 1)
            return error, await engine.submit(tiles)
        finally:
            await engine.close()

    error, after = asyncio.run(failing())
    assert isinstance(error, RuntimeError) and after.batch_size == len(tiles.boxes)


class RecordingScorer(SlowScorer):
    """A real scorer that records how many tiles each run it is given holds."""

    def __init__(self, inner: OnnxScorer, delay: float):
        super().__init__(inner, delay)
        self.runs: list[int] = []

    def score_batch_with_maps(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        self.runs.append(len(inputs))
        return super().score_batch_with_maps(inputs)


def test_split_across_idle_runners_splits_only_a_frame_alone_in_flight(tiled_scorer: OnnxScorer) -> None:
    """A frame alone in flight is split across both runners; a frame that arrives while another is in flight goes
    whole to the idle runner; the verdicts are the same either way."""
    image = np.random.default_rng(5).integers(0, 256, (200, 330), dtype=np.uint8)
    tiles = preprocess_tiles(image, tiled_scorer.spec)
    count = len(tiles.boxes)
    scorer = RecordingScorer(tiled_scorer, delay=0.1)

    async def scenario() -> tuple[Verdict, list[Verdict]]:
        engine = InferenceEngine(scorer, runners=2, split_tiles=SPLIT_IDLE_RUNNERS)  # type: ignore[arg-type]
        try:
            alone = await engine.submit(tiles)
            together = await asyncio.gather(engine.submit(tiles), engine.submit(tiles))
            return alone, list(together)
        finally:
            await engine.close()

    alone, together = asyncio.run(scenario())
    halves = sorted([count // 2, count - count // 2])
    assert sorted(scorer.runs[:2]) == halves  # alone: a part per runner
    assert sorted(scorer.runs[2:]) == sorted([*halves, count])  # the first of two split, the second whole
    for verdict in [alone, *together]:
        assert verdict.batch_size == count
        assert verdict.defect_probability == pytest.approx(alone.defect_probability, abs=ATOL_BATCHED)


def test_a_tiled_frame_is_split_across_the_runners_by_default_and_an_unknown_mode_is_refused(
    tiled_scorer: OnnxScorer,
) -> None:
    image = np.random.default_rng(5).integers(0, 256, (200, 330), dtype=np.uint8)
    tiles = preprocess_tiles(image, tiled_scorer.spec)
    scorer = RecordingScorer(tiled_scorer, delay=0.0)

    async def scenario() -> None:
        engine = InferenceEngine(scorer, runners=2)  # type: ignore[arg-type]
        try:
            assert engine.split_tiles == SPLIT_ALWAYS
            await asyncio.gather(engine.submit(tiles), engine.submit(tiles))
        finally:
            await engine.close()

    asyncio.run(scenario())
    assert len(scorer.runs) == 4 and sum(scorer.runs) == 2 * len(tiles.boxes)  # both frames split, in flight together
    with pytest.raises(ValueError, match="split_tiles"):
        InferenceEngine(tiled_scorer, split_tiles="sometimes")
