"""A version whose served file is cut short is never promoted (CLI or HTTP): refused with the reason, nothing
recorded; and once a broken champion is rolled back, readiness stops reporting it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from models import registry
from models.promotion import promotion_log
from models.serving_choice import serving_file
from serving.app import create_app
from tests.cli.cli_runner import run_cli
from tests.conftest import free_port, wait_until_started
from tests.serving.test_server_promotion import _home_with_two_exported_versions

pytestmark = pytest.mark.slow


def _cut_short(settings, product: str, version: int) -> None:
    path = serving_file(registry.resolve_version(settings, product, version).artifacts)
    assert path is not None
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _ready(url: str) -> dict:
    return httpx.get(f"{url}/readyz", timeout=10).json()


def test_a_truncated_model_is_refused_and_readiness_clears_after_rollback(trained_product, tmp_path: Path) -> None:
    settings = _home_with_two_exported_versions(trained_product, tmp_path)
    product = trained_product.product
    _cut_short(settings, product, 2)
    log_before = promotion_log(settings, product)

    refused = run_cli(settings, "models", "promote", product, "2")
    assert refused.returncode != 0
    assert "cannot serve" in refused.stdout + refused.stderr
    assert registry.champion(settings, product).version == 1 and promotion_log(settings, product) == log_before

    qa = create_api_key(open_database(settings.resolved_database_url), "qa", "qa")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_started(server, thread)
        answer = httpx.post(f"{url}/v1/products/{product}/models/2/promote", headers={"X-API-Key": qa}, timeout=60)
        assert answer.status_code == 409 and "cannot serve" in answer.json()["detail"]
        assert registry.champion(settings, product).version == 1 and promotion_log(settings, product) == log_before

        # A broken champion set behind the gate's back (an older release, a hand edit): the replica keeps v1 and
        # says why; rolled back to v1, the failure is no longer wanted and readiness forgets it.
        registry.set_alias(settings, product, "champion", 2)
        deadline = time.monotonic() + 30
        while product not in _ready(url).get("unloadable", {}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert product in _ready(url)["unloadable"]
        registry.set_alias(settings, product, "champion", 1)
        deadline = time.monotonic() + 30
        while product in _ready(url).get("unloadable", {}) and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = _ready(url)
        assert product not in ready.get("unloadable", {}) and ready["models"][product] == 1
    finally:
        server.should_exit = True
        thread.join(timeout=30)
