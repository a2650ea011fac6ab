"""A real server killed with SIGKILL under concurrent load (frames and late QA feedback): every row that reached
the database is counted in the rollups (and the minute counts) and nothing else is, since rows and their counts
share one transaction."""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from benchmarks.server_load import free_port, kill_process_group, start_process
from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from inspection.storage.minute_counts import minute_differences
from inspection.storage.rollups import ROLLUPS, recount_differences
from inspection.storage.schema import Inspection
from tests.serving.test_server import _frame
from tools.home_copy import copy_home

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CAMERAS = 6
LOAD_SECONDS = 4.0


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sigkill_under_load_leaves_rollups_equal_to_a_recount(
    trained_product, tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    from training.export_pipeline import export_product

    base = trained_product.settings
    export_product(base, trained_product.product)
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    settings = Settings(home=tmp_path / "var", configs_dir=base.configs_dir, device="cpu", database_url=url)
    # The trained model, without the trained home's database (a private one per test, killed mid-write).
    copy_home(base, settings, [p.name for p in base.home.iterdir() if not p.name.startswith("inspection.db")])
    sessions = open_database(settings.resolved_database_url)
    keys = {role: create_api_key(sessions, role, f"kill9 {role}") for role in ("camera", "qa")}
    env = {
        **os.environ,
        "INSPECTION_HOME": str(settings.home),
        "INSPECTION_CONFIGS_DIR": str(settings.configs_dir),
        **({"INSPECTION_DATABASE_URL": url} if url else {}),
    }
    port = free_port()
    process = start_process([sys.executable, "-m", "cli.main", "serve", "--port", str(port)], env, port, REPO)
    base_url = f"http://127.0.0.1:{port}"
    frames = [_frame(seed) for seed in range(8)]
    answered: list[str] = []
    refused: list[int] = []
    stop = threading.Event()

    def camera(index: int) -> None:
        with httpx.Client(base_url=base_url, headers={"X-API-Key": keys["camera"]}, timeout=10) as client:
            i = 0
            while not stop.is_set():
                try:
                    response = client.post(
                        f"/v1/inspect/{trained_product.product}?line_id=line-{index % 3}&camera_id=cam-{index}",
                        content=frames[i % len(frames)],
                        headers={"Content-Type": "image/png"},
                    )
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 200:
                    answered.append(response.json()["inspection_id"])
                else:
                    refused.append(response.status_code)
                i += 1

    def qa() -> None:  # late feedback moving counts between label cells while the server dies
        with httpx.Client(base_url=base_url, headers={"X-API-Key": keys["qa"]}, timeout=10) as client:
            i = 0
            while not stop.is_set():
                if len(answered) > i:
                    try:
                        client.post(f"/v1/inspections/{answered[i]}/feedback", json={"label": "good"})
                        client.post(f"/v1/inspections/{answered[i]}/feedback", json={"label": "good"})
                    except httpx.HTTPError:
                        return
                    i += 2
                else:
                    time.sleep(0.01)

    threads = [threading.Thread(target=camera, args=(index,)) for index in range(CAMERAS)]
    threads.append(threading.Thread(target=qa))
    for thread in threads:
        thread.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 60 and (len(answered) < 50 or time.monotonic() - started < LOAD_SECONDS):
            time.sleep(0.05)
        kill_process_group(process)  # SIGKILL, mid-load: requests in flight, a group commit perhaps half done
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        if process.poll() is None:
            kill_process_group(process)
    assert len(answered) >= 50, refused[:5]
    sessions = open_database(settings.resolved_database_url)  # reopened after the crash (SQLite: WAL recovery)
    with sessions() as session:
        stored = session.scalar(select(func.count()).select_from(Inspection)) or 0
        counted = session.scalar(select(func.coalesce(func.sum(ROLLUPS.c.n), 0))) or 0
        labelled = session.scalar(select(func.count()).where(Inspection.feedback_label.is_not(None))) or 0
    assert stored >= len(answered)  # an answer waits for its row's commit
    assert labelled > 0
    assert counted == stored
    assert recount_differences(sessions) == []
    assert minute_differences(sessions, since=datetime.now(UTC) - timedelta(hours=1)) == []
