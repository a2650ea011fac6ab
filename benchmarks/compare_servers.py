"""A/B of server code at saturation: the server of each checkout, alternated, on the same home, frames and client.

These machines drift by tens of percent within minutes, so two versions of the server are only comparable when
measured alternately in one run. Each round starts `inspection serve` from each checkout in turn (same
INSPECTION_HOME, same 64 held-out frames, same lean client; extra environment per variant allowed) and reports
answers/s plus the CPU the server process and the client spent per answered frame, the server's split by thread
role (event loop, engine runners, row writer, other). A role's CPU against the runners' drifted far less between
rounds than answers/s did (about 3 % against 30 %, 2026-12-06).

    python -m benchmarks.compare_servers --home var --variant old=/tmp/old-checkout --variant new=. --rounds 2
    python -m benchmarks.compare_servers --home var --variant spin=.:INSPECTION_ORT_SPINNING=1 --variant nospin=.

A variant is NAME=CHECKOUT[:VAR=VALUE,...]; a checkout must be importable (its CLI module runs with `python -m`
from it, so its own packages shadow the installed ones).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.http_load import SaturationResult, build_requests, run, saturation
from benchmarks.server_load import SATURATION_CLIENTS, camera_frames, free_port, start_process
from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from serving.engine import RUNNER_THREAD_NAME
from serving.row_writer import WRITER_THREAD_NAME

PRODUCT = "solar-cells"
# OS thread names the server's workers give themselves (serving.worker_queue.name_os_thread) -> their role here.
THREAD_ROLES = {RUNNER_THREAD_NAME: "runners", WRITER_THREAD_NAME: "writer"}


@dataclass(frozen=True)
class Variant:
    name: str
    checkout: Path
    env: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, rest = text.partition("=")
        checkout, _, assignments = rest.partition(":")
        env = dict(item.split("=", 1) for item in assignments.split(",") if item)
        return cls(name, Path(checkout).resolve(), env)


def cli_module(checkout: Path) -> str:
    """The checkout's CLI module: `cli.main` since the CLI left the core package, `inspection.cli` before."""
    # An A/B against a checkout from before the move must still start its server.
    return "cli.main" if (checkout / "cli" / "main.py").is_file() else "inspection.cli"


def default_workers(checkout: Path) -> int:
    """The checkout's default `inspection serve --workers` (1 before the option existed)."""
    main = checkout / "cli" / "main.py"
    found = re.search(r"^DEFAULT_WORKERS = (\d+)", main.read_text(), re.MULTILINE) if main.is_file() else None
    return int(found.group(1)) if found else 1


def _stat_cpu_seconds(stat: Path) -> float:
    """User plus system CPU seconds from a /proc `stat` file (a process's, or one thread's under task/)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(pid: int) -> float:
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def _descendants(pid: int) -> list[int]:
    """`pid` and every live process below it (the workers of `inspection serve --workers N`)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            pending.extend(int(child) for child in task.read_text().split())
    return found


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds the server process and its live worker processes have used."""
    return sum(_process_cpu_seconds(each) for each in _descendants(pid))


def _thread_cpu_seconds(process: int) -> dict[tuple[int, str], float]:
    """CPU seconds of each live thread of `process`, keyed by (thread id, role)."""
    found = {}
    for task in Path(f"/proc/{process}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            seconds = _stat_cpu_seconds(task / "stat")
        except FileNotFoundError:  # the thread ended while we looked
            continue
        role = THREAD_ROLES.get(name, "other") if int(task.name) != process else "event_loop"
        found[(int(task.name), role)] = seconds
    return found


def cpu_by_thread_role(pid: int) -> dict[tuple[int, str], float]:
    """Per-thread CPU seconds of the server and its worker processes: the event loop (each process's main
    thread), the engine's runners and the row writer by the names they give themselves in the OS, and 'other'
    (ORT's own threads, the thread pool, and every thread of a server from before the names)."""
    found: dict[tuple[int, str], float] = {}
    for process in _descendants(pid):
        found.update(_thread_cpu_seconds(process))
    return found


def role_totals(before: dict[tuple[int, str], float], after: dict[tuple[int, str], float]) -> dict[str, float]:
    """CPU seconds by role between two snapshots (threads that started in between count from zero)."""
    totals = dict.fromkeys(("event_loop", "runners", "writer", "other"), 0.0)
    for key, seconds in after.items():
        totals[key[1]] += seconds - before.get(key, 0.0)
    return totals


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def measure(
    variant: Variant, settings: Settings, frames: list[bytes], key: str, seconds: float, clients: int
) -> dict[str, float]:
    """One saturation run of `variant`'s server: answers/s and CPU ms per answered frame (server, client)."""
    env = {
        **os.environ,
        "INSPECTION_HOME": str(settings.home),
        "INSPECTION_CONFIGS_DIR": str(settings.configs_dir),
        **variant.env,
    }
    port = free_port()
    command = [sys.executable, "-m", cli_module(variant.checkout), "serve", "--port", str(port)]
    # Counted only once every worker process has finished its startup (one line each in the log).
    workers = int(env.get("INSPECTION_WORKERS") or default_workers(variant.checkout))
    server = start_process(command, env, port, variant.checkout, started_lines=workers)
    url = f"http://127.0.0.1:{port}/v1/inspect/{PRODUCT}"
    requests = build_requests(url, {"X-API-Key": key, "Content-Type": "image/jpeg"}, frames)
    try:
        run(lambda: saturation(url, requests, 2.0, clients))  # warm: sessions, pools, first batches
        server_before, client_before = server_cpu_seconds(server.pid), _own_cpu_seconds()
        threads_before = cpu_by_thread_role(server.pid)
        result = run(lambda: saturation(url, requests, seconds, clients))
        assert isinstance(result, SaturationResult)
        by_role = role_totals(threads_before, cpu_by_thread_role(server.pid))
        server_cpu = server_cpu_seconds(server.pid) - server_before
        client_cpu = _own_cpu_seconds() - client_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    answered = max(result.answered, 1)
    return {
        "fps": round(result.fps, 1),
        "server_cpu_ms_per_frame": round(1000 * server_cpu / answered, 2),
        **{f"{role}_cpu_ms_per_frame": round(1000 * seconds / answered, 2) for role, seconds in by_role.items()},
        "client_cpu_ms_per_frame": round(1000 * client_cpu / answered, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="an INSPECTION_HOME with solar-cells exported")
    parser.add_argument("--variant", action="append", type=Variant.parse, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=SATURATION_CLIENTS)
    args = parser.parse_args()
    settings = Settings(home=args.home.resolve(), configs_dir=Path("configs").resolve())
    frames = camera_frames(settings, PRODUCT)
    key = create_api_key(open_database(settings.resolved_database_url), "camera", "compare_servers")
    for round_number in range(1, args.rounds + 1):
        for variant in args.variant:
            figures = measure(variant, settings, frames, key, args.seconds, args.clients)
            print(f"round {round_number} {variant.name}: {figures}", flush=True)


if __name__ == "__main__":
    main()
