"""The benchmarks' lean HTTP load generator against the real server: every answer it counts is a stored row."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np

from benchmarks.http_load import Connection, build_requests, offered_rate, run, saturation
from inspection.storage.database import open_database
from inspection.storage.inspections import InspectionFilter, count_inspections

KEEP_ALIVE_S = 5.0  # uvicorn's default timeout_keep_alive, which the test server keeps


def _frames(n: int = 4) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [cv2.imencode(".jpg", rng.integers(0, 255, (96, 128), dtype=np.uint8))[1].tobytes() for _ in range(n)]


def _stored(live_server, camera: str) -> int:
    sessions = open_database(live_server.settings.resolved_database_url)
    return count_inspections(sessions, InspectionFilter(camera_id=camera))


def test_saturation_counts_every_answer_of_concurrent_clients(live_server) -> None:
    url = f"{live_server.url}/v1/inspect/{live_server.product}?camera_id=load-saturation"
    headers = {"X-API-Key": live_server.keys["camera"], "Content-Type": "image/jpeg"}
    result = run(lambda: saturation(url, build_requests(url, headers, _frames()), 1.5, 8))
    # Exactly: a lost update between the 8 concurrent clients would count fewer answers than rows.
    assert result.answered == _stored(live_server, "load-saturation") > 8
    assert result.fps > 0


def test_offered_rate_sends_on_schedule_and_counts_refusals_as_errors(live_server) -> None:
    url = f"{live_server.url}/v1/inspect/{live_server.product}?camera_id=load-offered"
    headers = {"X-API-Key": live_server.keys["camera"], "Content-Type": "image/jpeg"}
    result = run(lambda: offered_rate(url, build_requests(url, headers, _frames()), 20, 1.0))
    assert result.errors == 0 and _stored(live_server, "load-offered") == 20
    assert 0 < result.p50_ms <= result.p99_ms
    refused = run(lambda: offered_rate(url, build_requests(url, {"X-API-Key": "wrong"}, _frames()), 10, 0.5))
    assert refused.errors == 5 and refused.fps == 0


def test_a_connection_the_server_closed_when_idle_is_noticed(live_server) -> None:
    url = f"{live_server.url}/v1/inspect/{live_server.product}?camera_id=load-idle"
    headers = {"X-API-Key": live_server.keys["camera"], "Content-Type": "image/jpeg"}
    request = build_requests(url, headers, _frames(1))[0]

    async def main() -> tuple[bool, bool]:
        connection = await Connection.open(url)
        assert await connection.send(request) == 200
        fresh = connection.closed_by_server
        await asyncio.sleep(KEEP_ALIVE_S + 1.0)  # uvicorn closes keep-alive connections idle this long
        stale = connection.closed_by_server
        connection.close()
        return fresh, stale

    assert run(main) == (False, True)
