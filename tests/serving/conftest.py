"""A real uvicorn server on loopback, serving the session's trained synthetic product, with one key per role."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from serving.app import create_app


@dataclass
class LiveServer:
    url: str
    settings: Settings
    product: str
    keys: dict[str, str]

    def client(self, role: str | None = "camera") -> httpx.Client:
        headers = {"X-API-Key": self.keys[role]} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_started(server: uvicorn.Server, thread: threading.Thread, timeout: float = 60) -> None:
    """Block until uvicorn accepts connections; fail clearly if it died or hung."""
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def live_server(trained_product) -> Iterator[LiveServer]:
    from training.export_pipeline import export_product

    settings, product = trained_product.settings, trained_product.product
    export_product(settings, product)
    sessions = open_database(settings.resolved_database_url)
    keys = {role: create_api_key(sessions, role, f"test {role}") for role in ("camera", "qa", "manager")}
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until_started(server, thread)
    yield LiveServer(f"http://127.0.0.1:{port}", settings, product, keys)
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def postgres_server(live_server: LiveServer, postgres_url: str) -> Iterator[LiveServer]:
    """The session's trained product served by a second server whose database is a fresh PostgreSQL one."""
    settings = live_server.settings.model_copy(update={"database_url": postgres_url})
    sessions = open_database(postgres_url)
    keys = {role: create_api_key(sessions, role, f"postgres {role}") for role in ("camera", "qa", "manager")}
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until_started(server, thread)
    yield LiveServer(f"http://127.0.0.1:{port}", settings, live_server.product, keys)
    server.should_exit = True
    thread.join(timeout=30)
