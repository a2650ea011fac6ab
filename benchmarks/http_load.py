"""A lean HTTP/1.1 load generator for the server benchmarks: keep-alive connections on asyncio streams.

The load generator shares the 2 cores with the server it measures, so every millisecond it spends per request
is taken from the server. A general-purpose client (httpx) spent about as much CPU per request as the server's
own HTTP layer; this one sends pre-built request bytes and reads only the status line, the headers and
Content-Length bytes of body. Both the server and the naive baseline are measured with it. It speaks just enough
HTTP for these servers (uvicorn: Content-Length bodies, keep-alive); it is not a general client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

try:  # uvloop when installed (uvicorn brings it): the same event loop the server runs on, and cheaper
    import uvloop

    def run(main: Callable[[], Awaitable[object]]) -> object:
        return uvloop.run(main())
except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]

    def run(main: Callable[[], Awaitable[object]]) -> object:
        return asyncio.run(main())


def build_requests(url: str, headers: dict[str, str], bodies: Sequence[bytes]) -> list[bytes]:
    """One complete POST request (head and body) per body, built once so sending costs one write."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    requests = []
    for body in bodies:
        lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        requests.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return requests


class Connection:
    """One keep-alive connection; `send` writes a request and returns the response's status code."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        return cls(reader, writer)

    async def send(self, request: bytes) -> int:
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        if length:
            await self._reader.readexactly(length)
        return status

    @property
    def closed_by_server(self) -> bool:
        """The server closed it (uvicorn drops keep-alive connections idle for 5 s): open a new one instead."""
        return self._reader.at_eof()

    def close(self) -> None:
        self._writer.close()


@dataclass
class OfferedResult:
    fps: float  # answered (200) frames per second over the whole run
    p50_ms: float
    p99_ms: float
    errors: int  # answers other than 200
    answered: int = 0  # answers with status 200


async def offered_rate(url: str, requests: Sequence[bytes], fps: float, seconds: float) -> OfferedResult:
    """Open loop, as a camera sends: a request every 1/fps s regardless of answers, on a pool of connections
    (a new one is opened whenever all are busy); the latency of each answer, from when its request was sent."""
    idle: list[Connection] = []
    opened: list[Connection] = []
    latencies: list[float] = []
    errors = 0

    async def one(request: bytes) -> None:
        nonlocal errors
        began = time.perf_counter()
        while idle and idle[-1].closed_by_server:
            idle.pop().close()
        if idle:
            connection = idle.pop()
        else:
            connection = await Connection.open(url)
            opened.append(connection)
        status = await connection.send(request)
        idle.append(connection)
        if status == 200:
            latencies.append(1000 * (time.perf_counter() - began))
        else:
            errors += 1

    tasks, start, count = [], time.perf_counter(), int(fps * seconds)
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / fps - time.perf_counter()))
        tasks.append(asyncio.create_task(one(requests[i % len(requests)])))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for connection in opened:
        connection.close()
    if not latencies:
        return OfferedResult(0.0, float("nan"), float("nan"), errors)
    p50, p99 = np.percentile(latencies, [50, 99])
    return OfferedResult(len(latencies) / elapsed, float(p50), float(p99), errors, len(latencies))


@dataclass
class SaturationResult:
    answered: int  # answers with status 200
    seconds: float

    @property
    def fps(self) -> float:
        return self.answered / self.seconds


async def saturation(url: str, requests: Sequence[bytes], seconds: float, clients: int) -> SaturationResult:
    """Closed loop: `clients` connections each sending the next frame as soon as the last is answered."""
    connections = [await Connection.open(url) for _ in range(clients)]
    answered = 0
    stop = time.perf_counter() + seconds

    async def worker(connection: Connection, offset: int) -> None:
        nonlocal answered
        i = offset
        while time.perf_counter() < stop:
            status = await connection.send(requests[i % len(requests)])
            # Not `answered += await ...`: that reads `answered` before the await and loses other workers' counts.
            answered += status == 200
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(c, k) for k, c in enumerate(connections)))
    elapsed = time.perf_counter() - began
    for connection in connections:
        connection.close()
    return SaturationResult(answered, elapsed)
