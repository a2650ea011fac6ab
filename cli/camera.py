"""`inspection camera`: stream a folder, video or stream URL to a running server at a target frame rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cli.common import console
from inspection.errors import InspectionError
from inspection.progress import console as log_console

if TYPE_CHECKING:
    from serving.camera_client import CameraSummary


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_camera_summary(summary: CameraSummary) -> None:
    """The run's counts, rates and latencies as one table, then one example per kind of error."""
    table = Table(title=f"{summary.product} <- {summary.source}" + (" (interrupted)" if summary.interrupted else ""))
    table.add_column("figure")
    table.add_column("value", justify="right")
    errors = ", ".join(f"{kind}: {n}" for kind, n in summary.errors_by_status.items())
    latency = summary.latency_ms
    rows = [
        ("frames read", str(summary.read)),
        ("sent", str(summary.sent)),
        ("answered (2xx)", str(summary.answered)),
        ("dropped (all slots busy)", str(summary.dropped)),
        ("errors", f"{summary.errors}" + (f" ({errors})" if errors else "")),
        ("duration", f"{summary.duration_s:.2f} s"),
        ("achieved fps (answered)", f"{summary.achieved_fps:.2f} (target {summary.target_fps:g})"),
        ("latency p50 / p95 / p99", " / ".join(_ms(latency.get(q)) for q in ("p50", "p95", "p99")) + " ms"),
        ("server latency p50", f"{_ms(summary.server_latency_ms_p50)} ms"),
        ("max in flight", f"{summary.max_in_flight} of {summary.concurrency}"),
        ("verdicts", ", ".join(f"{verdict}: {n}" for verdict, n in summary.verdicts.items()) or "-"),
    ]
    if summary.interrupted:
        rows.insert(5, ("abandoned at interrupt", str(summary.abandoned)))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for kind, detail in summary.error_examples.items():
        log_console.print(f"[yellow]first {kind} error:[/] {detail}", highlight=False)


def camera_cmd(
    product: Annotated[str, typer.Option(help="Product whose champion model scores the frames.")],
    source: Annotated[str, typer.Option(help="A folder of images, a video file, or a stream URL (rtsp://...).")],
    fps: Annotated[float, typer.Option(help="Target frames per second (a frame is due every 1/fps s).")],
    server: Annotated[str, typer.Option(help="Inspection server base URL.")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option(envvar="INSPECTION_API_KEY", help="A camera or qa key (X-API-Key).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Most requests in flight; a frame due beyond it is dropped.")] = 4,
    line: Annotated[str | None, typer.Option(help="Line id stored with every inspection.")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id stored with every inspection.")] = None,
    limit: Annotated[int | None, typer.Option(help="Stop after reading this many frames.")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Restart a folder or video at its end.")] = False,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    jpeg_quality: Annotated[int, typer.Option(help="JPEG quality for video frames (1-100).")] = 90,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the summary to this file.")] = None,
) -> None:
    """Post frames to the server at a fixed rate, dropping frames it cannot keep up with; print the summary."""
    from inspection.atomic import write_atomic_text
    from serving.camera_client import stream_frames

    if not api_key:
        raise InspectionError("no API key: pass --api-key or set INSPECTION_API_KEY (a camera or qa key)")
    summary = stream_frames(
        source,
        product=product,
        server=server,
        fps=fps,
        api_key=api_key,
        concurrency=concurrency,
        line_id=line,
        camera_id=camera,
        limit=limit,
        loop=loop,
        duration=duration,
        jpeg_quality=jpeg_quality,
    )
    print_camera_summary(summary)
    if json_path is not None:
        write_atomic_text(json_path, json.dumps(summary.to_dict(), indent=2))
    if summary.sent and not summary.answered and not summary.interrupted:
        # Every request failed (wrong key, wrong product, no server): a script must not read that as success.
        log_console.print("[bold red]error:[/] no frame was answered; see the errors above")
        raise typer.Exit(1)
