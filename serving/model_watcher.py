"""Keeps every replica serving its products' current champions, with their challengers in shadow: this module
loads and swaps; which file and which threshold a version serves is models/serving_choice.py's to say.

Promotion and rollback only move the registry's `champion` alias; each replica polls the registry and swaps
its engine when the alias moved. The engine's swap finishes in-flight batches on the old model, so no frame
is dropped, and each answer names the version that scored it. The `challenger` alias is followed the same way:
an exported challenger that is not the champion scores every frame in shadow (serving/shadow_scorer.py); when the
alias moves the shadow is replaced, when it is removed (or the challenger became champion) the shadow stops.
A served threshold set by QA (`inspection models threshold`: the version's `served_threshold` tag) is followed
too: the engine judges with it from its next batch, without reloading the model, and each answer and stored
row carries the threshold it was judged by.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from models.onnx_runtime import OnnxScorer
from models.registry import registered_products
from models.serving_choice import ServedModel, challenger_model, champion_model, file_stamp
from serving.audit_rates import refresh_audit_policies
from serving.engine import InferenceEngine, engine_runners
from serving.shadow_scorer import ShadowScorer
from serving.state import ServingState, UnloadableModel

log = logging.getLogger("serving")
# The shadow's session gets one core: on a 2-core line PC the champion keeps the other one to itself.
SHADOW_THREADS = 1


def _current_models(state: ServingState) -> dict[str, tuple[ServedModel, ServedModel | None]]:
    """Product -> (exported champion, exported challenger or None), for products whose champion is exported."""
    found = {}
    for product in registered_products(state.settings):
        served = champion_model(state.settings, product)
        if served is not None:
            found[product] = (served, challenger_model(state.settings, product))
    return found


def warm_scorer(state: ServingState, served: ServedModel, threads: int | None = None) -> OnnxScorer:
    """A session for `served`, already run once at the batch sizes it will see."""
    threads = threads or state.settings.ort_threads or None  # None: one per core
    scorer = OnnxScorer(served.path, threads=threads, spinning=state.settings.ort_spinning)
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
        threshold=served.threshold,
        runners=engine_runners(settings.engine_runners, settings.ort_threads),
    )


def new_shadow(state: ServingState, challenger: ServedModel) -> ShadowScorer:
    """A shadow scorer for `challenger` with the configured queue and delay budget."""
    settings = state.settings
    return ShadowScorer(
        warm_scorer(state, challenger, threads=SHADOW_THREADS),
        product=challenger.product,
        model_version=challenger.version,
        sessions=state.sessions,
        queue_size=settings.shadow_queue_size,
        max_delay_ms=settings.shadow_max_delay_ms,
        max_batch=settings.batch_max,
        max_pixels=settings.max_pixels,
        metrics=state.metrics,
        threshold=challenger.threshold,
    )


async def _sync_shadow(state: ServingState, product: str, challenger: ServedModel | None) -> str | None:
    """Start, replace or stop the product's shadow so it follows the challenger; a line when it changed."""
    engine = state.engines.get(product)
    if challenger is not None and (engine is None or engine.model_version == challenger.version):
        challenger = None  # a challenger that is the champion has nothing to be compared with
    current = state.shadows.get(product)
    stamp = None if challenger is None else file_stamp(challenger.path)
    same_version = current is not None and challenger is not None and current.model_version == challenger.version
    if (
        current is not None
        and challenger is not None
        and same_version
        and (current.threshold_override, state.shadow_files.get(product)) == (challenger.threshold, stamp)
    ):
        return None  # QA moving the challenger's threshold, or an export its file, restarts its shadow
    change = None
    new_file = same_version and state.shadow_files.get(product) != stamp  # the same challenger, re-exported
    if current is not None:
        # Removed from the map first, so new frames stop going to it; it finishes its queue within its budget.
        del state.shadows[product]
        state.shadow_files.pop(product, None)
        current.stop()
        change = f"{product}: v{current.model_version} no longer in shadow"
    if challenger is not None and stamp is not None:
        try:
            state.shadows[product] = await run_in_threadpool(new_shadow, state, challenger)
        except Exception:  # a broken challenger must never stop the champion's serving: logged, retried next poll
            log.exception("loading challenger %s v%d for shadow scoring failed", product, challenger.version)
            return change
        state.shadow_files[product] = stamp
        change = f"{product}: v{challenger.version} scoring in shadow" + (
            f" from its new file {challenger.path.name}" if new_file else ""
        )
        if challenger.threshold is not None:
            change += f" at QA's threshold {challenger.threshold:.4f}"
    return change


async def sync_engines(state: ServingState) -> list[str]:
    """Swap or add engines whose product's champion changed, and follow the challengers; a line per change.

    One product's champion that cannot be loaded (a corrupt or truncated ONNX file, a model this runtime cannot
    run) never stops the others: it is logged and recorded in `state.unloadable` (readyz and that product's frames
    say why), the product keeps its previous engine if it had one, and the same file is not retried until the
    champion moves."""
    changes = []
    current = await run_in_threadpool(_current_models, state)
    for product, (served, _challenger) in current.items():
        change = await _sync_engine(state, product, served)
        if change is not None:
            changes.append(change)
    for product in set(state.unloadable) - set(current):
        del state.unloadable[product]  # no exported champion any more: nothing left that failed
    for product in sorted(set(current) | set(state.shadows)):
        change = await _sync_shadow(state, product, current[product][1] if product in current else None)
        if change is not None:
            changes.append(change)
    await refresh_audit_policies(state)  # after the engines: a newly served product gets its rates at once
    for change in changes:
        log.info("model change: %s", change)
    return changes


async def _sync_engine(state: ServingState, product: str, served: ServedModel) -> str | None:
    """Bring `product`'s engine to its champion `served`; a line when something changed."""
    engine = state.engines.get(product)
    stamp = file_stamp(served.path)
    same_version = engine is not None and engine.model_version == served.version
    if engine is not None and same_version and state.engine_files.get(product) == stamp:
        # The champion is what this engine serves (a rollback away from a version that failed to load): that
        # failure is no longer wanted, so readiness must not keep reporting it.
        state.unloadable.pop(product, None)
        if engine.threshold_override == served.threshold:
            return None
        engine.set_threshold(served.threshold)
        source = "the model's own" if served.threshold is None else "set by QA"
        return f"{product}: v{served.version} now judged at threshold {engine.threshold:.4f} ({source})"
    failed = state.unloadable.get(product)
    if failed is not None and failed.stamp == stamp:
        return None  # this very file failed already; retried when the champion or its file changes
    try:
        if engine is None:
            state.engines[product] = await run_in_threadpool(new_engine, state, served)
        else:
            engine.swap(await run_in_threadpool(warm_scorer, state, served), served.version, served.threshold)
    except Exception as error:
        log.exception("loading %s v%d failed; the product's other models are unaffected", product, served.version)
        reason = f"{type(error).__name__}: {error}"
        state.unloadable[product] = UnloadableModel(served.version, stamp, reason)
        kept = f"still serving v{engine.model_version}" if engine is not None else "not served"
        return f"{product}: v{served.version} could not be loaded ({kept})"
    state.unloadable.pop(product, None)
    state.engine_files[product] = stamp
    if engine is None:
        return f"{product}: now serving v{served.version}"
    if same_version:
        return f"{product}: v{served.version} re-exported, now serving {served.path.name}"
    return f"{product}: v{served.version} swapped in"


async def stop_shadows(state: ServingState, timeout: float) -> None:
    """Stop every shadow: frames still within their delay budget are scored, the rest skipped and counted."""
    shadows = list(state.shadows.values())
    state.shadows.clear()
    for shadow in shadows:
        shadow.stop()
    for shadow in shadows:
        if not await asyncio.to_thread(shadow.join, timeout):
            log.warning(
                "shadow worker of %s v%d did not finish in %.0fs", shadow.product, shadow.model_version, timeout
            )


async def watch_champions(state: ServingState, interval_s: float) -> None:
    """Poll the registry forever (cancelled at shutdown); an error is logged and the next poll tries again."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await sync_engines(state)
        except Exception:
            log.exception("checking the registry for new champions failed")
