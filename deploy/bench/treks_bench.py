"""``ridgeline bench treks``: 3-leg treks across 3 regions beside single-region bookings, same run.

Goals (issue: cross-region treks): p50 time to decision ≤ 50 ms and ≥ 100 treks/s on
this machine. Everything runs as production runs it, on one throwaway PostgreSQL server
(one database per region, one for the coordinator's log, one for the gateway): three
``ridgeline node`` processes, the stand-in gateway, and ``ridgeline coordinator``.

Two phases of ``--seconds`` each, with the same number of client threads:

- **treks**: each thread loops ``PlanTrek(wait)`` for a trek with one leg in each region
  (random nights far apart, so refusals are rare). Times to decision and to fully
  settled are the coordinator's own ``decided_at``/``settled_at`` minus ``created_at``
  (read back with GetTrek after the phase); the call's own round trip is reported too.
- **singles** (the baseline of the same run): each thread loops PlaceHold + ConfirmBooking
  on one region's node, the desk booking a trek leg stands beside.

cli.py imports this module for every command, so the heavy imports are inside functions.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import grpc
import typer

from ridgeline.deploy.cli import bench_app
from ridgeline.routing import BookingClient, night_range
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

GOAL_DECISION_P50_MS = 50.0
GOAL_TREKS_PER_SECOND = 100.0
#: One resource with room per region: a trek takes one unit of each for one night.
LEGS = (("eu-alps", "hoernli", "hoernli-dorm"), ("na-rockies", "bow-hut", "bow-bunk"), ("sa-andes", "plaza-de-mulas", "mulas-dome"))
_READY_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class PhaseReport:
    phase: str
    threads: int
    seconds: float
    done: int
    refused: int
    per_second: float
    call_p50_ms: float | None
    call_p99_ms: float | None
    decision_p50_ms: float | None = None
    decision_p99_ms: float | None = None
    settled_p50_ms: float | None = None
    settled_p99_ms: float | None = None


@bench_app.command("treks")
def treks(
    seconds: Annotated[float, typer.Option("--seconds", help="Length of each phase.")] = 5.0,
    threads: Annotated[int, typer.Option("--threads", help="Client threads in each phase.")] = 16,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    """3-leg treks across 3 regions: treks/s and p50/p99 to decision and to settled, beside single bookings."""
    with _cluster() as (coordinator, nodes):
        reports = [_trek_phase(coordinator, threads, seconds), _single_phase(nodes, threads, seconds)]
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": _machine(), "phases": [asdict(r) for r in reports]}
    _print(reports)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2))


@contextmanager
def _cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """Yields the coordinator's address and each region's node address; removes everything after."""
    from ridgeline.deploy.run.postgres import PostgresServer, PostgresSettings
    from ridgeline.deploy.run.region import prepare_region_database
    from ridgeline.regional.booking.catalog import load_catalog
    from ridgeline.regional.config import NodeConfig

    root = Path(tempfile.mkdtemp(prefix="ridgeline-bench-treks-"))
    server = PostgresServer(root / "pg", settings=PostgresSettings(durable=False))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        server.start()
        stack.callback(server.stop)
        catalog = load_catalog()
        nodes = {}
        for region, _, _ in LEGS:
            url = server.create_database(region.replace("-", "_"))
            prepare_region_database(url, region, catalog, advance_booking_days=NodeConfig.advance_booking_days)
            nodes[region] = stack.enter_context(_serve(["node", "--region", region, "--database-url", url], root / f"{region}.log"))
        gateway = stack.enter_context(_serve(["gateway", "--database-url", server.create_database("gateway")], root / "gateway.log"))
        targets = [arg for region, address in nodes.items() for arg in ("--region-target", f"{region}={address}")]
        coordinator = stack.enter_context(
            _serve(["coordinator", "--database-url", server.create_database("coordinator"), "--gateway-url", gateway, *targets], root / "coordinator.log")
        )
        yield coordinator, nodes


@contextmanager
def _serve(args: list[str], log_path: Path) -> Iterator[str]:
    """A ``ridgeline`` process; yields the address from its READY line, SIGTERMs it afterwards."""
    command = [sys.executable, "-m", "ridgeline.deploy.cli", *args]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        try:
            yield _ready_address(process, args[0])
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _ready_address(process: subprocess.Popen[str], what: str) -> str:
    found: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("READY "):
                found.append(line.split()[-1])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(_READY_TIMEOUT_SECONDS)
    if not found:
        raise RuntimeError(f"{what} printed no READY line (exit status {process.poll()})")
    return found[0]


def _loop(threads: int, seconds: float, open_worker: Callable[[int], Callable[[random.Random], bool]]) -> tuple[list[float], int, int]:
    """Runs each worker once untimed (warm-up), then all of them for ``seconds``; returns latencies, done, refused."""
    latencies: list[float] = []
    counts = {"done": 0, "refused": 0}
    lock = threading.Lock()
    warmed = threading.Barrier(threads + 1)
    go = threading.Event()
    stop_at = [0.0]

    def run(index: int) -> None:
        rng = random.Random(index)
        work = open_worker(index)
        work(rng)
        warmed.wait()
        go.wait()
        while True:
            started = time.monotonic()
            ok = work(rng)
            ended = time.monotonic()
            if ended > stop_at[0]:
                return
            with lock:
                latencies.append(ended - started)
                counts["done" if ok else "refused"] += 1

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    warmed.wait()
    stop_at[0] = time.monotonic() + seconds
    go.set()
    for worker in workers:
        worker.join()
    return latencies, counts["done"], counts["refused"]


def _night(rng: random.Random) -> date:
    return datetime.now(timezone.utc).date() + timedelta(days=rng.randint(3, 360))


def _trek_phase(coordinator: str, threads: int, seconds: float) -> PhaseReport:
    channel = grpc.insecure_channel(coordinator)
    stub = tpb_grpc.TrekServiceStub(channel)
    trek_ids: list[str] = []

    def open_worker(index: int) -> Callable[[random.Random], bool]:
        def plan(rng: random.Random) -> bool:
            legs = []
            for _, camp, resource in LEGS:
                start = _night(rng)
                legs.append(tpb.TrekLeg(basecamp_id=camp, resource_id=resource, nights=night_range(start, start + timedelta(days=1)), party_size=1))
            trek = stub.PlanTrek(tpb.PlanTrekRequest(idempotency_key=str(uuid.uuid4()), customer_id=f"bench-{index}", legs=legs, wait=True), timeout=30)
            trek_ids.append(trek.trek_id)
            return trek.state == tpb.TREK_STATE_COMMITTED

        return plan

    latencies, done, refused = _loop(threads, seconds, open_worker)
    decided, settled = [], []
    for trek_id in trek_ids:  # every trek of the phase (the few warm-ups included)
        trek = stub.GetTrek(tpb.GetTrekRequest(trek_id=trek_id), timeout=10)
        created = trek.created_at.ToDatetime()
        if trek.HasField("decided_at"):
            decided.append((trek.decided_at.ToDatetime() - created).total_seconds())
        if trek.HasField("settled_at"):
            settled.append((trek.settled_at.ToDatetime() - created).total_seconds())
    channel.close()
    return PhaseReport(
        "treks", threads, seconds, done, refused, done / seconds, *_p50_p99(latencies), *_p50_p99(decided), *_p50_p99(settled)
    )


def _single_phase(nodes: dict[str, str], threads: int, seconds: float) -> PhaseReport:
    clients: list[BookingClient] = []

    def open_worker(index: int) -> Callable[[random.Random], bool]:
        region, camp, resource = LEGS[index % len(LEGS)]
        client = BookingClient(nodes[region], timeout_seconds=30)
        clients.append(client)

        def book(rng: random.Random) -> bool:
            start = _night(rng)
            try:
                held = client.place_hold(camp, resource, start, start + timedelta(days=1), 1, f"bench-{index}")
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    return False
                raise
            client.confirm(held.booking_id)
            return True

        return book

    latencies, done, refused = _loop(threads, seconds, open_worker)
    for client in clients:
        client.close()
    return PhaseReport("singles", threads, seconds, done, refused, done / seconds, *_p50_p99(latencies))


def _p50_p99(seconds: list[float]) -> tuple[float | None, float | None]:
    if not seconds:
        return None, None
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return round(statistics.median(ordered) * 1000, 1), round(p99 * 1000, 1)


def _machine() -> dict[str, object]:
    import os
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def _print(reports: list[PhaseReport]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Treks (3 legs, 3 regions) beside single-region bookings, same run")
    for column in ("phase", "threads", "done/s", "refused", "call p50/p99 ms", "decision p50/p99 ms", "settled p50/p99 ms"):
        table.add_column(column, justify="left" if column == "phase" else "right")

    def pair(a: float | None, b: float | None) -> str:
        return "-" if a is None else f"{a:.1f} / {b:.1f}"

    for r in reports:
        table.add_row(r.phase, str(r.threads), f"{r.per_second:.1f}", str(r.refused), pair(r.call_p50_ms, r.call_p99_ms), pair(r.decision_p50_ms, r.decision_p99_ms), pair(r.settled_p50_ms, r.settled_p99_ms))
    console = Console()
    console.print(table)
    trek = reports[0]
    verdict = (trek.decision_p50_ms or float("inf")) <= GOAL_DECISION_P50_MS and trek.per_second >= GOAL_TREKS_PER_SECOND
    console.print(
        f"goals: decision p50 ≤ {GOAL_DECISION_P50_MS:g} ms and ≥ {GOAL_TREKS_PER_SECOND:g} treks/s → "
        f"{'met' if verdict else 'NOT met'} ({trek.decision_p50_ms} ms, {trek.per_second:.1f} treks/s)"
    )
