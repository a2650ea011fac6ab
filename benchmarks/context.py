"""State shared by the benchmarks of one `make bench` run (one temporary INSPECTION_HOME for ELPV)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inspection.settings import Settings


@dataclass
class BenchContext:
    configs_dir: Path
    workdir: Path
    elpv_trained: bool = False
    elpv_home: Path | None = None  # an existing home with solar-cells trained (e.g. after `make demo`)

    @property
    def elpv_settings(self) -> Settings:
        return Settings(home=self.elpv_home or self.workdir / "elpv-home", configs_dir=self.configs_dir)
