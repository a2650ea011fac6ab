"""`make bench`: run every benchmark (or those named), print a table, write reports/bench.json."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import (
    anomaly_cost,
    drift_loop,
    elpv_training,
    few_shot,
    scale_out,
    scale_stats,
    server_rollups,
    tiling,
    untuned_defaults,
)
from benchmarks.context import BenchContext
from inspection.atomic import write_atomic_text

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS: dict[str, Callable[[BenchContext], dict[str, float]]] = {
    "elpv_training": elpv_training.run,
    "inference_speed": elpv_training.run_speed,
    "server_load": elpv_training.run_server_load,
    "untuned_defaults": untuned_defaults.run,
    "anomaly_cost": anomaly_cost.run,
    "few_shot": few_shot.run,
    "drift_loop": drift_loop.run,
    "scale_out": scale_out.run_bench,
    "scale_stats": scale_stats.run,
    "server_rollups": server_rollups.run,
    "tiling": tiling.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench.json")
    parser.add_argument(
        "--elpv-home", type=Path, default=None, help="reuse this INSPECTION_HOME's trained solar-cells (skips training)"
    )
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    figures: dict[str, float] = {}
    failed: list[str] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        context = BenchContext(configs_dir=REPO / "configs", workdir=Path(workdir), elpv_home=args.elpv_home)
        context.elpv_trained = args.elpv_home is not None
        for name in args.names or BENCHMARKS:
            # One benchmark's crash must not throw away the half hour of figures before it (a dropped frame in
            # drift_loop once did): it is reported, the others run, and the run fails at the end.
            try:
                figures.update(BENCHMARKS[name](context))
            except Exception:
                Console(stderr=True).print_exception()
                failed.append(name)
            write_atomic_text(args.out, json.dumps({**figures, "failed": failed}, indent=2) + "\n")
    table = Table(title=f"benchmarks ({args.out})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value}")
    Console().print(table)
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)} (tracebacks above; the other figures: {args.out})")


if __name__ == "__main__":
    main()
