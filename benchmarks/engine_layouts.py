"""The served ONNX file alone under different ways of using the cores: intra-op threads per session x runner threads
side by side on that session x frames per run. Decides the engine's defaults (README, "Server load on ELPV").

    python -m benchmarks.engine_layouts --home <INSPECTION_HOME> [--product solar-cells] [--seconds 5]

Layouts are measured one after the other; run it twice to see the machine's drift.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.server_load import camera_frames, cpu_flags
from inspection.settings import Settings
from models.onnx_runtime import OnnxScorer
from serving.frames import frame_to_inputs
from serving.model_store import champion_model

# (intra-op threads, runner threads, frames per run): the model-alone figure first, then the alternatives.
LAYOUTS = ((2, 1, 8), (2, 1, 1), (2, 1, 4), (1, 1, 1), (1, 2, 1), (1, 2, 2), (1, 2, 4), (1, 2, 8))


def frames_per_second(path: Path, inputs: np.ndarray, threads: int, runners: int, seconds: float) -> float:
    """Frames/s of `runners` threads each scoring `inputs` (one batch) again and again on one session."""
    scorer = OnnxScorer(path, threads=threads, spinning=False)
    scorer.score_batch_with_maps(inputs)  # the first run plans and allocates
    counts = [0] * runners
    stop = time.perf_counter() + seconds

    def score(runner: int) -> None:
        while time.perf_counter() < stop:
            scorer.score_batch_with_maps(inputs)
            counts[runner] += len(inputs)

    threads_started = [threading.Thread(target=score, args=(runner,)) for runner in range(runners)]
    began = time.perf_counter()
    for thread in threads_started:
        thread.start()
    for thread in threads_started:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--product", default="solar-cells")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    settings = Settings(home=args.home.resolve(), configs_dir=Path("configs").resolve())
    served = champion_model(settings, args.product)
    if served is None:
        raise SystemExit(f"{args.product} has no exported champion in {args.home}")
    print("CPU: " + ", ".join(f"{name.removeprefix('cpu_')} {int(value)}" for name, value in cpu_flags().items()))
    spec = OnnxScorer(served.path, threads=1).spec
    frames = [frame_to_inputs(frame, spec, 10**8) for frame in camera_frames(settings, args.product)]
    for threads, runners, batch in LAYOUTS:
        inputs = np.stack(frames[:batch])
        fps = frames_per_second(served.path, inputs, threads, runners, args.seconds)
        print(f"{threads} intra-op thread(s), {runners} runner(s), {batch} frame(s) a run: {fps:.1f} frames/s")


if __name__ == "__main__":
    main()
