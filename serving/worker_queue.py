"""What the serving worker threads share: taking a batch off a thread queue, and answering an asyncio future from
the worker's thread.

The inference engine, the challenger in shadow and the row writer each run one thread that takes work in
batches from a `queue.Queue` and ends at a stop marker queued behind every accepted item.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
OS_THREAD_NAME_LIMIT = 15  # bytes Linux keeps of a thread's name


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` in the operating system too (Python keeps its names to itself), so `top -H`
    and /proc/<pid>/task/<tid>/comm show which worker spends the CPU (benchmarks.compare_servers reads them).
    Linux only; elsewhere, or when /proc is read-only, nothing happens."""
    with suppress(OSError):
        Path("/proc/thread-self/comm").write_bytes(name.encode()[:OS_THREAD_NAME_LIMIT])


def collect_batch(
    source: queue.Queue[Any], limit: int, stop: object, max_wait_s: float = 0.0
) -> tuple[list[Any], bool]:
    """Block for a first item, then gather more until `limit` items or `max_wait_s` (0: only what is already
    waiting); returns (items, stop marker seen). The marker ends the batch and is not among the items."""
    first = source.get()
    if first is stop:
        return [], True
    items = [first]
    deadline = time.monotonic() + max_wait_s
    while len(items) < limit:
        remaining = deadline - time.monotonic()
        try:
            # Past the deadline a backlog is still taken without waiting: under load batches fill for free.
            item = source.get(timeout=remaining) if remaining > 0 else source.get_nowait()
        except queue.Empty:
            break
        if item is stop:
            return items, True
        items.append(item)
    return items, False


def settle(future: asyncio.Future[T], loop: asyncio.AbstractEventLoop, outcome: T | BaseException) -> None:
    """Resolve `future` with a result or an exception on its own event loop (asyncio futures are not
    thread-safe); a future cancelled meanwhile, or a loop already closed, has nobody left to answer."""
    settle_all([(future, loop, outcome)])


def settle_all(outcomes: Sequence[tuple[asyncio.Future[T], asyncio.AbstractEventLoop, T | BaseException]]) -> None:
    """settle() for a whole batch with one wake-up per event loop rather than one per future: each wake-up is a
    write to the loop's self-pipe and a turn of the loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[T], T | BaseException]]] = {}
    for future, loop, outcome in outcomes:
        by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        with suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(_apply, settled)


def _apply(settled: list[tuple[asyncio.Future[T], T | BaseException]]) -> None:
    for future, outcome in settled:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
