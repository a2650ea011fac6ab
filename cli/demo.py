"""`inspection demo`: the whole story on real data, end to end, with the embedded defaults.

Import the ELPV solar cells, train a short schedule, export, start a server, set the product's audit rates,
stream the held-out cells through the camera client as two simulated lines, and label them as a plant's QA would:
every frame in the audit queue and every defect verdict, with the true label. Then print the miss and
false-detection rates three ways (cli.demo_rates): the server's audit estimate, the rate among the frames QA
labelled, and the truth. QA moves the operating point to a false-detection budget (cli.demo_operating_point), the
cells pass the line again, and the two points are shown side by side. Each step reuses what an earlier run left, so
a second run starts streaming within a minute.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import console, print_report, settings_from_env
from cli.demo_operating_point import (
    DEFAULT_FALSE_DETECTION_BUDGET,
    first_operating_point,
    move_operating_point,
    served_threshold_now,
    wait_until_served,
)
from cli.demo_rates import Truth, comparison_table, pass_truth, print_pass_rates
from cli.demo_server import DemoServer, start_server
from inspection.errors import InspectionError
from inspection.names import validate_product_name
from inspection.progress import console as log_console
from inspection.progress import progress_task
from inspection.settings import Settings

DEMO_PRODUCT = "solar-cells"
LINES = ("line-1", "line-2")
# The short schedule: 3 fine-tune epochs on trunk features of the clean images only (no augmented copies)
# trained ELPV in 280 s on 2 quiet cores, test AUROC 0.927 (with 3 augmented views: 0.932, 2.6x the cores' time).
DEMO_TRAIN_OVERRIDES = {"augmented_views": 1}
# A fifth of the passes, not the plant default of 5 %: at the calibrated point only about 200 of the 525 held-out
# cells pass, so a 5 % audit would hold about ten passes and bound nothing; a fifth gives about 40 audited passes
# (about 70 at the 10 % budget point), which a line collects at 5 % within a shift. Every defect verdict is
# audited, as by default: QA looks at each of them anyway.
DEMO_AUDIT_PASS_RATE = 0.20
PAGE = 500  # the API's largest page


def _step(text: str) -> None:
    log_console.rule(f"[bold]{text}")


def _ensure_dataset(settings: Settings, product: str) -> None:
    from datasets.importers.elpv import import_elpv
    from datasets.layout import label_counts, scan_dataset

    root = settings.dataset_dir(product)
    if root.exists() and scan_dataset(root):
        log_console.print(f"dataset {product} already imported: {label_counts(scan_dataset(root))}")
        return
    with progress_task(f"importing the ELPV solar cells as {product}") as advance:
        report = import_elpv(root, product, on_progress=advance, on_total=advance.set_total)  # type: ignore[attr-defined]
    log_console.print(f"imported {sum(report.counts.values())} cells: {report.counts}")


def _ensure_model(settings: Settings, product: str, epochs: int) -> None:
    from models import registry
    from models.serving_choice import champion_model
    from training.export_pipeline import export_product
    from training.pipeline import train_product

    champion = registry.champion(settings, product)
    if champion is None:
        trained = train_product(settings, product, epochs=epochs, train_overrides=DEMO_TRAIN_OVERRIDES)
        print_report(trained.report)
        log_console.print(f"trained {product} version {trained.version} in {trained.seconds:.0f} s")
    else:  # a new version goes through `inspection train` and the promotion gate, not through the demo
        log_console.print(f"serving the champion, {product} version {champion.version}, trained by an earlier run")
    if champion_model(settings, product) is None:
        exported = export_product(settings, product)
        log_console.print(f"exported version {exported.version}: {exported.fp32_path}")


def held_out_frames(settings: Settings, product: str) -> list[tuple[Path, str]]:
    """The frozen test split's images and true labels: frames no model version has trained on."""
    from datasets.layout import scan_dataset
    from datasets.splits import product_splits, split_records
    from inspection.product_config import load_product_config

    config = load_product_config(settings.configs_dir, product, {})
    root = settings.dataset_dir(product)
    records = scan_dataset(root)
    assignment = product_splits(root, records, config.split)
    return [(root / record.relpath, record.label) for record in split_records(records, assignment)["test"]]


def _line_folders(settings: Settings, frames: list[tuple[Path, str]]) -> dict[str, Path]:
    """Deal the held-out frames alternately to the simulated lines, as links in one folder per line."""
    base = settings.home / "demo" / "lines"
    folders = {line: base / line for line in LINES}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    for index, (path, _label) in enumerate(frames):
        (folders[LINES[index % len(LINES)]] / path.name).symlink_to(path.resolve())
    return folders


def _stream(server: DemoServer, product: str, folders: dict[str, Path], fps: float) -> list[Any]:
    """Both lines at `fps` each, in parallel; the answered frames of both."""
    from serving.camera_client import stream_frames

    results: list[Any] = []
    summaries: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(line: str) -> None:
        try:
            summaries[line] = stream_frames(
                folders[line],
                product=product,
                server=server.url,
                fps=fps,
                api_key=server.keys["camera"],
                concurrency=4,
                line_id=line,
                camera_id=f"{line}-cam-1",
                show_progress=line == LINES[0],  # one live display at a time
                keep_results=True,
            )
        except BaseException as error:  # re-raised in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(line,)) for line in LINES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    table = Table(title="camera clients")
    for column in ("line", "sent", "answered", "errors", "dropped", "fps", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for line, summary in summaries.items():
        latency = summary.latency_ms
        table.add_row(
            line,
            str(summary.sent),
            str(summary.answered),
            str(summary.errors),
            str(summary.dropped),
            f"{summary.achieved_fps:.1f}",
            *("-" if latency[q] is None else f"{latency[q]:.1f}" for q in ("p50", "p99")),
        )
        results.extend(summary.results)
    console.print(table)
    return results


def _set_audit_rates(server: DemoServer, product: str, pass_rate: float) -> None:
    """QA's audit rates for the demo, recorded with a reason (what `inspection audit P --pass-rate R` does)."""
    import httpx

    change = {
        "pass_rate": pass_rate,
        "defect_rate": 1.0,
        "reason": f"demo: audit {pass_rate:.0%} of passes so one pass of the 525 held-out cells bounds the miss rate",
    }
    response = httpx.put(
        f"{server.url}/v1/products/{product}/audit", json=change, headers={"X-API-Key": server.keys["qa"]}, timeout=30
    )
    if response.status_code != 200:
        raise InspectionError(f"audit rates refused ({response.status_code}): {response.text}")
    log_console.print(f"audit for {product}: {response.json()['in_force']['description']}")


def _label_queue(client: Any, labels: dict[str, str], params: dict[str, Any], advance: Any) -> int:
    """Label every frame a list returns with its true label, taking its first page again until it is empty (a
    label takes a frame off the list)."""
    done = 0
    while items := client.get("/v1/inspections", params={**params, "limit": PAGE}).json()["items"]:
        for item in items:
            label = labels[Path(item["frame_id"]).name]
            response = client.post(f"/v1/inspections/{item['id']}/feedback", json={"label": label})
            if response.status_code != 200:
                raise InspectionError(f"feedback refused ({response.status_code}): {response.text}")
            advance(1)
        done += len(items)
    return done


def _label_like_a_plant(server: DemoServer, product: str, since: datetime, labels: dict[str, str]) -> int:
    """QA works through the audit queue (oldest first), then every defect verdict the review page still shows,
    giving each its true label: the labels a plant has, not a random share of the frames."""
    import httpx

    window = {"product": product, "since": since.isoformat()}
    with (
        httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys["qa"]}, timeout=30) as client,
        progress_task("QA labels the audit queue and the defect verdicts") as advance,
    ):
        audited = _label_queue(client, labels, {**window, "audit": "true"}, advance)
        flagged = {**window, "review": "true", "verdict": "defect", "has_feedback": "false"}
        return audited + _label_queue(client, labels, flagged, advance)


def _pass_rates(server: DemoServer, product: str, since: datetime, point: str, truth: Truth) -> dict[str, Any]:
    """/v1/stats for the frames answered since `since` (this pass only), printed beside the pass's truth."""
    import httpx

    headers = {"X-API-Key": server.keys["manager"]}
    params = {"product": product, "since": since.isoformat()}
    stats: dict[str, Any] = httpx.get(f"{server.url}/v1/stats", params=params, headers=headers, timeout=30).json()
    print_pass_rates(product, point, stats, truth)
    return stats


def demo_cmd(
    product: Annotated[str, typer.Option(help="Product name for the ELPV solar cells.")] = DEMO_PRODUCT,
    epochs: Annotated[int, typer.Option(help="Fine-tune epochs: a short schedule keeps the demo quick.")] = 3,
    fps: Annotated[float, typer.Option(help="Frames per second each simulated line sends.")] = 10.0,
    audit_pass_rate: Annotated[
        float, typer.Option(help="Share of passes drawn for QA's audit (every defect verdict is).")
    ] = DEMO_AUDIT_PASS_RATE,
    host: Annotated[str, typer.Option(help="Interface the demo server listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the demo server (a free one if taken).")] = 8000,
    false_detection_budget: Annotated[
        float, typer.Option(help="QA's false-detection budget for the second pass, a fraction of good parts.")
    ] = DEFAULT_FALSE_DETECTION_BUDGET,
    hold: Annotated[
        bool | None, typer.Option(help="Keep the server up for the dashboard (default: when run in a terminal).")
    ] = None,
) -> None:
    """The whole story on real data: import, train, export, serve, stream two lines, QA's audit, live rates."""
    started = time.perf_counter()
    settings = settings_from_env()
    validate_product_name(product)
    if not 0 < audit_pass_rate <= 1 or fps <= 0 or epochs < 1 or not 0 <= false_detection_budget < 1:
        raise InspectionError("need 0 < audit-pass-rate <= 1, fps > 0, epochs >= 1 and 0 <= false-detection-budget < 1")
    _step("1/6 data: the ELPV solar cells (Deitsch et al. 2019), 2,624 real electroluminescence images")
    _ensure_dataset(settings, product)
    _step(f"2/6 model: train ({epochs} fine-tune epochs, no augmented copies), calibrate, evaluate, export")
    _ensure_model(settings, product, epochs)
    first_point = first_operating_point(settings, product)
    frames = held_out_frames(settings, product)
    labels = {path.name: label for path, label in frames}
    _step(f"3/6 server: FastAPI + ONNX Runtime for {settings.home}")
    with start_server(settings, host, port) as server:
        manager = server.keys["manager"]
        _set_audit_rates(server, product, audit_pass_rate)
        folders = _line_folders(settings, frames)
        _step(f"4/6 cameras: {len(frames)} held-out frames as {len(LINES)} lines at {fps:g} frames/s each")
        served, since = served_threshold_now(server.url, manager, product), datetime.now(UTC)
        results = _stream(server, product, folders, fps)
        reviewed = _label_like_a_plant(server, product, since, labels)
        _step(f"5/6 live rates: the audit estimate, the {reviewed} QA-labelled frames, and the truth")
        truth = pass_truth(results, labels)
        points = [(first_point, served, _pass_rates(server, product, since, first_point, truth), truth)]
        _step(f"6/6 QA moves the operating point: at most {false_detection_budget:.0%} of good parts flagged")
        plan = move_operating_point(settings, product, false_detection_budget)
        if plan is not None:
            wait_until_served(server.url, manager, product, plan.threshold)
            since = datetime.now(UTC)
            results = _stream(server, product, folders, fps)
            _label_like_a_plant(server, product, since, labels)
            point = f"QA's budget of {false_detection_budget:.0%}"
            truth = pass_truth(results, labels)
            points.append((point, plan.threshold, _pass_rates(server, product, since, point, truth), truth))
            console.print(comparison_table(product, points))
        console.print(f"demo finished its measurements in {time.perf_counter() - started:.0f} s")
        console.print(f"dashboard: [bold]{server.url}/products/{product}[/]   review: {server.url}/review")
        for role in ("manager", "qa"):
            console.print(f"  {role} key: {server.keys[role]}", highlight=False)
        if hold if hold is not None else console.is_terminal:
            console.print("serving until Ctrl-C")
            server.wait()
