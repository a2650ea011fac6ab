"""Schemathesis against a real server on SQLite and on PostgreSQL, with a camera, a QA and a manager key: every
answer must be documented by the OpenAPI schema and none may be a server error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveServer

CONFIG = Path(__file__).with_name("schemathesis.toml")  # what a schema cannot say, per operation
MAX_EXAMPLES = 10  # per operation and key: the runs stay within about a minute on two cores
SEED = 29
ROLES = ("camera", "qa", "manager")
# The dashboard's static files and the Prometheus text are not API answers the schema describes field by field.
EXCLUDED_PATHS = r"^/(metrics|static/.*|dashboard.*)?$"


def run_schemathesis(server: LiveServer, role: str, report: Path) -> dict[str, object]:
    """One Schemathesis run with `role`'s key; the JSON run report's summary."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        f"--config-file={CONFIG}",
        "run",
        f"{server.url}/openapi.json",
        "--checks=all",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--workers=1",
        "--phases=examples,fuzzing",
        "--no-shrink",
        "--suppress-health-check=all",
        f"--exclude-path-regex={EXCLUDED_PATHS}",
        "--request-timeout=30",
        "--report=json",
        f"--report-json-path={report}",
        "-H",
        f"X-API-Key: {server.keys[role]}",
    ]
    # In tmp_path: the CLI keeps a cache folder in its working directory.
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=report.parent)
    assert done.returncode == 0, f"schemathesis with the {role} key:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    counts = [line.strip() for line in done.stdout.splitlines() if " generated, " in line]
    print(f"{role}: {counts[-1] if counts else '?'}")  # shown with -s: the run's numbers
    return json.loads(report.read_text())


def assert_clean(server: LiveServer, tmp_path: Path) -> None:
    for role in ROLES:
        run_schemathesis(server, role, tmp_path / f"{role}.json")


def test_schemathesis_sqlite(live_server: LiveServer, tmp_path: Path) -> None:
    assert_clean(live_server, tmp_path)


@pytest.mark.postgres
def test_schemathesis_postgres(postgres_server: LiveServer, tmp_path: Path) -> None:
    assert_clean(postgres_server, tmp_path)
