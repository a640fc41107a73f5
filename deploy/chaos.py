"""Chaos drills: a steady-state hypothesis, load, a fault on a timeline, recovery, an audit.

Every drill runs the same way (:func:`run_drill`): start the load generator, let it
settle, inject the fault, hold it, restore, wait until the hypothesis holds again (a
probe hold succeeds on every affected basecamp), stop the load, then audit every region
database and check that every booking the load was told about still stands. The report
carries the timeline, the load figures, the recovery times and every audit verdict; a
drill passes only when the audit passes and recovery came within the drill's bound.

Drills act on a local cluster (`ridgeline up`, or a throwaway one), because injecting
faults needs the processes: SIGKILL, SIGSTOP, stopping a region database. Drills for
parts that are not built yet say so instead of pretending.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import grpc

from ridgeline.routing.router import ClusterClient, ClusterUnreachable, UnknownBasecamp

from .audit import AuditReport, check_acknowledged, run_audit
from .load import LoadGenerator, LoadReport, LoadSettings
from .local_cluster import LocalCluster
from .postgres import PostgresServer


@dataclass(frozen=True)
class DrillTimes:
    """How long each phase lasts, seconds (tests use a short form)."""

    warmup: float = 5.0
    fault: float = 10.0
    recovery_max: float = 60.0
    cooldown: float = 3.0


@dataclass
class DrillRun:
    """What a drill did and saw: filled in as it goes."""

    drill: str
    hypothesis: str
    timeline: list[tuple[float, str]] = field(default_factory=list)
    recovery_seconds: dict[str, float] = field(default_factory=dict)
    recovery_bound_seconds: float = 0.0
    load: LoadReport | None = None
    audit: AuditReport | None = None
    error: str | None = None
    _started: float = field(default_factory=time.monotonic)

    def note(self, event: str) -> None:
        self.timeline.append((round(time.monotonic() - self._started, 2), event))

    @property
    def recovered(self) -> bool:
        return bool(self.recovery_seconds) and max(self.recovery_seconds.values()) <= self.recovery_bound_seconds

    @property
    def passed(self) -> bool:
        return self.error is None and self.recovered and self.audit is not None and self.audit.passed

    def to_json(self) -> dict[str, object]:
        return {
            "drill": self.drill,
            "hypothesis": self.hypothesis,
            "passed": self.passed,
            "error": self.error,
            "timeline": [{"t": t, "event": e} for t, e in self.timeline],
            "recovery_seconds": self.recovery_seconds,
            "recovery_bound_seconds": self.recovery_bound_seconds,
            "load": self.load.to_json() if self.load else None,
            "errors_by_status": dict(self.load.errors_by_code()) if self.load else {},
            "audit": self.audit.to_json() if self.audit else None,
        }


class Fault:
    """One kind of fault: what it does to the cluster, and what recovery it waits for."""

    name: str
    hypothesis: str
    needs: str | None = None

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        """Applies the fault; returns the basecamps whose writes it interrupts."""
        raise NotImplementedError

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        raise NotImplementedError

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        """Seconds from the moment recovery starts (see ``recovers_from_injection``) to writable."""
        raise NotImplementedError

    #: True: recovery is timed from the injection (the cluster heals itself, e.g. failover);
    #: False: from the restore (nothing can heal before the fault is lifted).
    recovers_from_injection = True


class _NodeFault(Fault):
    """A fault on the node that owns the most basecamps; failover heals it without a restore."""

    signal_name = ""

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        self._victim, camps = _busiest_node(cluster)
        run.note(f"{self.signal_name} {self._victim} (owner of {', '.join(camps)})")
        self._strike(cluster, self._victim)
        return camps

    def _strike(self, cluster: LocalCluster, node_id: str) -> None:
        raise NotImplementedError

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        # The lease lapses, the ring's next owner takes it at its next heartbeat, and the
        # client may be one backoff pause behind.
        return cluster.spec.lease_ttl_seconds + cluster.spec.heartbeat_interval_seconds + 1.0


class KillNode(_NodeFault):
    name = "kill-node"
    signal_name = "SIGKILL"
    hypothesis = (
        "SIGKILL of the node owning the most basecamps: its basecamps are writable again within lease TTL + "
        "heartbeat (+1 s for the client's backoff), other basecamps never stop, nothing acknowledged is lost"
    )

    def _strike(self, cluster: LocalCluster, node_id: str) -> None:
        cluster.kill_node(node_id)

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        cluster.restart_node(self._victim)
        run.note(f"restarted {self._victim}")


class PauseNode(_NodeFault):
    name = "pause-node"
    signal_name = "SIGSTOP"
    hypothesis = (
        "SIGSTOP of a node for longer than its lease: its basecamps move to another node within lease TTL + "
        "heartbeat (+1 s), and after SIGCONT the database refuses whatever it still tries under its old epoch "
        "(the audit finds no change under a stale epoch); nothing acknowledged is lost"
    )

    def _strike(self, cluster: LocalCluster, node_id: str) -> None:
        os.kill(cluster.nodes[node_id].process.pid, signal.SIGSTOP)

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        os.kill(cluster.nodes[self._victim].process.pid, signal.SIGCONT)
        run.note(f"SIGCONT {self._victim}")


class StopRegionDatabase(Fault):
    name = "stop-region-db"
    hypothesis = (
        "The first region's database stops (fast shutdown) for the fault window: that region answers UNAVAILABLE, "
        "other regions keep booking, and after the restart its basecamps are writable again within 10 s; "
        "nothing acknowledged is lost"
    )
    recovers_from_injection = False

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        region = cluster.spec.regions[0].name
        self._database = _local_database(cluster, region)
        run.note(f"stop the {region} database")
        self._database.stop()
        return _basecamps_of(cluster, region)

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        self._database.start()
        run.note("restarted the database")

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        return 10.0


class NotBuilt(Fault):
    """A drill the issue asks for whose target is not part of the cluster yet."""

    def __init__(self, name: str, hypothesis: str, needs: str) -> None:
        self.name, self.hypothesis, self.needs = name, hypothesis, needs


DRILLS: dict[str, Callable[[], Fault]] = {
    "kill-node": KillNode,
    "pause-node": PauseNode,
    "stop-region-db": StopRegionDatabase,
    "kill-coordinator": lambda: NotBuilt(
        "kill-coordinator", "SIGKILL of the global coordinator mid-commit: every trek ends all-or-nothing after restart",
        "the global coordinator (cross-region treks issue)",
    ),
    "cut-region": lambda: NotBuilt(
        "cut-region", "A region cut off from the coordinator (fault proxy: latency, drop, reset, blackhole): treks abort or wait, none half-done",
        "the global coordinator (cross-region treks issue)",
    ),
    "gateway-slow": lambda: NotBuilt(
        "gateway-slow", "The payment gateway answers slowly: settlement backs off, holds still end, money balances", "settlement flows (settlement issue)"
    ),
    "gateway-flaky": lambda: NotBuilt(
        "gateway-flaky", "The payment gateway fails a share of calls: retries with the same key, no double charge", "settlement flows (settlement issue)"
    ),
    "gateway-down": lambda: NotBuilt(
        "gateway-down", "The payment gateway is down: the breaker opens, holds are released or wait, money balances", "settlement flows (settlement issue)"
    ),
    "prefect-down": lambda: NotBuilt(
        "prefect-down", "The Prefect API is down: holds are still taken, settlement catches up after", "settlement flows (settlement issue)"
    ),
}


def run_drill(fault: Fault, cluster: LocalCluster, times: DrillTimes, *, concurrency: int = 4, progress: Callable[[str], None] = lambda _: None) -> DrillRun:
    """Runs one drill against ``cluster`` and returns what happened (never raises for a failed drill)."""
    run = DrillRun(fault.name, fault.hypothesis)
    if fault.needs is not None:
        run.error = f"not runnable yet: needs {fault.needs}"
        return run
    seeds = [r.address for r in cluster.nodes.values()]
    total = times.warmup + times.fault + times.recovery_max + times.cooldown
    generator = LoadGenerator(LoadSettings(seeds=seeds, duration_seconds=total, concurrency=concurrency, call_timeout_seconds=5.0))
    stop = threading.Event()
    result: dict[str, LoadReport] = {}
    loader = threading.Thread(target=lambda: result.setdefault("load", generator.run(stop)), daemon=True)
    run.note(f"load: {concurrency} desks")
    loader.start()
    try:
        time.sleep(times.warmup)
        progress(f"inject {fault.name}")
        injected = time.monotonic()
        affected = fault.inject(cluster, run)
        run.recovery_bound_seconds = fault.recovery_bound(cluster, times)
        probes = _Probes(seeds, affected, run)
        if fault.recovers_from_injection:
            probes.start(injected)
        time.sleep(times.fault)
        progress("restore")
        fault.restore(cluster, run)
        if not fault.recovers_from_injection:
            probes.start(time.monotonic())
        run.recovery_seconds = probes.wait(times.recovery_max)
        run.note("recovered" if len(run.recovery_seconds) == len(affected) else "NOT recovered in time")
        time.sleep(times.cooldown)
    except Exception as error:  # noqa: BLE001 - a drill reports its own failure
        run.error = f"{type(error).__name__}: {error}"
    finally:
        stop.set()
        loader.join(60)
        run.note("load stopped")
    run.load = result.get("load")
    progress("audit")
    urls = {r.name: str(r.database_url) for r in cluster.spec.regions}
    audit = run_audit(urls)
    if run.load is not None:
        audit.checks.append(check_acknowledged(urls, run.load.acknowledged))
    run.audit = audit
    run.note("audit " + ("passed" if audit.passed else "FAILED"))
    return run


class _Probes:
    """One probe thread per affected basecamp: a hold every 100 ms until one succeeds."""

    def __init__(self, seeds: list[str], basecamps: list[str], run: DrillRun) -> None:
        self._seeds, self._basecamps, self._run = seeds, basecamps, run
        self._recovered: dict[str, float] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def start(self, since: float) -> None:
        for basecamp in self._basecamps:
            thread = threading.Thread(target=self._probe, args=(basecamp, since), daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait(self, timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        self._stop.set()
        return dict(self._recovered)

    def _probe(self, basecamp: str, since: float) -> None:
        with ClusterClient(self._seeds, timeout_seconds=1.0, attempts_max=2) as client:
            resource = None
            night = date.today() + timedelta(days=400)
            while not self._stop.is_set():
                try:
                    if resource is None:
                        camp = next(b for b in client.list_basecamps(client.region_of(basecamp)).basecamps if b.basecamp_id == basecamp)
                        resource = camp.resources[0].resource_id
                    hold = client.place_hold(basecamp, resource, night - timedelta(days=40), night - timedelta(days=39), 1, "drill-probe", hold_ttl_seconds=10)
                except (grpc.RpcError, ClusterUnreachable, UnknownBasecamp):
                    time.sleep(0.1)  # not yet: the fault still bites
                    continue
                self._recovered[basecamp] = round(time.monotonic() - since, 2)
                self._run.note(f"{basecamp} writable again (hold {hold.booking_id[:8]})")
                return


def _busiest_node(cluster: LocalCluster) -> tuple[str, list[str]]:
    """The live node holding the most leases in a region with more than one node, and its basecamps."""
    with ClusterClient([r.address for r in cluster.nodes.values()], timeout_seconds=5) as client:
        infos = client.cluster_info()
    held: dict[str, list[str]] = {}
    for info in infos:
        if len(info.members) < 2:
            continue
        for owner in info.owners:
            if owner.node_id:
                held.setdefault(owner.node_id, []).append(owner.basecamp_id)
    if not held:
        raise RuntimeError("no region has two live nodes: a node fault needs somewhere for its basecamps to go")
    victim = max(sorted(held), key=lambda node: len(held[node]))
    return victim, sorted(held[victim])


def _basecamps_of(cluster: LocalCluster, region: str) -> list[str]:
    with ClusterClient([r.address for r in cluster.nodes.values()], timeout_seconds=5) as client:
        return sorted(b.basecamp_id for b in client.list_basecamps(region).basecamps)


def _local_database(cluster: LocalCluster, region: str) -> PostgresServer:
    database = cluster.databases.get(region)
    if database is None:
        raise RuntimeError(f"the {region} database is not run by this machine's cluster; a database drill needs a local one")
    return database
