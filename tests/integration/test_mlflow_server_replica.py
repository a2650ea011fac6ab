"""Registry and models through a real MLflow tracking server on loopback: a product trained and exported through
the server is served by a replica whose INSPECTION_HOME starts empty (it fetches the ONNX files over HTTP)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
import uvicorn

from datasets.importers.folder import import_folder
from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from models.artifacts import FP32_FILE
from serving.app import create_app
from tests.conftest import TINY_CONFIG, TINY_PRODUCT, free_port, make_configs_dir, wait_until_started
from training.export_pipeline import export_product
from training.pipeline import train_product

pytestmark = pytest.mark.slow


def test_a_replica_with_an_empty_home_serves_what_was_exported_through_the_server(
    mlflow_server, synthetic_source: Path, tmp_path: Path
) -> None:
    configs = make_configs_dir(tmp_path / "configs", {TINY_PRODUCT: TINY_CONFIG})
    trainer = Settings(
        home=tmp_path / "trainer", configs_dir=configs, device="cpu", mlflow_tracking_uri=mlflow_server.url
    )
    import_folder(synthetic_source, trainer.dataset_dir(TINY_PRODUCT), TINY_PRODUCT)
    version = train_product(trainer, TINY_PRODUCT).version
    export_product(trainer, TINY_PRODUCT)
    # The files live behind the server's artifact proxy, not in the trainer's home.
    assert list(mlflow_server.artifacts.rglob(FP32_FILE))
    assert not (trainer.mlflow_dir / "mlflow.db").exists()

    replica = Settings(home=tmp_path / "replica", configs_dir=configs, mlflow_tracking_uri=mlflow_server.url)
    key = create_api_key(open_database(replica.resolved_database_url), "camera", "cam")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(replica), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_started(server, thread, timeout=120)
        ready = httpx.get(f"{url}/readyz", timeout=5).json()
        # Other tests' products on the same server (test_registry_server's "gadget" holds bytes that are not ONNX)
        # are theirs: this replica serves widget whatever else the registry holds.
        assert ready["models"][TINY_PRODUCT] == version
        frame = sorted((trainer.dataset_dir(TINY_PRODUCT) / "good").glob("*.png"))[0].read_bytes()
        answer = httpx.post(
            f"{url}/v1/inspect/{TINY_PRODUCT}",
            content=frame,
            headers={"X-API-Key": key, "Content-Type": "image/png"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == version
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    cached = list((replica.model_cache_dir / TINY_PRODUCT).rglob(FP32_FILE))
    assert len(cached) == 1  # the served file, fetched once into the replica's cache
    assert not (replica.mlflow_dir / "mlflow.db").exists()  # no embedded registry: the server is the registry
