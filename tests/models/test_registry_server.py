"""The registry through a real MLflow tracking server on loopback (SQLite backend, artifact proxy): a replica with
its own empty INSPECTION_HOME reads versions over HTTP and caches their files; export's files reach it once
published."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.settings import Settings
from models import registry
from models.artifacts import FP32_FILE, ONNX_DIR
from models.serving_choice import serving_file

PRODUCT = "gadget"


def _settings(home: Path, url: str) -> Settings:
    return Settings(home=home, mlflow_tracking_uri=url)


def _register(settings: Settings, tmp_path: Path, files: dict[str, bytes]) -> int:
    """A real run whose `model/` artifacts are `files`, registered and published as training does."""
    client = registry.mlflow_client(settings)
    found = client.get_experiment_by_name(PRODUCT)
    experiment_id = found.experiment_id if found else client.create_experiment(PRODUCT)
    run = client.create_run(experiment_id)
    local = tmp_path / run.info.run_id
    for name, data in files.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    client.log_artifacts(run.info.run_id, str(local), artifact_path="model")
    client.set_terminated(run.info.run_id)
    version = registry.register_version(settings, PRODUCT, run.info.run_id, f"{run.info.artifact_uri}/model", {})
    registry.mark_artifacts_published(settings, PRODUCT, version)
    return version


def test_a_replica_reads_the_registry_and_caches_files_over_http(mlflow_server, tmp_path: Path) -> None:
    trainer = _settings(tmp_path / "trainer", mlflow_server.url)
    version = _register(trainer, tmp_path, {"model.pt": b"weights", "evaluation/report.json": b'{"a": 1}'})
    replica = _settings(tmp_path / "replica", mlflow_server.url)
    champion = registry.champion(replica, PRODUCT)
    assert champion is not None and champion.version == version
    assert champion.source.startswith("mlflow-artifacts:")
    folder = champion.artifacts
    assert folder.is_relative_to(replica.model_cache_dir)
    assert (folder / "model.pt").read_bytes() == b"weights"
    assert registry.read_report(champion) == {"a": 1}
    assert serving_file(folder) is None  # not exported yet
    assert not replica.mlflow_dir.exists()  # nothing embedded: the replica's registry is the server
    # Polling again costs no download: the same revision is the same folder.
    again = registry.champion(replica, PRODUCT)
    assert again is not None and again.artifacts == folder

    # Export on the trainer writes ONNX files into its copy, then publishes them to every reader.
    exporter_view = registry.resolve_version(trainer, PRODUCT, version)
    onnx = exporter_view.artifacts / ONNX_DIR
    onnx.mkdir()
    (onnx / FP32_FILE).write_bytes(b"onnx bytes")
    registry.publish_artifacts(trainer, exporter_view, ONNX_DIR)
    published = registry.champion(replica, PRODUCT)
    assert published is not None
    served = serving_file(published.artifacts)
    assert served is not None and served.read_bytes() == b"onnx bytes"
    assert not folder.exists()  # the older revision's copy is gone


def test_a_version_registered_but_not_yet_published_shows_no_files(mlflow_server, tmp_path: Path) -> None:
    trainer = _settings(tmp_path / "trainer", mlflow_server.url)
    client = registry.mlflow_client(trainer)
    found = client.get_experiment_by_name(PRODUCT)
    run = client.create_run(found.experiment_id if found else client.create_experiment(PRODUCT))
    (tmp_path / "model.pt").write_bytes(b"weights")
    client.log_artifact(run.info.run_id, str(tmp_path / "model.pt"), artifact_path="model")
    version = registry.register_version(trainer, PRODUCT, run.info.run_id, f"{run.info.artifact_uri}/model", {})
    replica = _settings(tmp_path / "replica", mlflow_server.url)
    info = registry.resolve_version(replica, PRODUCT, version)
    assert list(info.artifacts.iterdir()) == []  # training is still logging its report: nothing cached
    registry.mark_artifacts_published(trainer, PRODUCT, version)
    info = registry.resolve_version(replica, PRODUCT, version)
    assert (info.artifacts / "model.pt").read_bytes() == b"weights"


def test_tracking_uri_must_be_a_server(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Settings(home=tmp_path, mlflow_tracking_uri="sqlite:///elsewhere.db")
