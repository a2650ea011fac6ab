"""Keeps every replica serving its products' current champions.

Promotion and rollback only move the registry's `champion` alias; each replica polls the registry and swaps
its engine when the alias moved. The engine's swap finishes in-flight batches on the old model, so no frame
is dropped, and each answer names the version that scored it.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from models.onnx_runtime import OnnxScorer
from serving.engine import InferenceEngine
from serving.model_store import ServedModel, champion_model, registered_products
from serving.state import ServingState

log = logging.getLogger("serving")


def _current_champions(state: ServingState) -> dict[str, ServedModel]:
    found = {}
    for product in registered_products(state.settings):
        served = champion_model(state.settings, product)
        if served is not None:
            found[product] = served
    return found


def warm_scorer(state: ServingState, served: ServedModel) -> OnnxScorer:
    """A session for `served`, already run once at the batch sizes it will see."""
    scorer = OnnxScorer(served.path)
    scorer.warm_up(sorted({1, state.settings.batch_max}))
    return scorer


def new_engine(state: ServingState, served: ServedModel) -> InferenceEngine:
    """An engine for `served` with the configured batching and queue limits."""
    settings = state.settings
    return InferenceEngine(
        warm_scorer(state, served),
        max_batch=settings.batch_max,
        max_wait_ms=settings.batch_wait_ms,
        queue_size=settings.queue_size,
        model_version=served.version,
    )


async def sync_engines(state: ServingState) -> list[str]:
    """Swap or add engines whose product's champion changed; returns a line per change."""
    changes = []
    for product, served in (await run_in_threadpool(_current_champions, state)).items():
        engine = state.engines.get(product)
        if engine is None:
            state.engines[product] = await run_in_threadpool(new_engine, state, served)
            changes.append(f"{product}: now serving v{served.version}")
        elif engine.model_version != served.version:
            scorer = await run_in_threadpool(warm_scorer, state, served)
            engine.swap(scorer, served.version)
            changes.append(f"{product}: v{engine.model_version} swapped in")
    for change in changes:
        log.info("model change: %s", change)
    return changes


async def watch_champions(state: ServingState, interval_s: float) -> None:
    """Poll the registry forever (cancelled at shutdown); an error is logged and the next poll tries again."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await sync_engines(state)
        except Exception:
            log.exception("checking the registry for new champions failed")
