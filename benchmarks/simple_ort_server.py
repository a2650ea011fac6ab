"""The floor the server must beat: a 20-line FastAPI + ONNX Runtime wrapper of the same exported file.

One ORT session with its default options, `asyncio.to_thread(session.run)` per request, no batching, no database,
no archive. It decodes with the server's own `frame_to_inputs`, so both pay the same for turning a JPEG into the
network input. Run as `python -m benchmarks.simple_ort_server MODEL.onnx PORT`.
"""

from __future__ import annotations

import asyncio
import sys

import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request

from inspection.preprocessing import PreprocessSpec
from models.onnx_runtime import decode_metadata
from serving.frames import frame_to_inputs


def create_simple_app(model_path: str) -> FastAPI:
    """One endpoint with the server's path: decode, score alone in a worker thread, answer the probability."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    spec = PreprocessSpec.from_dict(decode_metadata(session.get_modelmeta().custom_metadata_map)["preprocess"])
    app = FastAPI()

    def score(body: bytes) -> float:
        inputs = frame_to_inputs(body, spec, 50_000_000)[None]
        return float(session.run(["defect_probability"], {"image": inputs})[0][0])

    @app.post("/v1/inspect/{product}")
    async def inspect(product: str, request: Request) -> dict[str, float | str]:
        return {"product": product, "defect_probability": await asyncio.to_thread(score, await request.body())}

    return app


if __name__ == "__main__":
    uvicorn.run(create_simple_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
