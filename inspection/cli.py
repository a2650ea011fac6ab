"""The `inspection` command: the one composition root that wires datasets, models, training and serving.

Heavy modules (torch, MLflow) are imported inside the commands so `inspection --help` answers at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from inspection.errors import InspectionError
from inspection.names import validate_product_name
from inspection.progress import console as log_console
from inspection.settings import Settings, load_settings

# Results (tables, reports) go to stdout so they can be piped; progress and logs go to stderr.
console = Console()

app = typer.Typer(help="Defect inspection for production lines.", no_args_is_help=True, pretty_exceptions_enable=False)
datasets_app = typer.Typer(help="Import, generate and inspect per-product datasets.", no_args_is_help=True)
import_app = typer.Typer(help="Import labeled images into a product's dataset.", no_args_is_help=True)
models_app = typer.Typer(help="The per-product model registry.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
datasets_app.add_typer(import_app, name="import")
app.add_typer(models_app, name="models")

Product = Annotated[str, typer.Option("--product", "-p", help="Product name (lower-case [a-z0-9_-]).")]
Replace = Annotated[bool, typer.Option("--replace", help="Replace an existing dataset of this product.")]


def _settings() -> Settings:
    return load_settings()


def _print_import(report: object) -> None:
    from datasets.importers.folder import ImportReport

    assert isinstance(report, ImportReport)
    table = Table(title=f"dataset {report.product} at {report.root}")
    table.add_column("label")
    table.add_column("images", justify="right")
    for label, count in report.counts.items():
        table.add_row(label, str(count))
    console.print(table)
    if report.masks:
        console.print(f"{report.masks} masks imported")
    for path, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}")


@import_app.command("folder")
def import_folder_cmd(
    src: Annotated[Path, typer.Argument(help="Folder with one sub-folder per label (good, <defect type>).")],
    product: Product,
    group_pattern: Annotated[
        str | None, typer.Option(help="Regex on the file stem whose first group names the physical part.")
    ] = None,
    replace: Replace = False,
) -> None:
    """Import SRC (<label>/<image>, optional masks/<label>/<stem>.png); unreadable files are reported."""
    from datasets.importers.folder import import_folder
    from inspection.progress import progress_task

    settings = _settings()
    validate_product_name(product)
    with progress_task(f"importing {product}") as advance:
        report = import_folder(
            src,
            settings.dataset_dir(product),
            product,
            group_pattern=group_pattern,
            replace=replace,
            on_progress=advance,
            on_total=advance.set_total,  # type: ignore[attr-defined]
        )
    _print_import(report)


@import_app.command("elpv")
def import_elpv_cmd(
    product: Annotated[str, typer.Option("--product", "-p", help="Product name.")] = "solar-cells",
    replace: Replace = False,
    limit: Annotated[int | None, typer.Option(help="Import only the first N cells (quick trials).")] = None,
) -> None:
    """Import the 2,624 ELPV solar-cell images (defect probability >= 0.5 is 'defect')."""
    from datasets.importers.elpv import import_elpv
    from inspection.progress import progress_task

    settings = _settings()
    validate_product_name(product)
    with progress_task(f"importing {product}") as advance:
        report = import_elpv(
            settings.dataset_dir(product),
            product,
            replace=replace,
            limit=limit,
            on_progress=advance,
            on_total=advance.set_total,  # type: ignore[attr-defined]
        )
    _print_import(report)


@datasets_app.command("synth")
def synth_cmd(
    product: Product,
    n: Annotated[int, typer.Option("--n", help="Number of images.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    color: Annotated[bool, typer.Option("--color/--gray", help="Color or grayscale parts.")] = False,
    image_size: Annotated[int, typer.Option(help="Side of the square images in pixels.")] = 128,
    replace: Replace = False,
) -> None:
    """Generate a synthetic product (textured parts with scratches, spots, cracks, stains and their masks)."""
    from datasets.staging import staged_dataset
    from datasets.synth import generate_synthetic_product
    from inspection.progress import progress_task

    settings = _settings()
    validate_product_name(product)
    with (
        staged_dataset(settings.dataset_dir(product), replace=replace) as staging,
        progress_task(f"generating {product}", n) as advance,
    ):
        summary = generate_synthetic_product(
            staging / "images", n, seed=seed, color=color, image_size=image_size, on_progress=advance
        )
        for child in summary.root.iterdir():
            child.rename(staging / child.name)
        summary.root.rmdir()
    console.print(f"synthetic product {product}: {summary.counts}")


@datasets_app.command("show")
def show_cmd(product: Annotated[str, typer.Argument(help="Product name.")]) -> None:
    """Counts per label and split, masks, and metadata of a product's dataset."""
    from datasets.layout import label_counts, scan_dataset
    from datasets.splits import SPLITS_FILE

    settings = _settings()
    validate_product_name(product)
    root = settings.dataset_dir(product)
    records = scan_dataset(root)
    split_of: dict[str, str] = {}
    if (root / SPLITS_FILE).exists():
        split_of = json.loads((root / SPLITS_FILE).read_text())["assignment"]
    table = Table(title=f"dataset {product}: {len(records)} images at {root}")
    for column in ("label", "images", "masks", "train", "val", "test"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, count in label_counts(records).items():
        of_label = [r for r in records if r.label == label]
        sides = [split_of.get(r.relpath, "-") for r in of_label]
        table.add_row(
            label,
            str(count),
            str(sum(r.mask is not None for r in of_label)),
            *(str(sides.count(s)) if split_of else "-" for s in ("train", "val", "test")),
        )
    console.print(table)
    if not split_of:
        console.print("no split yet: the first `inspection train` freezes one")
    groups = {r.group for r in records if r.group}
    if groups:
        console.print(f"{len(groups)} part groups")


@app.command("train")
def train_cmd(
    product: Annotated[str, typer.Argument(help="Product name.")],
    epochs: Annotated[int | None, typer.Option(help="Override the configured number of epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the configured seed.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last epoch checkpoint.")] = False,
) -> None:
    """Train, calibrate the threshold to the target miss rate, evaluate on the test split, register a version."""
    from training.pipeline import train_product

    settings = _settings()
    validate_product_name(product)
    outcome = train_product(settings, product, epochs=epochs, seed=seed, resume=resume)
    _print_report(outcome.report)
    console.print(f"registered {product} version {outcome.version} in {outcome.seconds:.0f} s")


@app.command("evaluate")
def evaluate_cmd(
    product: Annotated[str, typer.Argument(help="Product name.")],
    data: Annotated[Path | None, typer.Option(help="External labeled folder instead of the test split.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report to this file.")] = None,
    version: Annotated[int | None, typer.Option(help="Model version (default: the champion).")] = None,
) -> None:
    """Evaluate a model: miss and false-detection rates with Wilson 95% intervals, AUROC, per type; plots."""
    from datasets.layout import write_atomic_text
    from training.evaluate_product import evaluate_product

    settings = _settings()
    validate_product_name(product)
    report, paths = evaluate_product(settings, product, data_dir=data, version=version)
    _print_report(report)
    if json_path is not None:
        write_atomic_text(json_path, json.dumps(report, indent=2))
    console.print("written: " + ", ".join(str(p) for p in paths.values()))


@models_app.command("list")
def models_list_cmd(product: Annotated[str, typer.Argument(help="Product name.")]) -> None:
    """Registered versions of a product with their aliases."""
    from models.registry import list_versions

    settings = _settings()
    validate_product_name(product)
    table = Table(title=f"models of {product}")
    for column in ("version", "aliases", "threshold", "run"):
        table.add_column(column)
    for info in list_versions(settings, product):
        table.add_row(str(info.version), ",".join(info.aliases), info.tags.get("threshold", ""), info.run_id or "")
    console.print(table)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _print_report(report: dict) -> None:
    test = report["test"]
    table = Table(title=f"{report['product']} v{report['model_version']} on {report['data']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("95% interval / n", justify="right")
    ci = test["miss_rate_ci95"]
    table.add_row("miss rate", _pct(test["miss_rate"]), f"{_pct(ci[0])}–{_pct(ci[1])}, n={test['n_defect']}")
    ci = test["false_detection_rate_ci95"]
    table.add_row(
        "false-detection rate", _pct(test["false_detection_rate"]), f"{_pct(ci[0])}–{_pct(ci[1])}, n={test['n_good']}"
    )
    table.add_row("AUROC", "n/a" if test["auroc"] is None else f"{test['auroc']:.4f}", "")
    table.add_row("accuracy", _pct(test["accuracy"]), f"n={test['n_good'] + test['n_defect']}")
    table.add_row("threshold", f"{report['threshold']:.4f}", f"target miss {_pct(report['target_miss_rate'])}")
    for name, row in test["per_defect_type"].items():
        table.add_row(f"  miss rate: {name}", _pct(row["miss_rate"]), f"n={row['n']}")
    console.print(table)
    points = Table(title="operating points (thresholds chosen on validation)")
    for column in ("operating point", "threshold", "miss rate", "false detections", "accuracy"):
        points.add_column(column, justify="left" if column == "operating point" else "right")
    for name, point in report.get("operating_points", {}).items():
        points.add_row(
            name.replace("_", " "),
            f"{point['threshold']:.4f}",
            _pct(point["miss_rate"]),
            _pct(point["false_detection_rate"]),
            _pct(point["accuracy"]),
        )
    console.print(points)


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
