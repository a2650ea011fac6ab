"""Shared fixtures: isolated INSPECTION_HOMEs, one small synthetic product trained once per session and served
on loopback, throwaway databases (SQLite and PostgreSQL), an S3 API and an MLflow tracking server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from datasets.synth import generate_synthetic_product
from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import make_engine, open_database, session_factory, upgrade_schema

REPO = Path(__file__).resolve().parents[1]
TINY_PRODUCT = "widget"
# Small enough to train in seconds on 2 cores, big enough that AUROC on its test split means something.
TINY_CONFIG = """
image_size: 128
train:
  epochs: 3
  augmented_views: 2
  probe_steps: 200
"""


def make_configs_dir(root: Path, products: dict[str, str]) -> Path:
    """A configs dir with the repo's defaults plus the given per-product YAML texts."""
    (root / "products").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "configs" / "default.yaml", root / "default.yaml")
    for name, text in products.items():
        (root / "products" / f"{name}.yaml").write_text(text)
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh, empty INSPECTION_HOME."""
    configs = make_configs_dir(tmp_path / "configs", {TINY_PRODUCT: TINY_CONFIG})
    return Settings(home=tmp_path / "var", configs_dir=configs, device="cpu")


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic product in the folder layout (200 gray 128px parts, four defect types, masks)."""
    root = tmp_path_factory.mktemp("synthetic") / "widget"
    generate_synthetic_product(root, n=200, seed=7, image_size=128)
    return root


@dataclass
class TrainedProduct:
    settings: Settings
    product: str
    outcome: object


@pytest.fixture(scope="session")
def trained_product(tmp_path_factory: pytest.TempPathFactory, synthetic_source: Path) -> TrainedProduct:
    """The synthetic product imported and trained once (version 1, champion) in its own INSPECTION_HOME."""
    from datasets.importers.folder import import_folder
    from training.pipeline import train_product

    base = tmp_path_factory.mktemp("trained")
    configs = make_configs_dir(base / "configs", {TINY_PRODUCT: TINY_CONFIG})
    settings = Settings(home=base / "var", configs_dir=configs, device="cpu")
    import_folder(synthetic_source, settings.dataset_dir(TINY_PRODUCT), TINY_PRODUCT)
    outcome = train_product(settings, TINY_PRODUCT)
    return TrainedProduct(settings, TINY_PRODUCT, outcome)


S3_BUCKET = "frames"


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on loopback (moto's server, spoken to over HTTP like any S3-compatible store) with the bucket
    `frames`."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    client.create_bucket(Bucket=S3_BUCKET)
    yield endpoint
    server.stop()


@dataclass
class MlflowServer:
    url: str
    artifacts: Path  # where its artifact proxy stores files


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow SQLite store: a server started on a copy skips its schema migrations."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    root = tmp_path_factory.mktemp("mlflow-template")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    TrackingStore(uri, str(root / "unused-artifacts"))
    RegistryStore(uri)
    return root / "mlflow.db"


@contextmanager
def running_mlflow_server(root: Path, template: Path) -> Iterator[MlflowServer]:
    """A real `mlflow server` process on loopback: SQLite backend store (a copy of `template`), artifacts under
    `root` served through its proxy."""
    import httpx

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, root / "mlflow.db")
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--host=127.0.0.1",
        f"--port={port}",
        "--workers=1",
        f"--backend-store-uri=sqlite:///{root / 'mlflow.db'}",
        f"--artifacts-destination={(root / 'artifacts').as_uri()}",
        "--serve-artifacts",
    ]
    url = f"http://127.0.0.1:{port}"
    with (root / "server.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.3)
            yield MlflowServer(url, root / "artifacts")
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> Iterator[MlflowServer]:
    """One MLflow tracking server for the session's tests that use distinct products on it."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server"), mlflow_db_template) as server:
        yield server


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (no schema yet) on the local server, dropped after the test."""
    from benchmarks.throwaway_postgres import throwaway_database

    admin_url = os.environ.get("INSPECTION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    with throwaway_database(admin_url, "inspection_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sessions(request: pytest.FixtureRequest, tmp_path: Path):
    """A session factory on a fresh, migrated database of each kind."""
    # PostgreSQL: a throwaway database per test (postgres_url), so tests never see each other's rows.
    url = (
        f"sqlite:///{tmp_path / 'inspection.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = make_engine(url)
    upgrade_schema(engine)
    yield session_factory(engine)
    engine.dispose()


@dataclass
class LiveServer:
    """A real uvicorn server on loopback serving a trained product, with one API key per role."""

    url: str
    settings: Settings
    product: str
    keys: dict[str, str]

    def client(self, role: str | None = "camera") -> httpx.Client:
        headers = {"X-API-Key": self.keys[role]} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def wait_until_started(server: uvicorn.Server, thread: threading.Thread, timeout: float = 60) -> None:
    """Block until uvicorn accepts connections; fail clearly if it died or hung."""
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)


@contextmanager
def serve_on_loopback(settings: Settings, product: str, key_label: str = "test") -> Iterator[LiveServer]:
    """A real uvicorn server for `settings` on a free loopback port, with a new key per role, until the block ends."""
    from serving.app import create_app

    sessions = open_database(settings.resolved_database_url)
    keys = {role: create_api_key(sessions, role, f"{key_label} {role}") for role in ("camera", "qa", "manager")}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until_started(server, thread)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings, product, keys)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server(trained_product) -> Iterator[LiveServer]:
    """The session's trained synthetic product, exported and served on loopback."""
    from training.export_pipeline import export_product

    settings, product = trained_product.settings, trained_product.product
    export_product(settings, product)
    with serve_on_loopback(settings, product) as server:
        yield server


@pytest.fixture
def postgres_server(live_server: LiveServer, postgres_url: str) -> Iterator[LiveServer]:
    """The session's trained product served by a second server whose database is a fresh PostgreSQL one."""
    settings = live_server.settings.model_copy(update={"database_url": postgres_url})
    with serve_on_loopback(settings, live_server.product, "postgres") as server:
        yield server
