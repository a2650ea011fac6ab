"""Group commit of inspection rows: every answer still waits for its own row to be stored, but the rows of
concurrent answers share one INSERT and one commit.

At 100 frames/s a transaction per frame cost about 1 ms of CPU each (ORM object, flush, commit) on 2 cores that
also decode and score. Here one thread writes: it takes every row waiting (up to MAX_ROWS_PER_COMMIT), inserts
them in one transaction and then answers each waiting request. It never waits for company, so a lone frame is
written at once; under load, rows pile up while a commit runs and the next commit takes them all. If a group
fails, its rows are retried one by one, so one bad row fails its own request only and loses no other.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from inspection.storage.inspections import add_inspections
from serving.worker_queue import collect_batch, name_os_thread, settle, settle_all

MAX_ROWS_PER_COMMIT = 64
WRITER_THREAD_NAME = "row-writer"  # its name in the OS (top -H): archiving and storing rows


# Work a row needs done before it can be stored (archiving its frame): run on the writer's thread, it fills in
# the row's missing columns and returns nothing; an exception fails that row's request alone.
Prepare = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class _Pending:
    row: dict[str, Any]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    prepare: Prepare | None


_STOP = object()


class RowWriterClosed(RuntimeError):  # noqa: N818 - reads as the outcome, like EngineClosed
    """The writer is closed; no row can be stored through it."""


class InspectionRowWriter:
    """`await writer.write(row)` returns once the row is committed (or raises the database's error)."""

    def __init__(self, sessions: sessionmaker[Session], max_rows: int = MAX_ROWS_PER_COMMIT):
        self._sessions, self._max_rows = sessions, max_rows
        # Unbounded is safe: every row belongs to a request that waits for it before answering, so the queue never
        # holds more rows than there are requests in flight.
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock, self._closed = threading.Lock(), False
        self._thread = threading.Thread(target=self._run, name="inspection-row-writer", daemon=True)
        self._thread.start()

    async def write(self, row: dict[str, Any], prepare: Prepare | None = None) -> None:
        """Store one inspection row, after `prepare(row)` when given; returns when it is committed.

        Preparing on the writer's thread (the server archives the frame there) saves the request a second trip
        through a thread pool: each trip is two thread switches and a turn of the event loop.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RowWriterClosed("the inspection row writer is closed")
            self._queue.put_nowait(_Pending(row, future, loop, prepare))
        await future

    async def close(self, timeout: float = 10.0) -> None:
        """Store every row already handed in, then stop the thread."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put_nowait(_STOP)  # behind every accepted row (FIFO)
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"inspection row writer did not finish within {timeout}s")

    def _run(self) -> None:
        name_os_thread(WRITER_THREAD_NAME)
        stopping = False
        while not stopping:
            group, stopping = collect_batch(self._queue, self._max_rows, _STOP)
            group = [pending for pending in group if self._prepared(pending)]
            if group:
                self._commit(group)

    @staticmethod
    def _prepared(pending: _Pending) -> bool:
        """Run the row's preparation; False (its request answered with the error) when it failed."""
        if pending.prepare is None:
            return True
        try:
            pending.prepare(pending.row)
        except Exception as error:
            settle(pending.future, pending.loop, error)
            return False
        return True

    def _commit(self, group: list[_Pending]) -> None:
        try:
            add_inspections(self._sessions, [pending.row for pending in group])
        except Exception as error:
            if len(group) == 1:
                settle(group[0].future, group[0].loop, error)
                return
            for pending in group:  # find the bad row: the others are stored and answered as usual
                self._commit([pending])
            return
        settle_all([(pending.future, pending.loop, None) for pending in group])
