"""The camera client: frames from a source posted to the inspection server on a fixed schedule.

A frame is due every 1/fps seconds from the start (no drift). At most `concurrency` requests are in flight; a
frame due while every slot is busy is dropped, never queued, as a real camera's would be, so a slow server can
never build a backlog in the client. Torch-free, like the rest of the serving path.
"""

from __future__ import annotations

import asyncio
import threading
import time
from array import array
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

from inspection.errors import InspectionError
from inspection.names import validate_product_name
from serving.camera_sources import Frame, FrameSource, open_source

# Live figures cover the last few seconds: long enough to be steady, short enough to show a slowdown.
LIVE_WINDOW_S = 5.0
# A source that stalls longer than this (an RTSP reconnect) resumes on a fresh schedule instead of bursting.
MAX_SCHEDULE_LAG_S = 1.0


@dataclass(frozen=True)
class FrameResult:
    """An answered frame: enough to send QA feedback for it later."""

    frame_id: str
    inspection_id: str
    verdict: str


@dataclass
class CameraSummary:
    """What a streaming run did; rates and percentiles are over the whole run."""

    product: str
    source: str
    target_fps: float
    concurrency: int
    read: int = 0
    sent: int = 0
    answered: int = 0
    errors: int = 0
    errors_by_status: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    dropped: int = 0
    duration_s: float = 0.0
    achieved_fps: float = 0.0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    server_latency_ms_p50: float | None = None
    max_in_flight: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    abandoned: int = 0  # sent but still unanswered when interrupted: sent == answered + errors + abandoned
    results: list[FrameResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without the per-frame results (they grow with the run)."""
        data = asdict(self)
        data.pop("results")
        return data


def _percentile(values: list[float] | array[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)), 3) if len(values) else None


class _Run:
    """Counters of one run, updated by the request tasks, read by the live display."""

    def __init__(self, summary: CameraSummary, keep_results: bool) -> None:
        self.summary = summary
        self.keep_results = keep_results  # off for long runs: one result per frame would grow without end
        self.in_flight = 0
        # 8 bytes a frame (a day at 50 frames/s is ~35 MB): exact percentiles without a list of float objects.
        self.latencies = array("d")
        self.server_latencies = array("d")
        self.recent: deque[tuple[float, float]] = deque()  # (answered at, latency ms) within LIVE_WINDOW_S
        self.errors: Counter[str] = Counter()
        self.verdicts: Counter[str] = Counter()
        self.started = time.monotonic()

    def record_answer(self, frame_id: str, answer: dict[str, Any], latency_ms: float) -> None:
        now = time.monotonic()
        self.summary.answered += 1
        self.latencies.append(latency_ms)
        self.recent.append((now, latency_ms))
        while self.recent and self.recent[0][0] < now - LIVE_WINDOW_S:
            self.recent.popleft()
        if isinstance(answer.get("latency_ms"), int | float):
            self.server_latencies.append(float(answer["latency_ms"]))
        self.verdicts[str(answer.get("verdict"))] += 1
        if self.keep_results:
            self.summary.results.append(
                FrameResult(frame_id, str(answer.get("inspection_id")), str(answer.get("verdict")))
            )

    def record_error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        self.summary.errors += 1
        self.summary.error_examples.setdefault(kind, detail[:300])

    def __rich__(self) -> Text:
        s, now = self.summary, time.monotonic()
        recent = [item for item in self.recent if item[0] >= now - LIVE_WINDOW_S]
        span = min(LIVE_WINDOW_S, max(now - self.started, 1e-3))
        p50 = _percentile([latency for _, latency in recent], 50)
        return Text(
            f"{s.product} <- {s.source}: sent {s.sent}  answered {s.answered}  {len(recent) / span:.1f} fps "
            f"(target {s.target_fps:g})  p50 {'-' if p50 is None else f'{p50:.0f} ms'}  "
            f"dropped {s.dropped}  errors {s.errors}  in flight {self.in_flight}"
        )

    def finish(self, duration_s: float) -> CameraSummary:
        s = self.summary
        s.duration_s = round(duration_s, 3)
        s.achieved_fps = round(s.answered / duration_s, 3) if duration_s > 0 else 0.0
        s.latency_ms = {f"p{q}": _percentile(self.latencies, q) for q in (50, 95, 99)}
        s.server_latency_ms_p50 = _percentile(self.server_latencies, 50)
        s.errors_by_status = dict(sorted(self.errors.items()))
        s.verdicts = dict(sorted(self.verdicts.items()))
        return s


async def _post(client: httpx.AsyncClient, run: _Run, url: str, frame: Frame, params: dict[str, str]) -> None:
    started = time.perf_counter()
    try:
        response = await client.post(
            url, content=frame.data, params=params, headers={"Content-Type": frame.content_type}
        )
        latency_ms = 1000 * (time.perf_counter() - started)
        if response.is_success:
            try:
                answer = response.json()
            except ValueError:
                run.record_error("invalid-answer", response.text)
            else:
                run.record_answer(frame.frame_id, answer, latency_ms)
        else:
            run.record_error(str(response.status_code), response.text)
    except httpx.HTTPError as exc:
        # Transport failures (refused, reset, timeout) are counted by kind; the camera keeps streaming.
        run.record_error(type(exc).__name__, str(exc) or type(exc).__name__)
    finally:
        run.in_flight -= 1


async def _stream(
    source: FrameSource,
    run: _Run,
    *,
    server: str,
    api_key: str | None,
    params: dict[str, str],
    limit: int | None,
    loop: bool,
    duration: float | None,
    timeout: float,
    stop: threading.Event | None,
) -> float:
    summary, clock = run.summary, asyncio.get_running_loop().time
    period, tasks = 1.0 / summary.target_fps, set[asyncio.Task[None]]()
    headers = {"X-API-Key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=summary.concurrency, max_keepalive_connections=summary.concurrency)
    url = f"/v1/inspect/{summary.product}"
    async with httpx.AsyncClient(base_url=server, headers=headers, limits=limits, timeout=timeout) as client:
        began = start = clock()
        index, read_this_pass = 0, 0
        try:
            while (limit is None or summary.read < limit) and not (stop is not None and stop.is_set()):
                due = start + index * period
                if duration is not None and due - began >= duration:
                    break
                lag = clock() - due
                if lag > MAX_SCHEDULE_LAG_S:
                    start, due = start + lag, due + lag
                elif lag < 0:
                    await asyncio.sleep(-lag)
                frame = await asyncio.to_thread(source.read)
                captured_at = datetime.now(UTC).isoformat(timespec="milliseconds")
                if frame is None:
                    if not loop or read_this_pass == 0:
                        break
                    await asyncio.to_thread(source.restart)
                    read_this_pass = 0
                    continue
                summary.read += 1
                read_this_pass += 1
                index += 1
                if run.in_flight >= summary.concurrency:
                    summary.dropped += 1
                    continue
                run.in_flight += 1
                summary.sent += 1
                summary.max_in_flight = max(summary.max_in_flight, run.in_flight)
                frame_params = {**params, "frame_id": frame.frame_id, "captured_at": captured_at}
                task = asyncio.create_task(_post(client, run, url, frame, frame_params))
                tasks.add(task)  # no queue: a frame's bytes live in this loop and its task, until its request ends
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            # Ctrl-C (asyncio.run cancels this task): abandon what is in flight and still report the run.
            summary.interrupted = True
            summary.abandoned = sum(not task.done() for task in tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return clock() - began


def stream_frames(
    source: str | Path,
    *,
    product: str,
    server: str,
    fps: float,
    api_key: str | None,
    concurrency: int = 4,
    line_id: str | None = None,
    camera_id: str | None = None,
    limit: int | None = None,
    loop: bool = False,
    duration: float | None = None,
    jpeg_quality: int = 90,
    timeout: float = 30.0,
    show_progress: bool = True,
    stop: threading.Event | None = None,
    keep_results: bool = False,
) -> CameraSummary:
    """Post frames from `source` to `server` at `fps` (dropping frames when all slots are busy); blocks until done.

    Safe to call from several threads at once; set `stop` to end a run early from another thread. With
    `keep_results` the summary lists every answered frame (for QA feedback); it grows with the run.
    """
    validate_product_name(product)
    if not server.startswith(("http://", "https://")):
        raise InspectionError(f"--server must be an http:// or https:// URL, got {server!r}")
    for name, value, low in (("fps", fps, 0.0), ("duration", duration, 0.0)):
        if value is not None and not value > low:
            raise InspectionError(f"--{name} must be positive, got {value}")
    for name, count in (("concurrency", concurrency), ("limit", limit)):
        if count is not None and count < 1:
            raise InspectionError(f"--{name} must be at least 1, got {count}")
    if not 1 <= jpeg_quality <= 100:
        raise InspectionError(f"--jpeg-quality must be in [1, 100], got {jpeg_quality}")
    frames = open_source(source, jpeg_quality)
    params = {name: value for name, value in (("camera_id", camera_id), ("line_id", line_id)) if value}
    run = _Run(
        CameraSummary(product=product, source=str(source), target_fps=fps, concurrency=concurrency), keep_results
    )
    # Each run owns its console and leaves sys.stdout alone, so runs in two threads cannot collide.
    live = None
    if show_progress:
        live = Live(
            run, console=Console(stderr=True), refresh_per_second=4, redirect_stdout=False, redirect_stderr=False
        )
    try:
        if live is not None:
            live.start()
        duration_s = asyncio.run(
            _stream(
                frames,
                run,
                server=server.rstrip("/"),
                api_key=api_key,
                params=params,
                limit=limit,
                loop=loop,
                duration=duration,
                timeout=timeout,
                stop=stop,
            )
        )
    finally:
        if live is not None:
            live.stop()
            if not live.console.is_terminal:
                live.console.line()  # off a terminal the final line is printed without its newline
        frames.close()
    return run.finish(duration_s)
