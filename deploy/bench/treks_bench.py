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

Every process speaks mutual TLS with certificates made for the run; the client plans as
the local ``planner`` (one channel for every thread) and books as one desk per thread
(deploy/bench/security.py). ``--insecure-baseline`` then starts the same processes again
in plaintext, on fresh databases of the same server, and runs both phases there too: the
cost of mTLS and authorization is treks/s (and singles/s) of the two, same run.

The CLI (deploy/cli/bench.py) imports this module for every command, so the heavy
imports are inside functions.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import grpc
from rich.console import Console

from ridgeline.deploy.bench.bench_stack import LEGS, bench_stack
from ridgeline.deploy.bench.security import BenchSecurity
from ridgeline.routing import BookingClient, night_range
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

GOAL_DECISION_P50_MS = 50.0
GOAL_TREKS_PER_SECOND = 100.0

_err = Console(stderr=True)


@dataclass(frozen=True)
class PhaseReport:
    phase: str
    #: "mTLS" or "plaintext": how every process of the phase spoke.
    transport: str
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


@dataclass(frozen=True)
class TreksReport:
    """One run: the treks phase, then the singles phase (mTLS unless --insecure), then with
    ``--insecure-baseline`` the same two in plaintext; and what it ran on."""

    #: When the run ended (UTC, ISO 8601).
    date: str
    machine: dict[str, object]
    phases: tuple[PhaseReport, ...]

    def __post_init__(self) -> None:
        assert len(self.phases) in (2, 4) and [p.phase for p in self.phases[:2]] == ["treks", "singles"], self.phases

    @property
    def mtls_ratios(self) -> dict[str, float]:
        """Per phase, mTLS per second over plaintext per second (empty without the baseline)."""
        if len(self.phases) == 2:
            return {}
        secure, plaintext = self.phases[:2], self.phases[2:]
        return {s.phase: s.per_second / p.per_second if p.per_second else 0.0 for s, p in zip(secure, plaintext, strict=True)}

    def to_json(self) -> dict[str, object]:
        return {"date": self.date, "machine": self.machine, "phases": [asdict(r) for r in self.phases], "mtls_ratios": self.mtls_ratios}


def run_treks_benchmark(*, seconds: float, threads: int, secure: bool = True, insecure_baseline: bool = False) -> TreksReport:
    """Both phases of ``seconds`` with ``threads`` clients on a throwaway cluster (mTLS unless
    not ``secure``), then again in plaintext with ``insecure_baseline``; removed at the end."""
    from ridgeline.deploy.run.postgres import PostgresServer, PostgresSettings

    assert seconds > 0 and threads > 0, (seconds, threads)
    assert secure or not insecure_baseline, "an insecure baseline needs a secure run to compare with"
    root = Path(tempfile.mkdtemp(prefix="ridgeline-bench-treks-"))
    server = PostgresServer(root / "pg", settings=PostgresSettings(durable=False))
    phases: list[PhaseReport] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        server.start()
        stack.callback(server.stop)
        runs = [BenchSecurity.made_in(root) if secure else BenchSecurity.plaintext()] + ([BenchSecurity.plaintext()] if insecure_baseline else [])
        for number, security in enumerate(runs, start=1):
            with bench_stack(server, security, root / f"run-{number}") as running:
                coordinator = running.coordinator_addresses[0]
                phases += [_trek_phase(coordinator, security, threads, seconds), _single_phase(running.nodes, security, threads, seconds)]
    return TreksReport(datetime.now(timezone.utc).isoformat(timespec="seconds"), _machine(), tuple(phases))


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


def _trek_phase(coordinator: str, security: BenchSecurity, threads: int, seconds: float) -> PhaseReport:
    """Every thread plans through one planner channel (its TLS session open for the whole phase)."""
    _err.print(f"[dim]treks phase, {security.label}: {threads} threads, {seconds:g} s[/]")
    channel = security.client("planner").channel(coordinator)
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
        "treks", security.label, threads, seconds, done, refused, done / seconds, *_p50_p99(latencies), *_p50_p99(decided), *_p50_p99(settled)
    )


def _single_phase(nodes: dict[str, str], security: BenchSecurity, threads: int, seconds: float) -> PhaseReport:
    """Each thread a desk of its own with its own channel to one region's node."""
    _err.print(f"[dim]singles phase, {security.label}: {threads} threads, {seconds:g} s[/]")
    clients: list[BookingClient] = []
    desks = security.desks(threads)

    def open_worker(index: int) -> Callable[[random.Random], bool]:
        region, camp, resource = LEGS[index % len(LEGS)]
        client = BookingClient(nodes[region], transport=desks[index], timeout_seconds=30)
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
    return PhaseReport("singles", security.label, threads, seconds, done, refused, done / seconds, *_p50_p99(latencies))


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
