"""The server's workers name their OS threads, so the CPU each role spends can be read from /proc."""

from __future__ import annotations

import os
import threading
import time

from benchmarks.compare_servers import cpu_by_thread_role, role_totals
from serving.engine import RUNNER_THREAD_NAME
from serving.worker_queue import name_os_thread


def _busy(seconds: float) -> None:
    stop = time.process_time() + seconds
    while time.process_time() < stop:
        sum(range(1000))


def test_named_worker_threads_are_told_apart_by_their_cpu() -> None:
    started, done = threading.Event(), threading.Event()

    def runner() -> None:
        name_os_thread(RUNNER_THREAD_NAME)
        started.set()
        done.wait()

    thread = threading.Thread(target=runner)
    thread.start()
    started.wait()
    try:
        before = cpu_by_thread_role(os.getpid())
        assert (thread.native_id, "runners") in before
        _busy(0.2)  # on this (main) thread: the server's event loop
        totals = role_totals(before, cpu_by_thread_role(os.getpid()))
    finally:
        done.set()
        thread.join()
    assert totals["event_loop"] >= 0.1
    assert totals["runners"] < 0.05  # the runner waited meanwhile
    assert set(totals) == {"event_loop", "runners", "writer", "other"}
