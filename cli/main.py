"""The `inspection` command: the typer app that mounts the sibling command modules and wires every package.

Heavy modules (torch, MLflow) are imported inside the commands so `inspection --help` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.audit import audit_cmd
from cli.camera import camera_cmd
from cli.common import console, print_report, settings_from_env
from cli.datasets import datasets_app
from cli.db import db_app
from cli.demo import demo_cmd
from cli.keys import keys_app
from cli.models import models_app
from cli.stats import stats_cmd
from inspection.errors import InspectionError
from inspection.names import validate_product_name
from inspection.progress import console as log_console

# Measured on 2 cores (docs/decisions/0005-one-server-process-on-two-cores.md): see there before changing it.
DEFAULT_WORKERS = 1

app = typer.Typer(help="Defect inspection for production lines.", no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.command("stats")(stats_cmd)
app.command("audit")(audit_cmd)
app.command("demo")(demo_cmd)
app.command("camera")(camera_cmd)


@app.command("train")
def train_cmd(
    product: Annotated[str, typer.Argument(help="Product name.")],
    epochs: Annotated[int | None, typer.Option(help="Override the configured number of epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the configured seed.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last epoch checkpoint.")] = False,
) -> None:
    """Train, calibrate the threshold to the target miss rate, evaluate on the test split, register a version.

    Under torchrun (`torchrun --nproc_per_node=N --no-python inspection train P`) the N ranks train data-parallel
    and rank 0 alone does the rest."""
    from training.distributed import process_group
    from training.pipeline import train_product, train_share

    settings = settings_from_env()
    validate_product_name(product)
    with process_group(settings.device) as launch:
        if launch is not None and launch.rank > 0:
            train_share(settings, product, epochs=epochs, seed=seed, resume=resume)
            return
        outcome = train_product(settings, product, epochs=epochs, seed=seed, resume=resume)
    print_report(outcome.report)
    console.print(f"registered {product} version {outcome.version} in {outcome.seconds:.0f} s")


@app.command("evaluate")
def evaluate_cmd(
    product: Annotated[str, typer.Argument(help="Product name.")],
    data: Annotated[Path | None, typer.Option(help="External labeled folder instead of the test split.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report to this file.")] = None,
    version: Annotated[int | None, typer.Option(help="Model version (default: the champion).")] = None,
) -> None:
    """Evaluate a model: miss and false-detection rates with Wilson 95% intervals, AUROC, per type; plots."""
    from inspection.atomic import write_atomic_text
    from training.evaluate_product import evaluate_product

    settings = settings_from_env()
    validate_product_name(product)
    report, paths = evaluate_product(settings, product, data_dir=data, version=version)
    print_report(report)
    if json_path is not None:
        write_atomic_text(json_path, json.dumps(report, indent=2))
    console.print("written: " + ", ".join(str(p) for p in paths.values()))


@app.command("export")
def export_cmd(
    product: Annotated[str, typer.Argument(help="Product name.")],
    version: Annotated[int | None, typer.Option(help="Model version (default: the champion).")] = None,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also quantize to INT8, kept only if it keeps accuracy.")
    ] = False,
    int8_max_auroc_loss: Annotated[
        float,
        typer.Option(help="INT8 is kept only if the 95% upper bound of its paired AUROC loss is at most this."),
    ] = 0.005,
    int8_calibration: Annotated[
        str | None,
        typer.Option(help="Activation range calibration: minmax, entropy or percentile (default: percentile)."),
    ] = None,
    int8_calibration_images: Annotated[int, typer.Option(help="Training images to calibrate INT8 on.")] = 256,
) -> None:
    """Export to ONNX with graph optimization and a parity gate against PyTorch; optionally INT8."""
    from models.quantize import CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD
    from training.export_pipeline import Int8Options, export_product

    settings = settings_from_env()
    validate_product_name(product)
    calibration = int8_calibration or DEFAULT_CALIBRATION_METHOD
    if calibration not in CALIBRATION_METHODS:
        raise InspectionError(f"--int8-calibration must be one of {', '.join(CALIBRATION_METHODS)}")
    options = Int8Options(int8_max_auroc_loss, calibration, int8_calibration_images)
    outcome = export_product(settings, product, version=version, int8=int8, int8_options=options)
    table = Table(title=f"{product} v{outcome.version} exported")
    for column in ("model", "file", "size MB", "latency ms (batch 1)"):
        table.add_column(column)
    table.add_row(
        "fp32", str(outcome.fp32_path), f"{outcome.sizes_mb['fp32']:.1f}", f"{outcome.latency_ms_bs1['fp32']:.1f}"
    )
    if outcome.int8 is not None:
        table.add_row(
            "int8" + ("" if outcome.int8.accepted else " (refused)"),
            str(outcome.int8_path or "-"),
            f"{outcome.sizes_mb['int8']:.1f}",
            f"{outcome.latency_ms_bs1['int8']:.1f}",
        )
    console.print(table)
    console.print(
        f"parity max |onnx - torch| = {outcome.parity.max_abs_diff:.2e} on {outcome.parity.n_images} test images"
    )
    if outcome.int8 is not None:
        console.print(outcome.int8.reason)
    if outcome.threshold_note:
        console.print(outcome.threshold_note)


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="INSPECTION_WORKERS",
            help="Server processes on the one port, each with its own models and its share of the cores "
            "(INSPECTION_ENGINE_RUNNERS unless set). One was faster on 2 cores; see "
            "docs/decisions/0005-one-server-process-on-two-cores.md.",
        ),
    ] = DEFAULT_WORKERS,
    access_log: Annotated[
        bool, typer.Option(help="Log a line per HTTP request (every inspection is a database row regardless).")
    ] = False,
) -> None:
    """Run the inspection server (FastAPI + ONNX Runtime) for this INSPECTION_HOME."""
    import uvicorn

    from serving.app import create_app

    settings = settings_from_env()
    # Access lines are off by default: at 100 frames/s they are 8.6 million lines a day that repeat the
    # inspections table, and writing them costs the cores that score frames.
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=access_log)
        return
    from inspection.storage.database import make_engine, upgrade_schema

    # Once, here: N workers migrating one database at the same time would race on Alembic's version table.
    upgrade_schema(make_engine(settings.resolved_database_url))
    # The workers are fresh interpreters (spawned) that build their app from the environment; this is how they
    # get their share of the cores. Each polls the registry itself, so a promotion reaches every one of them.
    if not settings.engine_runners:
        os.environ["INSPECTION_ENGINE_RUNNERS"] = str(runners_per_worker(workers, settings.ort_threads))
    uvicorn.run(
        "serving.app:create_worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
    )


def runners_per_worker(workers: int, ort_threads: int, cores: int | None = None) -> int:
    """Engine runners per worker process: engine_runners' rule applied to the worker's share of the cores."""
    from serving.engine import engine_runners

    return engine_runners(0, ort_threads, cores=max(1, (cores or os.cpu_count() or 1) // workers))


def main() -> None:
    """Entry point: user errors become one clear line and exit status 2, never a traceback."""
    try:
        app()
    except InspectionError as exc:
        log_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except FileExistsError as exc:
        log_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
