"""The served ONNX file alone under different ways of using the cores: intra-op threads per session x runner threads
side by side on that session x frames per run. Decides the engine's defaults
(docs/decisions/0004-engine-runners-per-core.md).

    python -m benchmarks.engine_layouts --home <INSPECTION_HOME> [--product solar-cells] [--seconds 5]

Layouts are measured one after the other; run it twice to see the machine's drift.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.server_load import camera_frames, cpu_flags, model_fps
from inspection.settings import Settings
from models.onnx_runtime import OnnxScorer
from models.serving_choice import champion_model
from serving.frames import frame_to_inputs

# (intra-op threads, runner threads, frames per run): the bench's model-alone figure first, then the alternatives.
LAYOUTS = ((2, 1, 8), (2, 1, 1), (2, 1, 4), (1, 1, 1), (1, 2, 1), (1, 2, 2), (1, 2, 4), (1, 2, 8))


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
        fps = model_fps(served.path, inputs, threads, runners, args.seconds, spinning=False)
        print(f"{threads} intra-op thread(s), {runners} runner(s), {batch} frame(s) a run: {fps:.1f} frames/s")


if __name__ == "__main__":
    main()
