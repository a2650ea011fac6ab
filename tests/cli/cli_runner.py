"""`inspection` as a user runs it, for the CLI tests: a real subprocess on a test's own INSPECTION_HOME."""

from __future__ import annotations

import os
import subprocess
import sys

from inspection.settings import Settings


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`inspection ARGS` in a subprocess on `settings`' home and configs, on the CPU, its output captured."""
    env = {
        **os.environ,
        "INSPECTION_HOME": str(settings.home),
        "INSPECTION_CONFIGS_DIR": str(settings.configs_dir),
        "INSPECTION_DEVICE": "cpu",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True, timeout=600
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    """A user's error: exit status 2, the message says `fragment`, and no traceback."""
    assert result.returncode == 2, result
    output = result.stdout + result.stderr
    assert fragment in output
    assert "Traceback" not in output
