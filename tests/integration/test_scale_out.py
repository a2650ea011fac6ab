"""Scale-out on real engines, on loopback: HAProxy (health checks on /readyz) in front of three `inspection serve`
processes with their own empty INSPECTION_HOMEs, one PostgreSQL database, one MLflow tracking server and one
S3-compatible object store.

- 8 cameras x 200 frames through the load balancer give exactly 1,600 rows;
- `kill -9` of one replica under load: every frame answered 200 has its row, HAProxy marks the dead replica down
  within its check interval and routes nothing to it afterwards, and only frames in flight at the kill fail;
- a promotion made through one replica, and a rollback, are served by every live replica within the poll
  interval (plus loading the model), while frames keep being answered;
- a frame archived by one replica is shown by another.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from benchmarks.haproxy_config import haproxy_config
from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from inspection.storage.schema import Inspection
from models import registry
from models.artifacts import EVALUATION_DIR, ONNX_DIR
from models.promotion import rollback
from models.serving_choice import serving_file
from tests.conftest import REPO, S3_BUCKET, free_port, running_mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PRODUCT = "scaled"
REPLICAS = 3
CAMERAS = 8
FRAMES_PER_CAMERA = 200
POLL_S = 1.0  # INSPECTION_MODEL_POLL_SECONDS of the replicas
CHECK_INTER_S, CHECK_FALL = 0.5, 2  # HAProxy: a replica is down after FALL failed checks INTER apart
# Loading a new champion after the poll noticed it: the ONNX file's download and an ONNX Runtime session, on two
# cores shared with three replicas, the load, HAProxy, MLflow and PostgreSQL.
LOAD_SLACK_S = 10.0


@dataclass
class Replica:
    name: str
    url: str
    home: Path
    process: subprocess.Popen[bytes]


@dataclass
class Cluster:
    lb_url: str
    stats_url: str
    replicas: list[Replica]
    database_url: str
    settings: Settings  # a client's view of the shared registry (its own empty home)
    camera_key: str
    qa_key: str

    def server_stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's view of each replica: status (UP / DOWN) and stot (requests sent to it)."""
        text = httpx.get(f"{self.stats_url};csv", timeout=5).text.lstrip("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == "replicas"}

    def served_versions(self) -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for replica in self.replicas:
            if replica.process.poll() is not None:
                continue
            try:
                found[replica.name] = httpx.get(f"{replica.url}/readyz", timeout=5).json()["models"].get(PRODUCT)
            except httpx.HTTPError:
                found[replica.name] = None
        return found


@dataclass
class LoadResult:
    answers: list[tuple[float, int, str | None]] = field(default_factory=list)  # (time, status, inspection id)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok_ids(self) -> set[str]:
        return {i for _, status, i in self.answers if status == 200 and i}

    def failures(self) -> list[tuple[float, int, str | None]]:
        return [a for a in self.answers if a[1] != 200]


def _stage_version(trained: Settings, product: str, staging: Path) -> Path:
    """What a replica needs of the session's exported version: the ONNX files and the evaluation report."""
    artifacts = registry.resolve_version(trained, product).artifacts
    if serving_file(artifacts) is None:
        from training.export_pipeline import export_product

        export_product(trained, product)
    shutil.copytree(artifacts / ONNX_DIR, staging / ONNX_DIR)
    shutil.copytree(artifacts / EVALUATION_DIR, staging / EVALUATION_DIR)
    return staging


def _register(settings: Settings, staging: Path) -> int:
    """Upload the staged files as a new run's model and register them, published, as a version of PRODUCT."""
    client = registry.mlflow_client(settings)
    found = client.get_experiment_by_name(PRODUCT)
    run = client.create_run(found.experiment_id if found else client.create_experiment(PRODUCT))
    client.log_artifacts(run.info.run_id, str(staging), artifact_path="model")
    client.set_terminated(run.info.run_id)
    version = registry.register_version(settings, PRODUCT, run.info.run_id, f"{run.info.artifact_uri}/model", {})
    registry.mark_artifacts_published(settings, PRODUCT, version)
    return version


def _wait(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> float:
    """Seconds until condition() held; fails the test after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)
    return time.monotonic() - started


def _start_replica(name: str, home: Path, env: dict[str, str]) -> Replica:
    port = free_port()
    home.mkdir(parents=True)
    log = (home / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "INSPECTION_HOME": str(home)},
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Replica(name, f"http://127.0.0.1:{port}", home, process)


def _ready(replica: Replica) -> bool:
    if replica.process.poll() is not None:
        raise AssertionError(f"{replica.name} exited: {(replica.home / 'serve.log').read_text()[-3000:]}")
    try:
        return httpx.get(f"{replica.url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def _cluster(
    tmp_path: Path, trained: Settings, product: str, postgres_url: str, s3_endpoint: str, mlflow_template: Path
) -> Iterator[Cluster]:
    staging = _stage_version(trained, product, tmp_path / "staging")
    with running_mlflow_server(tmp_path / "mlflow", mlflow_template) as mlflow:
        client_settings = Settings(home=tmp_path / "client", mlflow_tracking_uri=mlflow.url)
        _register(client_settings, staging)
        env = {
            **os.environ,
            "INSPECTION_DATABASE_URL": postgres_url,
            "INSPECTION_MLFLOW_TRACKING_URI": mlflow.url,
            "INSPECTION_ARCHIVE_URL": f"s3://{S3_BUCKET}/scale-out",
            "INSPECTION_S3_ENDPOINT_URL": s3_endpoint,
            "INSPECTION_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test-key",
            "AWS_SECRET_ACCESS_KEY": "test-secret",
            "INSPECTION_MODEL_POLL_SECONDS": str(POLL_S),
            "INSPECTION_CONFIGS_DIR": str(trained.configs_dir),
        }
        # All three start at once against the empty database: the migration lock is part of what is tested.
        replicas = [_start_replica(f"r{i}", tmp_path / f"replica-{i}", env) for i in range(1, REPLICAS + 1)]
        haproxy = None
        try:
            for replica in replicas:
                _wait(lambda r=replica: _ready(r), 120, f"{replica.name} ready", step=0.3)
            port, stats_port = free_port(), free_port()
            config = haproxy_config(
                port,
                [(r.name, r.url.removeprefix("http://")) for r in replicas],
                check_inter_ms=int(CHECK_INTER_S * 1000),
                fall=CHECK_FALL,
                connect_timeout_ms=1000,
                stats_port=stats_port,
            )
            (tmp_path / "haproxy.cfg").write_text(config)
            haproxy = subprocess.Popen(
                [shutil.which("haproxy") or "haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            sessions = open_database(postgres_url)
            cluster = Cluster(
                lb_url=f"http://127.0.0.1:{port}",
                stats_url=f"http://127.0.0.1:{stats_port}/stats",
                replicas=replicas,
                database_url=postgres_url,
                settings=client_settings,
                camera_key=create_api_key(sessions, "camera", "scale-out cameras"),
                qa_key=create_api_key(sessions, "qa", "scale-out qa"),
            )
            _wait(lambda: _all_up(cluster), 30, "HAProxy sees every replica up")
            yield cluster
        finally:
            if haproxy is not None:
                haproxy.terminate()
                haproxy.wait(timeout=10)
            for replica in replicas:
                if replica.process.poll() is None:
                    replica.process.terminate()
            for replica in replicas:
                replica.process.wait(timeout=30)


def _all_up(cluster: Cluster) -> bool:
    try:
        stats = cluster.server_stats()
    except httpx.HTTPError:
        return False
    return len(stats) > REPLICAS and all(s["status"] == "UP" for s in stats.values())


def _frames(trained: Settings, product: str) -> list[bytes]:
    root = trained.dataset_dir(product)
    paths = sorted((root / "good").glob("*.png"))[:12] + sorted(root.glob("[!g]*/*.png"))[:4]
    return [p.read_bytes() for p in paths]


def _camera(
    cluster: Cluster, camera: int, frames: list[bytes], n: int, tag: str, result: LoadResult, stop: threading.Event
) -> None:
    headers = {"X-API-Key": cluster.camera_key, "Content-Type": "image/png"}
    with httpx.Client(base_url=cluster.lb_url, headers=headers, timeout=30) as client:
        for i in range(n):
            if stop.is_set():
                return
            params = {"line_id": tag, "camera_id": f"cam-{camera}", "frame_id": f"{tag}-{camera}-{i}"}
            try:
                response = client.post(
                    f"/v1/inspect/{PRODUCT}", content=frames[(camera + i) % len(frames)], params=params
                )
                answer = (time.monotonic(), response.status_code, response.json().get("inspection_id"))
            except (httpx.HTTPError, ValueError):
                answer = (time.monotonic(), 0, None)  # no HTTP answer at all
            with result.lock:
                result.answers.append(answer)


def _run_cameras(
    cluster: Cluster, frames: list[bytes], n: int, tag: str, stop: threading.Event | None = None
) -> tuple[LoadResult, list[threading.Thread]]:
    result, stop = LoadResult(), stop or threading.Event()
    threads = [
        threading.Thread(target=_camera, args=(cluster, c, frames, n, tag, result, stop), daemon=True)
        for c in range(CAMERAS)
    ]
    for thread in threads:
        thread.start()
    return result, threads


def _rows(cluster: Cluster, tag: str) -> set[str]:
    sessions = open_database(cluster.database_url)
    with sessions() as session:
        return set(session.scalars(select(Inspection.id).where(Inspection.line_id == tag)))


@pytest.fixture
def cluster(
    tmp_path: Path, trained_product, postgres_url: str, s3_endpoint: str, mlflow_db_template: Path
) -> Iterator[Cluster]:
    trained, product = trained_product.settings, trained_product.product
    with _cluster(tmp_path, trained, product, postgres_url, s3_endpoint, mlflow_db_template) as running:
        yield running


def test_replicas_behind_haproxy(cluster: Cluster, trained_product, tmp_path: Path) -> None:
    frames = _frames(trained_product.settings, trained_product.product)

    # 1. 8 cameras x 200 frames through the load balancer: every one answered, exactly one row each.
    started = time.monotonic()
    result, threads = _run_cameras(cluster, frames, FRAMES_PER_CAMERA, "steady")
    for thread in threads:
        thread.join(timeout=300)
    steady_s = time.monotonic() - started
    assert len(result.answers) == CAMERAS * FRAMES_PER_CAMERA
    assert result.failures() == []
    assert _rows(cluster, "steady") == result.ok_ids()
    assert len(result.ok_ids()) == 1600
    spread = {name: int(s["stot"]) for name, s in cluster.server_stats().items() if name.startswith("r")}
    assert all(count > 100 for count in spread.values()), spread  # every replica took a share
    print(f"\n1,600 frames through HAProxy in {steady_s:.1f} s ({1600 / steady_s:.1f} frames/s); per replica {spread}")

    # 2. kill -9 of one replica under load.
    victim = cluster.replicas[-1]
    stop = threading.Event()
    result, threads = _run_cameras(cluster, frames, 10_000, "kill", stop)
    _wait(lambda: len(result.answers) >= 150, 120, "load under way")
    killed_at = time.monotonic()
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=10)
    down_after = _wait(lambda: cluster.server_stats()[victim.name]["status"].startswith("DOWN"), 10, "marked down")
    sent_when_down = int(cluster.server_stats()[victim.name]["stot"])
    answered_when_down = len(result.answers)
    _wait(lambda: len(result.answers) >= answered_when_down + 150, 120, "load goes on without the dead replica")
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    failures = result.failures()
    print(f"killed {victim.name}: down after {down_after:.2f} s, {len(failures)} of {len(result.answers)} failed")
    # Marked down within its checks: FALL failed checks INTER apart, plus one interval for the check in progress.
    assert down_after <= (CHECK_FALL + 1) * CHECK_INTER_S + 1.0
    assert int(cluster.server_stats()[victim.name]["stot"]) == sent_when_down  # nothing routed to it once down
    # Only the frames in flight at the kill failed: at most one per camera, all between the kill and the mark.
    assert len(failures) <= CAMERAS
    assert all(killed_at <= at <= killed_at + down_after + 1.0 for at, _, _ in failures)
    rows = _rows(cluster, "kill")
    assert result.ok_ids() <= rows  # every frame answered 200 has its row
    assert len(rows - result.ok_ids()) <= len(failures)  # a row without an answer: stored, then its reply was lost

    # 3. A promotion through one replica reaches every live replica within the poll interval; frames keep flowing.
    live = [r for r in cluster.replicas if r.process.poll() is None]
    staged = _stage_version(trained_product.settings, trained_product.product, tmp_path / "staging-2")
    second = _register(cluster.settings, staged)
    stop = threading.Event()
    result, threads = _run_cameras(cluster, frames, 10_000, "promotion", stop)
    promoted = httpx.post(
        f"{live[0].url}/v1/products/{PRODUCT}/models/{second}/promote",
        headers={"X-API-Key": cluster.qa_key},
        json={},
        timeout=60,
    )
    assert promoted.status_code == 200, promoted.text
    reached = _wait(
        lambda: all(v == second for v in cluster.served_versions().values()), POLL_S + LOAD_SLACK_S, "promotion"
    )
    rollback(cluster.settings, PRODUCT)
    rolled_back = _wait(
        lambda: all(v == second - 1 for v in cluster.served_versions().values()), POLL_S + LOAD_SLACK_S, "rollback"
    )
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    print(
        f"promotion served by all {len(live)} live replicas after {reached:.2f} s, rollback after {rolled_back:.2f} s"
    )
    assert result.answers and result.failures() == []  # no frame dropped while the models changed
    assert _rows(cluster, "promotion") == result.ok_ids()

    # 4. A frame archived by one replica is shown by another (the archive is the object store).
    qa = {"X-API-Key": cluster.qa_key}
    answer = httpx.post(
        f"{live[0].url}/v1/inspect/{PRODUCT}",
        content=frames[-1],
        params={"heatmap": "true", "line_id": "archive"},
        headers={"X-API-Key": cluster.camera_key, "Content-Type": "image/png"},
        timeout=30,
    )
    assert answer.status_code == 200
    image = httpx.get(f"{live[1].url}/v1/inspections/{answer.json()['inspection_id']}/image", headers=qa, timeout=30)
    assert image.status_code == 200 and image.content == frames[-1]

    # 5. The audit over replicas sharing one database: QA audits everything for a moment (set through one replica,
    # followed by the others at their poll), so the audit's estimates over the shared rows must equal the truth.
    audit_rates = {"pass_rate": 1.0, "defect_rate": 1.0, "reason": "audit every frame for the test"}
    changed = httpx.put(f"{live[0].url}/v1/products/{PRODUCT}/audit", headers=qa, json=audit_rates, timeout=30)
    assert changed.status_code == 200, changed.text
    time.sleep(POLL_S + 1.0)
    labelled = _labelled_frames(trained_product.settings, trained_product.product)
    answers = []
    with httpx.Client(base_url=cluster.lb_url, timeout=30) as client:
        for index, (data, label) in enumerate(labelled * 2):
            response = client.post(
                f"/v1/inspect/{PRODUCT}",
                content=data,
                params={"line_id": "audit", "frame_id": f"audit-{index}"},
                headers={"X-API-Key": cluster.camera_key, "Content-Type": "image/png"},
            )
            assert response.status_code == 200 and response.json()["audit"] is True, response.text
            answers.append((response.json(), label))
        for answer, label in answers:
            labelled_ok = client.post(
                f"/v1/inspections/{answer['inspection_id']}/feedback", headers=qa, json={"label": label}
            )
            assert labelled_ok.status_code == 200, labelled_ok.text
        totals = client.get("/v1/stats", params={"line": "audit"}, headers=qa).json()["totals"]
    defective = [a["verdict"] for a, label in answers if label != "good"]
    good = [a["verdict"] for a, label in answers if label == "good"]
    audit = totals["audit"]
    assert audit["n_selected"] == audit["n_audited"] == len(answers) and audit["backlog"] == 0
    assert audit["miss_rate"]["estimate"] == pytest.approx(defective.count("pass") / len(defective))
    assert audit["false_detection_rate"]["estimate"] == pytest.approx(good.count("defect") / len(good))


def _labelled_frames(trained: Settings, product: str) -> list[tuple[bytes, str]]:
    """Good frames and frames of each defect type with their true labels (the feedback QA would give)."""
    root = trained.dataset_dir(product)
    good = [(p.read_bytes(), "good") for p in sorted((root / "good").glob("*.png"))[:6]]
    defects = [(p.read_bytes(), p.parent.name) for p in sorted(root.glob("[!gm]*/*.png"))[:6]]
    return good + defects
