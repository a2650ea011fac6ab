"""`inspection datasets ...`: import, generate and inspect per-product datasets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import console, settings_from_env
from inspection.names import validate_product_name

datasets_app = typer.Typer(help="Import, generate and inspect per-product datasets.", no_args_is_help=True)
import_app = typer.Typer(help="Import labeled images into a product's dataset.", no_args_is_help=True)
datasets_app.add_typer(import_app, name="import")

Product = Annotated[str, typer.Option("--product", "-p", help="Product name (lower-case [a-z0-9_-]).")]
Replace = Annotated[bool, typer.Option("--replace", help="Replace an existing dataset of this product.")]


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


def _run_import(product: str, run: Callable[..., Any]) -> None:
    """Validate the name, run an importer into the product's dataset folder with a progress bar, print the result."""
    from inspection.progress import progress_task

    settings = settings_from_env()
    validate_product_name(product)
    with progress_task(f"importing {product}") as advance:
        report = run(
            settings.dataset_dir(product),
            on_progress=advance,
            on_total=advance.set_total,  # type: ignore[attr-defined]
        )
    _print_import(report)


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

    _run_import(
        product,
        lambda dest, **progress: import_folder(
            src, dest, product, group_pattern=group_pattern, replace=replace, **progress
        ),
    )


@import_app.command("elpv")
def import_elpv_cmd(
    product: Annotated[str, typer.Option("--product", "-p", help="Product name.")] = "solar-cells",
    replace: Replace = False,
    limit: Annotated[int | None, typer.Option(help="Import only the first N cells (quick trials).")] = None,
) -> None:
    """Import the 2,624 ELPV solar-cell images (defect probability >= 0.5 is 'defect')."""
    from datasets.importers.elpv import import_elpv

    _run_import(product, lambda dest, **progress: import_elpv(dest, product, replace=replace, limit=limit, **progress))


SKIPPED_SHOWN = 20  # a long outage can skip thousands of frames; the first ones and the totals say enough


def _print_reviewed(report: object) -> None:
    """The reviewed-frame import as tables: what was added per label, what happened to the rest, and why."""
    from datasets.importers.reviewed import ReviewedImportReport

    assert isinstance(report, ReviewedImportReport)
    # The path goes on its own line: a two-column table would wrap a long title into a narrow column.
    console.print(f"reviewed frames of {report.product} into {report.root}")
    table = Table(title="imported")
    table.add_column("label")
    table.add_column("imported", justify="right")
    for label, count in sorted(report.imported.items()):
        table.add_row(label, str(count))
    table.add_row("[bold]total[/]", str(report.total_imported))
    console.print(table)
    summary = Table(title="reviewed frames")
    summary.add_column("outcome")
    summary.add_column("frames", justify="right")
    summary.add_row("already present", str(report.already_present))
    summary.add_row("relabelled (moved to the new QA label)", str(report.relabelled))
    summary.add_row("repaired (image found without metadata)", str(report.repaired))
    summary.add_row("skipped", str(len(report.skipped)))
    # Reviewed frames never enter test or validation; `recent` is never trained on.
    state = "frozen split" if report.splits_frozen else "split not frozen yet (first training run will)"
    for side in ("recent", "train"):
        summary.add_row(f"reviewed images now in {side} ({state})", str(report.sides.get(side, 0)))
    console.print(summary)
    for inspection_id, reason in report.skipped[:SKIPPED_SHOWN]:
        console.print(f"[yellow]skipped[/] {inspection_id}: {reason}")
    if len(report.skipped) > SKIPPED_SHOWN:
        console.print(f"[yellow]... and {len(report.skipped) - SKIPPED_SHOWN} more skipped[/]")


@import_app.command("reviewed")
def import_reviewed_cmd(
    product: Annotated[str, typer.Argument(help="Product name; its base dataset must already be imported.")],
    since: Annotated[
        str | None,
        typer.Option(
            help="Only frames whose QA feedback was given at or after this date or ISO 8601 datetime "
            "(feedback time, not capture time; UTC without an offset)."
        ),
    ] = None,
) -> None:
    """Add QA-labelled archived frames of PRODUCT to its dataset under the QA label (never to the test split)."""
    from datasets.importers.reviewed import import_reviewed, parse_since
    from inspection.progress import progress_task
    from inspection.storage.database import open_database

    settings = settings_from_env()
    validate_product_name(product)
    start = parse_since(since) if since is not None else None
    sessions = open_database(settings.resolved_database_url)
    with progress_task(f"importing reviewed frames of {product}") as advance:
        report = import_reviewed(
            settings,
            sessions,
            product,
            since=start,
            on_progress=advance,
            on_total=advance.set_total,  # type: ignore[attr-defined]
        )
    _print_reviewed(report)


@datasets_app.command("synth")
def synth_cmd(
    product: Product,
    n: Annotated[int, typer.Option("--n", help="Number of images.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    color: Annotated[bool, typer.Option("--color/--gray", help="Color or grayscale parts.")] = False,
    image_size: Annotated[
        int, typer.Option("--image-size", "--size", help="Side of the square images in pixels.")
    ] = 128,
    small_defects: Annotated[
        int | None,
        typer.Option(help="Large-frame product: gray frames whose defects are at most this many pixels across."),
    ] = None,
    replace: Replace = False,
) -> None:
    """Generate a synthetic product (textured parts with scratches, spots, cracks, stains and their masks)."""
    from datasets.staging import staged_dataset
    from datasets.synth import generate_synthetic_product
    from datasets.synth_large import generate_large_frame_product
    from inspection.progress import progress_task

    settings = settings_from_env()
    validate_product_name(product)
    with (
        staged_dataset(settings.dataset_dir(product), replace=replace) as staging,
        progress_task(f"generating {product}", n) as advance,
    ):
        if small_defects is not None:
            try:
                summary = generate_large_frame_product(
                    staging / "images", n, seed=seed, size=image_size, max_defect_px=small_defects, on_progress=advance
                )
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from exc
        else:
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
    from datasets.splits import SPLITS_FILE, is_reviewed

    settings = settings_from_env()
    validate_product_name(product)
    root = settings.dataset_dir(product)
    records = scan_dataset(root)
    split_of: dict[str, str] = {}
    if (root / SPLITS_FILE).exists():
        split_of = json.loads((root / SPLITS_FILE).read_text())["assignment"]
    table = Table(title=f"dataset {product}: {len(records)} images at {root}")
    sides = ("train", "val", "test", "recent")  # recent: QA-reviewed line frames, never trained on
    for column in ("label", "images", "masks", *sides):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, count in label_counts(records).items():
        of_label = [r for r in records if r.label == label]
        side_of = [split_of.get(r.relpath, "-") for r in of_label]
        table.add_row(
            label,
            str(count),
            str(sum(r.mask is not None for r in of_label)),
            *(str(side_of.count(s)) if split_of else "-" for s in sides),
        )
    console.print(table)
    if not split_of:
        console.print("no split yet: the first `inspection train` freezes one")
    reviewed = [r for r in records if is_reviewed(r)]
    groups = {r.group for r in records if r.group and not is_reviewed(r)}
    if groups:
        console.print(f"{len(groups)} part groups")
    if reviewed:
        console.print(f"{len(reviewed)} QA-reviewed line frames (never in test; `recent` is never trained on)")
