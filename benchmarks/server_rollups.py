"""`server_rollups_vs_off`: the real server's saturation frames/s with rollup upkeep on against off, in one run.

The same `inspection serve` on the same home, frames and lean client (benchmarks.compare_servers.measure), started
alternately with rollups kept (the default) and with `INSPECTION_ROLLUP_UPKEEP=false` (the measurement-only
switch, Settings.rollup_upkeep), `--rounds` times each, order swapped every round so drift within a round hits
both. The figure is the ratio of the mean frames/s; the CPU the row writer spent per frame is reported beside it.
"On" keeps the hourly rollups and the throughput chart's minute counts, "off" neither. Rows the "off" rounds stored
are not counted: the bench recounts them afterwards (`rebuild_rollups`, `rebuild_minute_counts`).

    python -m benchmarks.server_rollups --home /path/to/copied/elpv-home --rounds 3
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks.compare_servers import PRODUCT, Variant, measure
from benchmarks.context import BenchContext
from benchmarks.server_load import SATURATION_CLIENTS, camera_frames
from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from inspection.storage.minute_counts import minute_differences, rebuild_minute_counts
from inspection.storage.retention import rebuild_start
from inspection.storage.rollups import rebuild_rollups, recount_differences

REPO = Path(__file__).resolve().parents[1]
DAY = timedelta(days=1)


def server_rollups_vs_off(
    settings: Settings, rounds: int, seconds: float, clients: int = SATURATION_CLIENTS
) -> dict[str, float]:
    """Figures: mean saturation frames/s with rollups on and off, their ratio, and the writer's CPU per frame."""
    frames = camera_frames(settings, PRODUCT)
    sessions = open_database(settings.resolved_database_url)
    key = create_api_key(sessions, "camera", "server_rollups bench")
    on, off = Variant("on", REPO, {}), Variant("off", REPO, {"INSPECTION_ROLLUP_UPKEEP": "false"})
    measured: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    for round_number in range(1, rounds + 1):
        order = (on, off) if round_number % 2 else (off, on)
        for variant in order:
            figures = measure(variant, settings, frames, key, seconds, clients)
            measured[variant.name].append(figures)
            print(f"round {round_number} {variant.name}: {figures}", flush=True)
    result: dict[str, float] = {}
    for name, runs in measured.items():
        result[f"server_fps_rollups_{name}"] = round(float(np.mean([r["fps"] for r in runs])), 1)
        for part in ("server", "writer"):
            result[f"{part}_cpu_ms_per_frame_rollups_{name}"] = round(
                float(np.mean([r[f"{part}_cpu_ms_per_frame"] for r in runs])), 3
            )
    result["server_rollups_vs_off"] = round(result["server_fps_rollups_on"] / result["server_fps_rollups_off"], 3)
    # The same from the server's CPU per answered frame (off over on): on a machine where the server is CPU-bound
    # this is what saturation follows, and it drifts far less between rounds than frames/s does.
    result["server_rollups_vs_off_by_cpu"] = round(
        result["server_cpu_ms_per_frame_rollups_off"] / result["server_cpu_ms_per_frame_rollups_on"], 3
    )
    # And from the one thread rollups change: the row writer's extra CPU per frame, added to the server's CPU per
    # frame without rollups. The least noisy of the three on a shared machine.
    extra = result["writer_cpu_ms_per_frame_rollups_on"] - result["writer_cpu_ms_per_frame_rollups_off"]
    result["server_rollups_vs_off_by_writer_cpu"] = round(
        result["server_cpu_ms_per_frame_rollups_off"] / (result["server_cpu_ms_per_frame_rollups_off"] + extra), 3
    )
    # Per-round ratios (each on against the off of its own round): the spread says how much drift is in the mean.
    ratios = [a["fps"] / b["fps"] for a, b in zip(measured["on"], measured["off"], strict=True)]
    result["server_rollups_vs_off_min_round"] = round(min(ratios), 3)
    result["server_rollups_vs_off_max_round"] = round(max(ratios), 3)
    # The "off" rounds stored rows without counting them: recount, so the home's statistics stay right.
    since = rebuild_start(sessions)
    rebuild_rollups(sessions, since=since)
    rebuild_minute_counts(sessions)
    result["rollup_differences_after_rebuild"] = float(len(recount_differences(sessions, since)))
    result["minute_differences_after_rebuild"] = float(len(minute_differences(sessions, datetime.now(UTC) - DAY)))
    return result


def run(context: BenchContext, rounds: int = 4) -> dict[str, float]:
    """`make bench`'s entry: on the run's ELPV home (trained and exported first when this run has not)."""
    from benchmarks.elpv_training import PRODUCT as ELPV_PRODUCT
    from benchmarks.elpv_training import run as train_elpv
    from models.serving_choice import champion_model
    from training.export_pipeline import export_product

    if not context.elpv_trained:
        train_elpv(context)
    if champion_model(context.elpv_settings, ELPV_PRODUCT) is None:
        export_product(context.elpv_settings, ELPV_PRODUCT, int8=True)
    return server_rollups_vs_off(context.elpv_settings, rounds, seconds=8.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="a copied home, solar-cells exported")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=SATURATION_CLIENTS)
    args = parser.parse_args()
    settings = Settings(home=args.home.resolve(), configs_dir=(REPO / "configs").resolve())
    for name, value in server_rollups_vs_off(settings, args.rounds, args.seconds, args.clients).items():
        print(f"{name}: {value}", flush=True)


if __name__ == "__main__":
    main()
