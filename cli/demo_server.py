"""A real `inspection serve` process for the demo, with fresh keys per role, stopped when the demo ends.

A separate process rather than a thread: the server must not share the demo's interpreter (which has torch
loaded from training) or its GIL with the camera clients, exactly as on a line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from inspection.errors import InspectionError
from inspection.settings import Settings

READY_TIMEOUT_S = 120.0


@dataclass
class DemoServer:
    url: str
    keys: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def wait(self) -> None:
        """Block until the server exits or the user presses Ctrl-C."""
        with suppress(KeyboardInterrupt):
            self.process.wait()


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise InspectionError(f"the demo server exited with status {process.returncode}:\n{tail}")
        with suppress(URLError, OSError), urlopen(f"{url}/readyz", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise InspectionError(f"the demo server was not ready within {READY_TIMEOUT_S:.0f} s; see {log_path}")


@contextmanager
def start_server(settings: Settings, host: str, port: int) -> Iterator[DemoServer]:
    """Start `inspection serve` on host:port (a free port if 0 or taken), wait until ready, and stop it on exit."""
    from inspection.storage.api_keys import create_api_key
    from inspection.storage.database import open_database

    sessions = open_database(settings.resolved_database_url)
    keys = {role: create_api_key(sessions, role, f"demo {role}") for role in ("camera", "qa", "manager")}
    if port == 0 or not _port_is_free(host, port):  # 0: any free port, as for sockets
        port = _free_port(host)
    env = {**os.environ, "INSPECTION_HOME": str(settings.home.resolve())}
    if settings.database_url:
        env["INSPECTION_DATABASE_URL"] = settings.database_url
    env["INSPECTION_CONFIGS_DIR"] = str(settings.configs_dir.resolve())
    log_path = settings.home / "demo" / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "cli.main", "serve", "--host", host, "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://{host}:{port}"
    try:
        _wait_ready(url, process, log_path)
        yield DemoServer(url, keys, process, log_path)
    finally:
        process.terminate()  # uvicorn shuts down gracefully on SIGTERM: in-flight frames are answered
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
