"""``ridgeline bench peers``: one booking workflow on Ridgeline, Restate and DBOS Transact, in one run.

Every system books the same stays from the same client threads against the same stand-in
gateway (``--latency-ms``, 50 by default) and the same kind of PostgreSQL (one server,
a fresh database per phase); the phases alternate system by system. Ridgeline runs as
``bench settle``'s batched phase (``Book``, then settlement in micro-batches); the peers
run hold → keyed charge → confirm (release on decline) with every caller waiting for its
booking. A second round paces every system's arrivals (Ridgeline's through ``bench
settle``'s paced phase) at half the slowest burst rate, where none should queue, to
compare latency.

CPU per confirmed booking is summed over every process involved: this process (the
client, and DBOS, which runs in it) with all its children (node, gateway, Prefect, the
Restate server and service), live or reaped during the phase, and the PostgreSQL
postmaster's tree.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from ridgeline.deploy.bench import settlement_bench
from ridgeline.deploy.bench.peers import workload
from ridgeline.deploy.bench.peers.cpu import tree_cpu_seconds
from ridgeline.deploy.bench.peers.requirements import require_peers
from ridgeline.deploy.bench.security import BenchSecurity
from ridgeline.flows.payments import PaymentGateway

if TYPE_CHECKING:
    from ridgeline.deploy.run.postgres import PostgresServer

RIDGELINE, RESTATE, DBOS = "ridgeline", "restate", "dbos"
PEERS = (RESTATE, DBOS)


@dataclass(frozen=True)
class PeerPhase:
    system: str
    mode: str
    bookings: int
    confirmed: int
    confirmed_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_booking: float
    #: Rows per state in the system's store, and charges at the gateway for its bookings.
    states: dict[str, int]
    charges: int


class _Cpu:
    """CPU seconds of this process's tree and the postmaster's, from construction to :meth:`ms_per`."""

    def __init__(self, postmaster: int) -> None:
        import os

        self._pids = (os.getpid(), postmaster)
        self._before = self._read()

    def _read(self) -> float:
        return sum(tree_cpu_seconds(pid) for pid in self._pids)

    def ms_per(self, count: int) -> float:
        return round((self._read() - self._before) * 1000 / max(count, 1), 2)


def run_peers_benchmark(*, bookings: int, threads: int, latency_ms: int, paced: bool = True, secure: bool = True) -> dict[str, object]:
    """Ridgeline, then each peer, as fast as each goes; then, with ``paced``, each again at half the slowest one's rate."""
    binary = require_peers()
    started = datetime.now(timezone.utc)
    with settlement_bench.bench_servers("ridgeline-bench-peers-", latency_ms=latency_ms, secure=secure) as servers:
        server, security, root, gateway_url = servers.server, servers.security, servers.root, servers.gateway_url
        postmaster = servers.pids["postgres"]
        phases = [_ridgeline(servers, bookings, threads, postmaster, None)]
        for system in PEERS:
            phases.append(_peer(system, None, binary, server, security, root, gateway_url, bookings, threads, postmaster))
        rate = None
        if paced:
            rate = round(min(p.confirmed_per_second for p in phases) / 2, 1)
            phases.append(_ridgeline(servers, bookings, threads, postmaster, rate))
            for system in PEERS:
                phases.append(_peer(system, rate, binary, server, security, root, gateway_url, bookings, threads, postmaster))
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": settlement_bench.machine(),
        "settings": {"bookings": bookings, "threads": threads, "latency_ms": latency_ms, "paced_rate": rate, "transport": security.label},
        "phases": [asdict(p) for p in phases],
    }


def _ridgeline(servers: settlement_bench.BenchServers, count: int, threads: int, postmaster: int, rate: float | None) -> PeerPhase:
    """bench settle's batched phase as it is (``rate``: its paced phase at that rate)."""
    mode = "burst" if rate is None else "paced"
    charges_before = _charges(servers.security, servers.gateway_url)
    cpu = _Cpu(postmaster)
    settled = settlement_bench.phase("batched" if rate is None else "paced", servers, count, threads, rate=rate)
    spent = cpu.ms_per(settled.confirmed)
    states = {"confirmed": settled.confirmed}
    charges = _charges(servers.security, servers.gateway_url) - charges_before
    return PeerPhase(RIDGELINE, mode, count, settled.confirmed, settled.confirmed_per_second, settled.p50_ms, settled.p99_ms, spent, states, charges)


def _peer(
    system: str, rate: float | None, binary: Path, server: PostgresServer, security: BenchSecurity, root: Path, gateway_url: str, count: int, threads: int, postmaster: int
) -> PeerPhase:
    mode = "burst" if rate is None else "paced"
    name = f"peer_{system}_{mode}"
    server.create_database(name)
    dsn = server.libpq_dsn(name)
    workload.prepare(dsn)
    work = workload.bookings(count, f"{system}-{mode}-{uuid.uuid4().hex[:6]}")
    Console(stderr=True).print(f"[dim]{system} {mode}: {count} bookings from {threads} threads{f' at {rate:g}/s' if rate else ''}[/]")
    with PaymentGateway(gateway_url, security.node()) as gateway:
        if system == DBOS:
            from ridgeline.deploy.bench.peers import dbos_peer

            system_db = f"{name}_dbos"
            server.create_database(system_db)
            _read_committed(server, system_db)
            with dbos_peer.running(server.url(system_db, scheme="postgresql"), dsn, gateway):
                drive = _measured(dbos_peer.book, work, threads, rate, postmaster)
        else:
            from ridgeline.deploy.bench.peers import restate_peer

            (root / name).mkdir()
            with restate_peer.running(binary, root / name, dsn, gateway_url, security.certs.path if security.certs else None) as peer:
                caller = restate_peer.RestateCaller(peer.ingress)
                try:
                    drive = _measured(caller.book, work, threads, rate, postmaster)
                finally:
                    caller.close()
    result, spent = drive
    summary = result.summary()
    return PeerPhase(system, mode, count, len(result.latencies_ms), summary["confirmed_per_second"], summary["p50_ms"], summary["p99_ms"], spent, workload.tally(dsn), _peer_charges(security, gateway_url, work))


def _measured(book: Callable[[workload.Booking], bool], work: list[workload.Booking], threads: int, rate: float | None, postmaster: int) -> tuple[workload.Drive, float]:
    cpu = _Cpu(postmaster)
    result = workload.drive(book, work, threads, rate)
    return result, cpu.ms_per(len(result.latencies_ms))


def _read_committed(server: PostgresServer, database: str) -> None:
    """DBOS's system database at READ COMMITTED: its status writes are not retried on 40001 (see dbos_peer)."""
    import psycopg

    with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" SET default_transaction_isolation = \'read committed\'')


def _peer_charges(security: BenchSecurity, gateway_url: str, work: list[workload.Booking]) -> int:
    """Successful charges at the gateway whose reference is one of the phase's bookings."""
    wanted = {b.booking_id for b in work}
    with PaymentGateway(gateway_url, security.client("sre")) as admin:
        return sum(1 for c in admin.list_charges() if c.reference in wanted and c.status == "succeeded")


def _charges(security: BenchSecurity, gateway_url: str) -> int:
    """Successful charges of Ridgeline's phases so far: every charge not referencing a peer's booking."""
    with PaymentGateway(gateway_url, security.client("sre")) as admin:
        return sum(1 for c in admin.list_charges() if c.status == "succeeded" and not c.reference.startswith(("restate-", "dbos-")))


def ratios(report: dict[str, object]) -> list[dict[str, object]]:
    """Each phase's confirmed/s, p50, p99 and CPU as a ratio to the best peer of its mode (higher/lower is better as the measure goes)."""
    phases = report["phases"]
    assert isinstance(phases, list)
    out = []
    for phase in phases:
        peers = [p for p in phases if p["system"] in PEERS and p["mode"] == phase["mode"]]
        best = lambda key, pick: pick(p[key] for p in peers) or None  # noqa: E731
        out.append({
            "system": phase["system"], "mode": phase["mode"],
            "throughput": phase["confirmed_per_second"] / (best("confirmed_per_second", max) or float("nan")),
            "p50": phase["p50_ms"] / (best("p50_ms", min) or float("nan")),
            "p99": phase["p99_ms"] / (best("p99_ms", min) or float("nan")),
            "cpu": phase["cpu_ms_per_booking"] / (best("cpu_ms_per_booking", min) or float("nan")),
        })  # fmt: skip
    return out
