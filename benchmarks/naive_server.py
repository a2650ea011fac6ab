"""The naive baseline the server is compared with: FastAPI calling the PyTorch model once per request.

No batching, no ONNX Runtime, no reduced decoding: what a first prototype looks like. Run as
`python -m benchmarks.naive_server MODEL_PT PORT`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from inspection.imaging import decode_image
from inspection.preprocessing import preprocess
from training.kinds import load_bundle


def create_naive_app(model_file: Path) -> FastAPI:
    """One endpoint with the server's path, scoring each frame alone with the PyTorch model."""
    bundle = load_bundle(model_file)
    app = FastAPI()

    def score(body: bytes) -> float:
        inputs = torch.from_numpy(preprocess(decode_image(body), bundle.spec))[None]
        with torch.inference_mode():
            return float(bundle.model(inputs).defect_probability[0])

    @app.post("/v1/inspect/{product}")
    async def inspect(product: str, request: Request) -> dict[str, float | str]:
        probability = await run_in_threadpool(score, await request.body())
        return {"product": product, "defect_probability": probability}

    return app


if __name__ == "__main__":
    uvicorn.run(create_naive_app(Path(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
