"""``ridgeline bench cluster``: failover time and routed throughput of a local cluster.

Failover: a region of two nodes takes holds on one basecamp through the routing client
without pause; the basecamp's owner is SIGKILLed; the time from the kill to the first
hold that succeeds again on that basecamp is one sample. The killed node is restarted
and ownership settles before the next sample. Bound: lease TTL + one heartbeat (plus
the client's backoff).

Throughput: the same desk threads place holds through the routing client, first on a
cluster of one region with one node (the baseline), then on 3 regions x 2 nodes, in the
same run; the ratio is what the cluster adds on this machine (2 cores here: six node
processes and three PostgreSQL servers share them, so expect it near or below 1).

Region primary failover (``--database-failovers``, database_failover.py): SIGKILL of a
Patroni leader's PostgreSQL under holds, on a one-region cluster of its own.
Coordinator failover (deploy/bench/coordinator_failover_bench.py), on a stack of its own
with two coordinators: SIGKILL of the leading coordinator to the first trek decided
after it, ``coordinator_failovers`` samples. Goal ≤ 3 s.

Both clusters speak mutual TLS with the certificates LocalCluster makes in their state
directory; each desk thread is a desk of its own (deploy/bench/security.py), the ring
is read as the local ``sre``. ``ridgeline --insecure bench cluster`` runs them in plaintext.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import grpc
from rich.console import Console

from ridgeline.deploy.bench.coordinator_failover_bench import GOAL_SECONDS, measure_coordinator_failovers
from ridgeline.deploy.bench.coordinator_failover_bench import HEARTBEAT_SECONDS as COORDINATOR_HEARTBEAT_SECONDS
from ridgeline.deploy.bench.coordinator_failover_bench import LEASE_TTL_SECONDS as COORDINATOR_LEASE_TTL_SECONDS
from ridgeline.deploy.bench.database_failover import DatabaseFailoverResult, run_database_failovers
from ridgeline.deploy.bench.security import BenchSecurity
from ridgeline.deploy.cluster.cluster_file import ClusterSpec, NodeSpec, RegionSpec, with_free_ports
from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.routing import ClusterClient, ClusterUnreachable
from ridgeline.routing.ring import propose_owners
from ridgeline.trust.credentials import Transport

_err = Console(stderr=True)


@dataclass(frozen=True)
class ThroughputResult:
    label: str
    nodes: int
    holds_per_second: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]


@dataclass(frozen=True)
class FailoverResult:
    samples_seconds: list[float]
    lease_ttl_seconds: float
    heartbeat_interval_seconds: float

    @property
    def median(self) -> float:
        return statistics.median(self.samples_seconds)

    @property
    def worst(self) -> float:
        return max(self.samples_seconds)


@dataclass(frozen=True)
class ClusterBenchReport:
    """One run: the baseline's and the cluster's throughput, then the failover samples."""

    #: When the run started (UTC, ISO 8601).
    date: str
    threads: int
    seconds: float
    #: The baseline (one node) first, then 3 regions x 2 nodes.
    throughput: tuple[ThroughputResult, ThroughputResult]
    failover: FailoverResult
    #: SIGKILL of a region's Patroni primary (None: not measured, --database-failovers 0).
    database_failover: DatabaseFailoverResult | None = None
    #: SIGKILL of the leading coordinator to the next trek decision (None: not measured).
    coordinator_failover: FailoverResult | None = None

    @property
    def ratio(self) -> float | None:
        """The cluster's holds/s over the baseline's; None when the baseline placed none."""
        baseline, full = self.throughput
        return full.holds_per_second / baseline.holds_per_second if baseline.holds_per_second else None

    def to_json(self) -> dict[str, object]:
        failover = self.failover
        coordinator = self.coordinator_failover
        return {
            "date": self.date,
            "threads": self.threads,
            "seconds": self.seconds,
            "throughput": [asdict(r) for r in self.throughput],
            "ratio": self.ratio,
            "failover": {**asdict(failover), "median": failover.median if failover.samples_seconds else None,
                         "max": failover.worst if failover.samples_seconds else None},
            "database_failover": self.database_failover.to_json() if self.database_failover else None,
            "coordinator_failover": {**asdict(coordinator), "median": coordinator.median, "max": coordinator.worst, "goal_seconds": GOAL_SECONDS}
            if coordinator and coordinator.samples_seconds else None,
        }


def run_cluster_benchmark(
    *, seconds: float, threads: int, failovers: int, lease_ttl: float, heartbeat: float, secure: bool = True,
    database_failovers: int = 0, coordinator_failovers: int = 0,
) -> ClusterBenchReport:
    """The baseline on a one-node cluster, then throughput and ``failovers`` samples on
    3 regions x 2 nodes (mTLS unless not ``secure``), then ``database_failovers`` samples of a
    region primary's loss on Patroni (database_failover.py) and ``coordinator_failovers``
    samples on two coordinators; every cluster is throwaway and removed at the end."""
    started = datetime.now(timezone.utc)
    root = Path(tempfile.mkdtemp(prefix="ridgeline-bench-cluster-"))
    try:
        single = _spec("single", {"eu-alps": 1}, lease_ttl, heartbeat)
        full = _spec("3x2", {"eu-alps": 2, "na-rockies": 2, "sa-andes": 2}, lease_ttl, heartbeat)
        baseline = _throughput(single, root / "single", seconds, threads, "1 region x 1 node (baseline)", secure=secure)
        local = LocalCluster(full, root / "full", progress=lambda step: _err.print(f"[dim]{step}…[/]"), settlement=False, insecure=not secure)
        local.start()
        try:
            spread = _drive_throughput(local, seconds, threads, "3 regions x 2 nodes")
            failover = _failovers(local, failovers, lease_ttl, heartbeat)
        finally:
            local.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    database = run_database_failovers(database_failovers, secure=secure) if database_failovers else None
    coordinator = None
    if coordinator_failovers:
        samples = measure_coordinator_failovers(coordinator_failovers, secure=secure)
        coordinator = FailoverResult(samples, COORDINATOR_LEASE_TTL_SECONDS, COORDINATOR_HEARTBEAT_SECONDS)
    return ClusterBenchReport(started.isoformat(timespec="seconds"), threads, seconds, (baseline, spread), failover, database, coordinator)


def _spec(name: str, nodes_per_region: dict[str, int], lease_ttl: float, heartbeat: float) -> ClusterSpec:
    regions = tuple(
        RegionSpec(region, tuple(NodeSpec(f"{region}-{i}", region, "127.0.0.1:0") for i in range(1, count + 1)))
        for region, count in nodes_per_region.items()
    )
    spec = ClusterSpec(name=name, regions=regions)
    return with_free_ports(spec, lease_ttl_seconds=lease_ttl, heartbeat_interval_seconds=heartbeat)


def _throughput(spec: ClusterSpec, state_dir: Path, seconds: float, threads: int, label: str, *, secure: bool) -> ThroughputResult:
    local = LocalCluster(spec, state_dir, progress=lambda step: _err.print(f"[dim]{step}…[/]"), settlement=False, insecure=not secure)
    local.start()
    try:
        return _drive_throughput(local, seconds, threads, label)
    finally:
        local.stop()


def _drive_throughput(local: LocalCluster, seconds: float, threads: int, label: str) -> ThroughputResult:
    seeds = [run.address for run in local.nodes.values()]
    with ClusterClient(seeds, transport=local.client_transport("desk")) as client:
        camps = [(b.basecamp_id, b.resources[0].resource_id) for b in client.list_basecamps().basecamps]
    desks = BenchSecurity(None if local.insecure else local.certs).desks(threads)
    _err.print(f"[dim]{label}: {threads} desks, {seconds:g} s over {len(camps)} basecamps[/]")
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    first_night = date.today() + timedelta(days=2)

    def desk(index: int) -> None:
        rng = random.Random(index)
        mine: list[float] = []
        failed: Counter[str] = Counter()
        with ClusterClient(seeds, transport=desks[index]) as desk_client:
            while not stop.is_set():
                basecamp, resource = rng.choice(camps)
                night = first_night + timedelta(days=rng.randrange(300))
                began = time.perf_counter()
                try:
                    desk_client.place_hold(basecamp, resource, night, night + timedelta(days=1), 1, f"bench-{index}", hold_ttl_seconds=600)
                    mine.append(time.perf_counter() - began)
                except grpc.RpcError as error:
                    failed[error.code().name] += 1
        with lock:
            latencies.extend(mine)
            errors.update(failed)

    workers = [threading.Thread(target=desk, args=(i,), daemon=True) for i in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join(30)
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return ThroughputResult(
        label=label,
        nodes=len(local.nodes),
        holds_per_second=len(ordered) / elapsed,
        p50_ms=_percentile(ordered, 0.50) * 1000,
        p99_ms=_percentile(ordered, 0.99) * 1000,
        errors=dict(errors),
    )


def _failovers(local: LocalCluster, samples: int, lease_ttl: float, heartbeat: float) -> FailoverResult:
    region = local.spec.regions[0]
    node_ids = [n.node_id for n in region.nodes]
    seeds = [run.address for run in local.nodes.values() if run.region == region.name]
    with ClusterClient(seeds, transport=local.client_transport("desk")) as client:
        camps = {b.basecamp_id: b.resources[0].resource_id for b in client.list_basecamps(region.name).basecamps}
    owners = propose_owners(node_ids, camps)
    basecamp = sorted(camps)[0]
    results: list[float] = []
    for sample in range(samples):
        victim = owners[basecamp]
        _err.print(f"[dim]failover {sample + 1}/{samples}: SIGKILL {victim}, owner of {basecamp}[/]")
        results.append(_one_failover(local, seeds, basecamp, camps[basecamp], victim, sample))
        local.restart_node(victim)
        _wait_settled(seeds, local.client_transport("sre"), region.name, owners, timeout=lease_ttl * 4 + 10)
    return FailoverResult(results, lease_ttl, heartbeat)


def _one_failover(local: LocalCluster, seeds: list[str], basecamp: str, resource: str, victim: str, sample: int) -> float:
    """Seconds from SIGKILL of the owner to the first hold that succeeds again on the basecamp."""
    successes: list[float] = []
    stop = threading.Event()

    def desk(index: int) -> None:
        rng = random.Random(sample * 100 + index)
        with ClusterClient(seeds, transport=local.client_transport("desk"), timeout_seconds=2) as client:
            while not stop.is_set():
                night = date.today() + timedelta(days=2 + rng.randrange(300))
                try:
                    client.place_hold(basecamp, resource, night, night + timedelta(days=1), 1, "failover", hold_ttl_seconds=600)
                    successes.append(time.monotonic())
                except grpc.RpcError:
                    pass

    desks = [threading.Thread(target=desk, args=(i,), daemon=True) for i in range(2)]
    for thread in desks:
        thread.start()
    time.sleep(1.0)
    local.kill_node(victim)
    killed = time.monotonic()
    deadline = killed + 60
    while time.monotonic() < deadline and not any(t > killed for t in successes):
        time.sleep(0.01)
    stop.set()
    for thread in desks:
        thread.join(10)
    after = [t for t in successes if t > killed]
    if not after:
        raise RuntimeError(f"{basecamp} never became writable again within 60 s of killing {victim}")
    return min(after) - killed


def _wait_settled(seeds: list[str], transport: Transport, region: str, owners: dict[str, str], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with ClusterClient(seeds, transport=transport, timeout_seconds=2) as client:
        while time.monotonic() < deadline:
            try:
                info = next(i for i in client.cluster_info() if i.region == region)
            except (ClusterUnreachable, StopIteration):  # a node is still starting
                time.sleep(0.2)
                continue
            if {o.basecamp_id: o.node_id for o in info.owners} == owners:
                return
            time.sleep(0.2)
    raise RuntimeError(f"ownership in {region} did not settle back within {timeout:.0f} s")


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
