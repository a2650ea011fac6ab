"""Scale-out: saturation frames/s of 1 and 2 server replicas behind HAProxy, and what the load balancer costs.

Every replica is an `inspection serve` process on the exported ELPV model, all of them writing to one PostgreSQL
database; HAProxy (Debian's package) checks /readyz and balances by least connections, as in deploy/. The load
generator, HAProxy and the replicas share this machine's cores, so two replicas cannot double one: the figure
says how much of a second machine's worth this layout would add, measured honestly on one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.context import BenchContext
from benchmarks.haproxy_config import haproxy_config
from benchmarks.http_load import SaturationResult, build_requests, run, saturation
from benchmarks.server_load import camera_frames, free_port, start_process
from benchmarks.throwaway_postgres import throwaway_database
from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database

PRODUCT = "solar-cells"
POSTGRES_ADMIN = os.environ.get("INSPECTION_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
WARM_UP_SECONDS = 3.0
SATURATION_SECONDS = 15.0
SATURATION_CLIENTS = 16  # keep-alive connections through the load balancer, each sending when answered
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (from /proc; Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextmanager
def _replicas(n: int, env: dict[str, str]) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    started: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for _ in range(n):
            port = free_port()
            command = [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
            started.append((port, start_process(command, env, port)))
        yield started
    finally:
        for _, process in started:
            process.terminate()
        for _, process in started:
            process.wait(timeout=60)


@contextmanager
def _haproxy(ports: list[int], workdir: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        raise RuntimeError("haproxy is not installed: `make haproxy` installs Debian's package")
    port = free_port()
    config = workdir / f"haproxy-{len(ports)}.cfg"
    config.write_text(haproxy_config(port, [(f"r{i}", f"127.0.0.1:{p}") for i, p in enumerate(ports, 1)]))
    process = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:  # every replica is up once /readyz answers 200 through HAProxy on each of them in turn
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("haproxy did not start")
            time.sleep(0.2)
        time.sleep(2.5)  # `rise 2` checks 1 s apart: every replica is in the rotation before the load starts
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _saturate(url: str, requests: list[bytes]) -> SaturationResult:
    result, _ = _saturate_measuring(url, requests, None)
    return result


def _saturate_measuring(url: str, requests: list[bytes], pid: int | None) -> tuple[SaturationResult, float]:
    """Warm up, then saturate; with the CPU seconds process `pid` (the load balancer) spent in the measured part."""
    run(lambda: saturation(url, requests, WARM_UP_SECONDS, SATURATION_CLIENTS))
    before = cpu_seconds(pid) if pid is not None else 0.0
    result = run(lambda: saturation(url, requests, SATURATION_SECONDS, SATURATION_CLIENTS))
    assert isinstance(result, SaturationResult)
    return result, (cpu_seconds(pid) - before if pid is not None else 0.0)


def measure(settings: Settings, product: str = PRODUCT) -> dict[str, float]:
    """Saturation of one replica alone, then of 1 and 2 replicas behind HAProxy, with HAProxy's CPU per frame."""
    frames = camera_frames(settings, product)
    figures: dict[str, float] = {}
    with (
        throwaway_database(POSTGRES_ADMIN, "inspection_bench") as database_url,
        tempfile.TemporaryDirectory(prefix="scale-out-") as workdir,
    ):
        key = create_api_key(open_database(database_url), "camera", "bench camera")
        headers = {"X-API-Key": key, "Content-Type": "image/jpeg"}
        env = {
            **os.environ,
            "INSPECTION_HOME": str(settings.home),
            "INSPECTION_CONFIGS_DIR": str(settings.configs_dir),
            "INSPECTION_DATABASE_URL": database_url,
        }
        with _replicas(1, env) as replicas:
            url = f"http://127.0.0.1:{replicas[0][0]}/v1/inspect/{product}"
            direct = _saturate(url, build_requests(url, headers, frames))
        figures["scale_out_fps_1_replica_direct"] = round(direct.fps, 1)
        for n in (1, 2):
            with _replicas(n, env) as replicas, _haproxy([p for p, _ in replicas], Path(workdir)) as (port, lb):
                url = f"http://127.0.0.1:{port}/v1/inspect/{product}"
                result, lb_cpu = _saturate_measuring(url, build_requests(url, headers, frames), lb.pid)
            plural = "s" if n > 1 else ""
            figures[f"scale_out_fps_{n}_replica{plural}_haproxy"] = round(result.fps, 1)
            figures[f"haproxy_cpu_ms_per_frame_{n}_replica{plural}"] = round(1000 * lb_cpu / max(result.answered, 1), 3)
    figures["scale_out_2_vs_1_replicas"] = round(
        figures["scale_out_fps_2_replicas_haproxy"] / figures["scale_out_fps_1_replica_haproxy"], 2
    )
    return figures


def run_bench(context: BenchContext) -> dict[str, float]:
    """`make bench`'s entry: trains and exports ELPV first when this run has not."""
    from benchmarks import elpv_training
    from models.serving_choice import champion_model
    from training.export_pipeline import export_product

    if not context.elpv_trained:
        elpv_training.run(context)
        context.elpv_trained = True
    if champion_model(context.elpv_settings, PRODUCT) is None:
        export_product(context.elpv_settings, PRODUCT, int8=True)
    return measure(context.elpv_settings)
