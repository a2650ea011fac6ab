"""`make bench` keeps what it measured when one benchmark crashes, and still fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import run
from benchmarks.context import BenchContext


def _measures(context: BenchContext) -> dict[str, Any]:
    return {"first_fps": 12.5}


def _crashes(context: BenchContext) -> dict[str, Any]:
    raise RuntimeError("the line lost frames")


def _measures_after(context: BenchContext) -> dict[str, Any]:
    return {"last_ratio": 1.1}


def test_a_crashing_benchmark_keeps_the_others_figures_and_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmarks = {"first": _measures, "crashing": _crashes, "last": _measures_after}
    monkeypatch.setattr(run, "BENCHMARKS", benchmarks)
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["run", "--out", str(out)])
    with pytest.raises(SystemExit, match="benchmarks failed: crashing"):
        run.main()
    assert json.loads(out.read_text()) == {"first_fps": 12.5, "last_ratio": 1.1, "failed": ["crashing"]}
