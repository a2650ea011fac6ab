"""`inspection demo` end to end on the session's synthetic product: a real server process, two camera lines,
QA feedback, and live rates that match what the database holds. (ELPV import and training are what `make demo`
adds; here the product is already trained, which the demo detects and reuses.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.demo import held_out_frames
from cli.main import app
from inspection.storage.database import open_database
from inspection.storage.inspections import InspectionFilter, list_inspections
from inspection.storage.stats import compute_stats

pytestmark = pytest.mark.slow


def _camera_counts(output: str, line: str) -> list[int]:
    """sent, answered, errors, dropped of one line, from the demo's camera table."""
    cell = r"[\s│]+(\d+)"  # rich draws the table's column rules with │
    found = re.search(line + cell * 4, output)
    assert found is not None, output
    return [int(n) for n in found.groups()]


def test_demo_streams_the_held_out_frames_and_reports_the_rates_the_server_measured(
    trained_product, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, product = trained_product.settings, trained_product.product
    database = f"sqlite:///{tmp_path / 'demo.db'}"  # its own rows: other tests share the trained home
    monkeypatch.setenv("INSPECTION_HOME", str(settings.home))
    monkeypatch.setenv("INSPECTION_CONFIGS_DIR", str(settings.configs_dir))
    monkeypatch.setenv("INSPECTION_DATABASE_URL", database)
    monkeypatch.setenv("COLUMNS", "200")

    result = CliRunner().invoke(
        app, ["demo", "--product", product, "--fps", "10", "--feedback-fraction", "0.5", "--port", "0", "--no-hold"]
    )
    assert result.exit_code == 0, result.output

    frames = held_out_frames(settings, product)
    sessions = open_database(database)
    rows, total = list_inspections(sessions, InspectionFilter(product=product), limit=500)
    # Every frame is sent, answered or dropped (when the server falls behind, as a camera would); every
    # answered frame is one row.
    counts = {line: _camera_counts(result.output, line) for line in ("line-1", "line-2")}
    assert sum(sent + dropped for sent, _, _, dropped in counts.values()) == len(frames)
    assert total == sum(answered for _, answered, _, _ in counts.values()) > len(frames) / 2
    assert {row.line_id for row in rows} == {"line-1", "line-2"}
    assert {row.frame_id for row in rows} <= {path.name for path, _ in frames}
    labels = {path.name: label for path, label in frames}
    reviewed = [row for row in rows if row.feedback_label is not None]
    assert len(reviewed) == round(0.5 * total)
    assert all(row.feedback_label == labels[row.frame_id] for row in reviewed)  # QA gave the true labels

    qa = compute_stats(sessions, product=product)["totals"]["qa"]
    for name, key in (("miss rate", "miss_rate"), ("false-detection rate", "false_detection_rate")):
        rate = qa[key]
        printed = re.search(rf"{name}\s.*?(\d+)/(\d+)", result.output)
        assert printed is not None, result.output
        assert (int(printed.group(1)), int(printed.group(2))) == (rate["k"], rate["n"])
    assert "dashboard: http://127.0.0.1:" in result.output
