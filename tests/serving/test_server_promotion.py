"""Promotion and rollback while cameras stream: every frame is answered, and each answer names the version that
scored it."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from sqlalchemy import func, select

from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from inspection.storage.inspections import InspectionFilter, count_inspections
from inspection.storage.schema import Inspection
from models import registry
from serving.app import create_app
from tests.conftest import LiveServer, free_port, wait_until_started
from tests.serving.test_server import _frame
from tools.home_copy import copy_home

pytestmark = pytest.mark.slow


def _home_with_two_exported_versions(trained_product, tmp_path: Path) -> Settings:
    """A private copy of the trained home plus a second registered version (a copy of v1's exported files)."""
    from training.export_pipeline import export_product

    source = trained_product.settings
    export_product(source, trained_product.product)
    settings = source.model_copy(update={"home": tmp_path / "var", "model_poll_seconds": 0.2})
    copy_home(source, settings)
    v1 = registry.resolve_version(settings, trained_product.product, 1)
    v2_artifacts = tmp_path / "v2-artifacts"
    shutil.copytree(v1.artifacts, v2_artifacts)
    client = registry.mlflow_client(settings)
    run = client.create_run(client.get_experiment_by_name(trained_product.product).experiment_id)
    client.set_terminated(run.info.run_id)
    assert registry.register_version(settings, trained_product.product, run.info.run_id, v2_artifacts.as_uri(), {}) == 2
    return settings


def test_promotion_under_load_drops_nothing(trained_product, tmp_path: Path) -> None:
    settings = _home_with_two_exported_versions(trained_product, tmp_path)
    product = trained_product.product
    sessions = open_database(settings.resolved_database_url)
    keys = {role: create_api_key(sessions, role, f"promotion {role}") for role in ("camera", "qa")}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until_started(server, thread)
    live = LiveServer(f"http://127.0.0.1:{port}", settings, product, keys)
    frames = [_frame(seed) for seed in range(5)]
    promoted = threading.Event()

    def camera(index: int) -> list[int]:
        versions = []
        with live.client("camera") as client:
            for i in range(120):
                response = client.post(
                    f"/v1/inspect/{product}",
                    content=frames[i % 5],
                    headers={"Content-Type": "image/png"},
                    params={"line_id": "line-promo", "camera_id": f"cam-{index}"},
                )
                assert response.status_code == 200, response.text
                versions.append(response.json()["model_version"])
                if index == 0 and i == 40:
                    with live.client("qa") as qa:
                        answer = qa.post(f"/v1/products/{product}/models/2/promote", json={})
                    assert answer.status_code == 200, answer.text
                    promoted.set()
        return versions

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            per_camera = list(pool.map(camera, range(4)))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert promoted.is_set()
    for versions in per_camera:
        assert versions == sorted(versions), "a camera saw the old model after the new one"
        assert versions[-1] == 2
    assert sum(v == 1 for v in per_camera[0]) >= 40
    total = count_inspections(sessions, InspectionFilter(line_id="line-promo"))
    assert total == 4 * 120
    assert np.sum([len(v) for v in per_camera]) == total


def test_rollback_under_load_reaches_every_replica_and_drops_nothing(trained_product, tmp_path: Path) -> None:
    from tests.cli.cli_runner import run_cli
    from tests.conftest import serve_on_loopback
    from tests.serving.test_shadow_scorer import _wait_for

    settings = _home_with_two_exported_versions(trained_product, tmp_path)
    product = trained_product.product
    promoted = run_cli(settings, "models", "promote", product, "2")
    assert promoted.returncode == 0, promoted.stderr
    assert "no shadow evidence" in promoted.stdout
    frames = [_frame(seed) for seed in range(5)]
    sent = [0, 0, 0, 0]

    # Two replicas on one INSPECTION_HOME, two cameras on each; the rollback is the CLI, from another process.
    # Each camera streams until its replica has answered it with the restored v1 ten times (or gives up).
    with (
        serve_on_loopback(settings, product, "shadow") as first,
        serve_on_loopback(settings, product, "shadow") as second,
    ):
        replicas = (first, first, second, second)

        def camera(index: int) -> list[int]:
            versions: list[int] = []
            with replicas[index].client("camera") as client:
                while versions.count(1) < 10 and len(versions) < 3000:
                    response = client.post(
                        f"/v1/inspect/{product}",
                        content=frames[len(versions) % 5],
                        headers={"Content-Type": "image/png"},
                        params={"line_id": "line-rollback", "camera_id": f"cam-{index}"},
                    )
                    assert response.status_code == 200, response.text
                    versions.append(response.json()["model_version"])
                    sent[index] += 1
            return versions

        with ThreadPoolExecutor(max_workers=4) as pool:
            streams = [pool.submit(camera, index) for index in range(4)]
            _wait_for(lambda: min(sent) >= 15)
            result = run_cli(settings, "models", "rollback", product)
            assert result.returncode == 0, result.stderr
            assert "champion is now v1" in result.stdout
            per_camera = [stream.result() for stream in streams]
        for versions in per_camera:
            assert versions.count(1) == 10, "a replica never served the restored champion"
            assert versions[0] == 2
            assert versions == sorted(versions, reverse=True), "a camera saw v2 again after the rollback reached it"
        for replica in (first, second):
            with replica.client("manager") as manager:
                assert manager.get("/v1/products").json()[0]["served_version"] == 1
    sessions = open_database(settings.resolved_database_url)
    query = select(Inspection.model_version, func.count()).where(Inspection.line_id == "line-rollback")
    with sessions() as session:
        stored = dict(session.execute(query.group_by(Inspection.model_version)).all())
    answered = [version for versions in per_camera for version in versions]
    assert stored == {2: answered.count(2), 1: answered.count(1)}, "every answered frame is a row of its version"
