"""``ridgeline bench settle``: confirmed bookings/s end to end, batched flows vs one flow per booking.

Both phases run in the same session on the same machine, against the same lean Prefect
server, the same stand-in gateway answering every call after ``--latency-ms`` (50 ms by
default, a realistic provider), and fresh copies of the same region database:

- **batched** (what Ridgeline does): a ``ridgeline node --gateway-url …`` process takes
  Book calls from ``--threads`` client threads; its settlement loop settles them in
  micro-batches, one flow run per batch.
- **baseline** (the naive design ARCHITECTURE.md §4 warns against): a node without the
  loop takes the same Book calls, and each client thread then runs one flow run for its
  booking doing the same steps (the settle flow over a batch of one).

- **paced** (with ``--paced RATE``): the batched node again, with bookings arriving at a
  fixed ``RATE`` per second (open loop: each booking is due at ``position / RATE``), where
  nothing should queue; its p50/p99 is the latency a booking sees at that load.

Time to confirmed is the booking's confirm time minus its creation time, both written by
the database transaction that made them; throughput is bookings confirmed over the span
from the first creation to the last confirm. Goal: batched ≥ 20× baseline. Each batched
phase also reports CPU per confirmed booking, per process tree (psutil, from the node's
READY to the last confirm): the node, PostgreSQL, the Prefect server, the stand-in
gateway, and this process's own client threads; issue 15's goal (≤ 4 ms) is the node,
PostgreSQL and Prefect together, without the gateway and the client.

Both nodes serve mutual TLS with certificates made for the run; each booking thread is a
desk of its own (deploy/bench/security.py). ``ridgeline --insecure bench settle`` runs
them in plaintext.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from ridgeline.deploy.bench.peers.cpu import CpuMeter
from ridgeline.deploy.bench.security import BenchSecurity
from ridgeline.deploy.run.processes import ReadyChild, spawn_ready

if TYPE_CHECKING:
    from ridgeline.deploy.run.postgres import PostgresServer

GOAL_RATIO = 20.0
_REGION = "eu-alps"
_CONFIRM_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class SettlePhase:
    phase: str
    bookings: int
    confirmed: int
    seconds: float
    confirmed_per_second: float
    p50_ms: float
    p99_ms: float
    flow_runs: int
    #: Bookings per second the paced phase offered (None: as fast as the threads book).
    paced_rate: float | None = None
    #: CPU ms per confirmed booking by process tree, and ``settlement`` (node + postgres + prefect).
    cpu_ms: dict[str, float] | None = None


@dataclass(frozen=True)
class BenchServers:
    """What :func:`bench_servers` started: the PostgreSQL server, the run's security, its
    directory, the gateway's URL, and the process ids whose CPU a phase meters."""

    server: PostgresServer
    security: BenchSecurity
    root: Path
    gateway_url: str
    pids: dict[str, int]


def run_settle_benchmark(
    *, bookings: int, baseline_bookings: int, threads: int, latency_ms: int, secure: bool = True, paced: float | None = None, floor_runs: int = 30
) -> dict[str, object]:
    """Both phases (and the paced one with ``paced``) on throwaway servers (PostgreSQL,
    Prefect, gateway; nodes over mTLS unless not ``secure``), removed at the end, then
    ``floor_runs`` empty flow runs: what Prefect costs a batch by itself (prefect_floor.py)."""
    from ridgeline.deploy.bench import prefect_floor

    started = datetime.now(timezone.utc)
    with bench_servers("ridgeline-bench-settle-", latency_ms=latency_ms, secure=secure) as servers:
        phases = [phase("batched", servers, bookings, threads), phase("baseline", servers, baseline_bookings, threads)]
        if paced:
            phases.append(phase("paced", servers, bookings, threads, rate=paced))
        Console(stderr=True).print(f"[dim]prefect floor: {floor_runs} empty flow runs, one after another[/]")
        floor = prefect_floor.measure(prefect_pid=servers.pids["prefect"], postgres_pid=servers.pids["postgres"], runs=floor_runs)
    batched, baseline = phases[:2]
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            "bookings": bookings, "baseline_bookings": baseline_bookings, "threads": threads, "latency_ms": latency_ms,
            "transport": servers.security.label, "paced_rate": paced,
        },
        "phases": [asdict(p) for p in phases],
        "ratio": batched.confirmed_per_second / baseline.confirmed_per_second if baseline.confirmed_per_second else None,
        "prefect_floor": asdict(floor),
    }


def machine() -> dict[str, object]:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}


@contextmanager
def bench_servers(prefix: str, *, latency_ms: int, secure: bool) -> Iterator[BenchServers]:
    """Throwaway PostgreSQL (with a migrated region template, ``bench_template``), the
    stand-in gateway answering after ``latency_ms`` and a lean Prefect server; removes all
    of it after."""
    from ridgeline.deploy.payment_gateway.process import GatewayProcess
    from ridgeline.deploy.run.postgres import PostgresServer, PostgresSettings
    from ridgeline.deploy.run.prefect_server import PrefectServer
    from ridgeline.deploy.run.region import prepare_region_database
    from ridgeline.flows import prefect_settings
    from ridgeline.regional.booking.catalog import load_catalog

    root = Path(tempfile.mkdtemp(prefix=prefix))
    server = PostgresServer(root / "postgres", settings=PostgresSettings(durable=False))
    gateway: GatewayProcess | None = None
    prefect: PrefectServer | None = None
    try:
        security = BenchSecurity.made_in(root) if secure else BenchSecurity.plaintext()
        server.start()
        template = server.create_database("bench_template")
        prepare_region_database(template, _REGION, load_catalog(), advance_booking_days=365)
        gateway = GatewayProcess(server.create_database("bench_gateway"), security.node())
        with security.client("sre").http_client(gateway.url, timeout_seconds=10) as admin:
            admin.put("/admin/faults", json={"latency_ms": latency_ms}).raise_for_status()
        prefect = PrefectServer(server)
        prefect_settings.install(prefect.start(), prefect.auth_string)
        assert prefect.pid is not None
        postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        yield BenchServers(server, security, root, gateway.url, {"postgres": postmaster, "prefect": prefect.pid, "gateway": gateway.pid})
    finally:
        if prefect is not None:
            prefect.stop()
        if gateway is not None:
            gateway.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def phase(name: str, servers: BenchServers, count: int, threads: int, *, rate: float | None = None) -> SettlePhase:
    """One phase on a fresh copy of the region database: ``baseline`` settles one flow run
    per booking from the client threads, any other name settles in the node's loop;
    ``rate``: bookings arrive at that many per second instead of as fast as they go."""
    server, security, root, gateway_url = servers.server, servers.security, servers.root, servers.gateway_url
    database = f"bench_{name}"
    url = server.create_database(database, template="bench_template")
    settle_in_node = name != "baseline"
    args = ["--gateway-url", gateway_url, "--outbox-dir", str(root / f"spool-{name}")] if settle_in_node else []
    Console(stderr=True).print(f"[dim]{name}: {count} bookings from {threads} threads{f' at {rate:g}/s' if rate else ''}[/]")
    with _node_process(url, security, root / f"node-{name}.log", args) as node:
        runs_before = _settle_runs() if settle_in_node else 0
        cpu = CpuMeter({"node": node.pid, **servers.pids})
        flow_runs = _book_all(node.address, security, url, gateway_url, root, count, threads, settle_each=not settle_in_node, rate=rate)
        confirmed = _wait_confirmed(server.libpq_dsn(database), count)
        spent = cpu.ms_per(len(confirmed))
    spent["settlement"] = round(spent["node"] + spent["postgres"] + spent["prefect"], 2)
    del spent["sum"]
    seconds = max(c for _, c in confirmed) - min(s for s, _ in confirmed)
    latencies = sorted((c - s) * 1000 for s, c in confirmed)
    return SettlePhase(
        phase=name,
        bookings=count,
        confirmed=len(confirmed),
        seconds=round(seconds, 3),
        confirmed_per_second=round(len(confirmed) / seconds, 2),
        p50_ms=round(statistics.median(latencies), 1),
        p99_ms=round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        flow_runs=flow_runs if flow_runs else _settle_runs() - runs_before,
        paced_rate=rate,
        cpu_ms=spent if settle_in_node else None,
    )


def _node_process(database_url: str, security: BenchSecurity, log: Path, extra: list[str]) -> ReadyChild:
    """``ridgeline node`` as production starts it (with ``security``), in its own process; stopped on leaving ``with``."""
    command = security.command("node", "--region", _REGION, "--database-url", database_url, "--workers", "16", *extra)
    return spawn_ready(command, what="node", log_path=log, stop_timeout_seconds=30)


def _book_all(
    address: str, security: BenchSecurity, url: str, gateway_url: str, root: Path, count: int, threads: int, *, settle_each: bool, rate: float | None
) -> int:
    """Books ``count`` one-night stays on distinct (resource, night) pairs; in the baseline each
    thread then runs one settle flow run for its booking; with ``rate`` the i-th booking is
    placed at ``i / rate`` seconds (a thread running late books at once). Returns the flow
    runs started here."""
    from ridgeline.flows.payments import PaymentGateway
    from ridgeline.flows.runtime import build_settlement_runtime, close_settlement_runtime
    from ridgeline.flows.settle import settle_batch
    from ridgeline.routing.client import BookingClient

    with BookingClient(address, transport=security.client("desk")) as client:
        camps = client.list_basecamps().basecamps
    today = datetime.now(timezone.utc).date()
    slots = [(c.basecamp_id, r.resource_id, today + timedelta(days=d)) for c in camps for r in c.resources for d in range(3, 360)]
    chosen = random.Random(7).sample(slots, count)
    basecamps = [c.basecamp_id for c in camps]
    name = f"bench-{uuid.uuid4().hex[:8]}"
    if settle_each:
        # The baseline settles for the node from outside it: it writes under the node's leases.
        build_settlement_runtime(name, url, PaymentGateway(gateway_url, security.node()), root / "spool-baseline", borrowed_basecamps=basecamps, pool_size=threads + 2)
    lock = threading.Lock()
    runs = 0
    desks = security.desks(threads)

    started = time.monotonic()

    def worker(index: int) -> None:
        nonlocal runs
        with BookingClient(address, transport=desks[index], timeout_seconds=30) as client:
            for position in range(index, count, threads):
                camp, resource, night = chosen[position]
                if rate and (wait := started + position / rate - time.monotonic()) > 0:
                    time.sleep(wait)
                booked = client.book(camp, resource, night, night + timedelta(days=1), 1, f"bench-{index}")
                if settle_each:
                    settle_batch(name, [booked.booking_id], basecamps)
                    with lock:
                        runs += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if settle_each:
        close_settlement_runtime(name)
    return runs


def _wait_confirmed(dsn: str, count: int) -> list[tuple[float, float]]:
    """(created, confirmed) epoch seconds of every confirmed booking, once all are settled."""
    import psycopg

    deadline = time.monotonic() + _CONFIRM_TIMEOUT_SECONDS
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A monitor, not a writer: under SERIALIZABLE its polls are themselves cancelled as pivots.
        conn.execute("SET default_transaction_isolation = 'read committed'")
        while True:
            [(open_count,)] = conn.execute("SELECT count(*) FROM settlements WHERE state IN ('awaiting_payment', 'refunding')").fetchall()
            if open_count == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        rows = conn.execute(
            "SELECT extract(epoch FROM b.created_at), extract(epoch FROM h.at) FROM bookings b"
            " JOIN booking_history h ON h.booking_id = b.booking_id AND h.to_state = 'confirmed'"
        ).fetchall()
    return [(float(created), float(confirmed)) for created, confirmed in rows]


def _settle_runs() -> int:
    """Flow runs of the settle flow the Prefect API recorded so far (in every phase)."""
    from ridgeline.flows import prefect_settings

    with prefect_settings.api_client() as api:
        reply = api.post("flow_runs/count", json={"flows": {"name": {"any_": ["settle"]}}})
    reply.raise_for_status()
    return int(reply.json())
