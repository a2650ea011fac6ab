"""A champion that cannot be loaded (here: a corrupt ONNX file) stops only its own product: the server starts and
serves the others, readyz names the broken one and why, its frames get a 503 that says so, and a product whose new
champion is broken keeps serving the version it had."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from models import registry
from models.artifacts import FP32_FILE, ONNX_DIR
from serving.app import create_app
from tests.conftest import free_port, wait_until_started
from tests.serving.test_server import _frame
from tests.serving.test_server_promotion import _home_with_two_exported_versions

pytestmark = pytest.mark.slow

BROKEN = "cracked"  # a second product whose only version's ONNX file is garbage


def _register_garbage(settings: Settings, product: str, folder: Path) -> int:
    """A registered version of `product` whose exported file is not ONNX at all."""
    (folder / ONNX_DIR).mkdir(parents=True)
    (folder / ONNX_DIR / FP32_FILE).write_bytes(b"not an onnx model")
    client = registry.mlflow_client(settings)
    found = client.get_experiment_by_name(product)
    run = client.create_run(found.experiment_id if found else client.create_experiment(product))
    client.set_terminated(run.info.run_id)
    version = registry.register_version(settings, product, run.info.run_id, folder.as_uri(), {})
    registry.set_alias(settings, product, "champion", version)
    return version


def _ready(url: str) -> dict:
    answer = httpx.get(f"{url}/readyz", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_broken_champion_stops_only_its_own_product(trained_product, tmp_path: Path) -> None:
    settings = _home_with_two_exported_versions(trained_product, tmp_path)  # v2: a good copy of v1
    product = trained_product.product
    _register_garbage(settings, BROKEN, tmp_path / "broken-artifacts")
    key = create_api_key(open_database(settings.resolved_database_url), "camera", "cam")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": key, "Content-Type": "image/png"}
    try:
        wait_until_started(server, thread)
        ready = _ready(url)
        assert ready["models"] == {product: 1}
        assert set(ready["unloadable"]) == {BROKEN} and ready["unloadable"][BROKEN].startswith("v1: ")
        good = httpx.post(f"{url}/v1/inspect/{product}", content=_frame(), headers=headers, timeout=30)
        assert good.status_code == 200, good.text
        refused = httpx.post(f"{url}/v1/inspect/{BROKEN}", content=_frame(), headers=headers, timeout=30)
        assert refused.status_code == 503
        assert "could not be loaded" in refused.text

        # A broken new champion of a served product: it keeps serving v1 and says why v3 is not served.
        broken_v3 = _register_garbage(settings, product, tmp_path / "broken-v3")
        deadline = time.monotonic() + 30
        while product not in _ready(url)["unloadable"] and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = _ready(url)
        assert ready["unloadable"][product].startswith(f"v{broken_v3}: ")
        assert ready["models"][product] == 1
        still = httpx.post(f"{url}/v1/inspect/{product}", content=_frame(), headers=headers, timeout=30)
        assert still.status_code == 200 and still.json()["model_version"] == 1

        # Once the champion moves to a loadable version, the product is served again and the failure forgotten.
        registry.set_alias(settings, product, "champion", 2)
        deadline = time.monotonic() + 30
        while _ready(url)["models"][product] != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = _ready(url)
        assert ready["models"][product] == 2 and product not in ready["unloadable"]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
