"""Chaos drills: a steady-state hypothesis, load, a fault on a timeline, recovery, an audit.

Every drill runs the same way (:func:`run_drill`): start the load generator, let it
settle, inject the fault, hold it, restore, wait until the hypothesis holds again (a
probe hold succeeds on every affected basecamp), stop the load, then audit every region
database and check that every booking the load was told about still stands. The report
carries the timeline, the load figures, the recovery times and every audit verdict; a
drill passes only when the audit passes and recovery came within the drill's bound.

Drills act on a local cluster, because injecting faults needs the processes: SIGKILL,
SIGSTOP, stopping a region database or the Prefect server, and the fault proxies between
the coordinator and the nodes. Every drill runs attached to a running ``ridgeline up``
(:meth:`LocalCluster.attach`: processes by pid, the proxies through up's control
endpoint) or on a throwaway cluster. A drill that kills or stops a part holds it down
first, so up's supervisor does not restart it mid-fault, and releases it to restore: the
supervisor starts it again (``deploy/run/supervisor.py``).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.deploy.drills.audit import AuditReport, check_acknowledged, run_audit
from ridgeline.deploy.drills.load import LoadGenerator, LoadReport, LoadSettings
from ridgeline.deploy.run import faults_in_force
from ridgeline.routing import ClusterClient, failure_text, night_range
from ridgeline.routing.coordinator_set import CoordinatorSet
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb


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
    times: DrillTimes
    timeline: list[tuple[float, str]] = field(default_factory=list)
    recovery_seconds: dict[str, float] = field(default_factory=dict)
    recovery_bound_seconds: float = 0.0
    load: LoadReport | None = None
    audit: AuditReport | None = None
    error: str | None = None
    #: When the fault bit (``strike``): what a self-healing recovery is timed from.
    struck: float | None = None
    _started: float = field(default_factory=time.monotonic)

    def note(self, event: str) -> None:
        self.timeline.append((round(time.monotonic() - self._started, 2), event))

    def strike(self, event: str) -> None:
        """Notes the fault's blow, called right before it: finding the target (a leader read
        from its log, the busiest node asked over gRPC) can take seconds on a loaded machine,
        and recovery is not owed before the fault has happened."""
        self.struck = time.monotonic()
        self.note(event)

    @property
    def recovered(self) -> bool:
        return bool(self.recovery_seconds) and max(self.recovery_seconds.values()) <= self.recovery_bound_seconds

    @property
    def passed(self) -> bool:
        return self.error is None and self.recovered and self.audit is not None and self.audit.passed

    def failures(self) -> list[str]:
        """Why the drill failed, one line per reason (none when it passed): what a report ends with."""
        reasons = [f"error: {self.error}"] if self.error else []
        if not self.recovered:
            stuck = next((e for _, e in reversed(self.timeline) if e.startswith("NOT recovered")), "no recovery measured")
            reasons.append(f"recovery {self.recovery_seconds or '{}'} over the bound {self.recovery_bound_seconds:.1f} s: {stuck}")
        if self.audit is None:
            reasons.append("no audit ran")
        elif not self.audit.passed:
            reasons.append("audit failed: " + "; ".join(f"{c.invariant} in {c.where} ({c.count})" for c in self.audit.checks if not c.passed))
        return reasons

    def to_json(self) -> dict[str, object]:
        return {
            "drill": self.drill,
            "hypothesis": self.hypothesis,
            "times_seconds": asdict(self.times),
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
    #: What of the cluster the drill touches, and how it puts it back (`chaos list` shows it).
    acts_on: str

    def __init__(self) -> None:
        #: Per probed target, the idempotency key and night of a probe write still unfinished.
        self._unfinished: dict[str, tuple[str, date]] = {}

    def _probe_write(self, target: str, night: date) -> tuple[str, date]:
        """The key and night of the probe write at ``target``: the unfinished one again, else a new one.

        A probe write that is still settling when its try ends (a Book not yet paid, a trek
        not yet decided) is asked about again under its key, not replaced: a new write would
        start its wait over, on a loaded machine past the bound, and time a recovery that had
        already happened. Call :meth:`_probe_done` once the write has an outcome."""
        return self._unfinished.setdefault(target, (str(uuid.uuid4()), night))

    def _probe_done(self, target: str) -> None:
        self._unfinished.pop(target, None)

    def prepare(self, cluster: LocalCluster, run: DrillRun) -> None:
        """Sets the stage before the load starts (e.g. a node moved behind fault proxies); most faults need none."""

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        """Applies the fault; returns the basecamps whose writes it interrupts."""
        raise NotImplementedError

    def finish(self, cluster: LocalCluster, run: DrillRun) -> None:
        """Undoes what prepare set up, whatever happened in between (runs once the load has stopped)."""

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        raise NotImplementedError

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        """Seconds from the moment recovery starts (see ``recovers_from_injection``) to writable."""
        raise NotImplementedError

    #: True: recovery is timed from the injection (the cluster heals itself, e.g. failover);
    #: False: from the restore (nothing can heal before the fault is lifted).
    recovers_from_injection = True
    #: True: the drill needs region databases on Patroni (`ridgeline up --ha`; `chaos run --fresh` starts them so).
    needs_patroni = False
    #: The background load's mix of operations.
    mix: dict[str, float] = {"hold": 3.0, "book": 5.0, "release": 1.0, "cancel": 1.0}

    def probe(self, client: ClusterClient, cluster: LocalCluster, basecamp: str, resource: str, night: date) -> str:
        """One try at what the fault broke; returns a note when it works (raises while it does not)."""
        hold = client.place_hold(basecamp, resource, night, night + timedelta(days=1), 1, "drill-probe", hold_ttl_seconds=10)
        return f"{basecamp} writable again (hold {hold.booking_id[:8]})"


class _NodeFault(Fault):
    """A fault on the node that owns the most basecamps; failover heals it without a restore."""

    signal_name = ""

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        self._victim, camps = busiest_node(cluster)
        run.strike(f"{self.signal_name} {self._victim} (owner of {', '.join(camps)})")
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
    acts_on = "the node owning the most basecamps: SIGKILL, then started again"
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
    acts_on = "the node owning the most basecamps: SIGSTOP, then SIGCONT"
    hypothesis = (
        "SIGSTOP of a node for longer than its lease: its basecamps move to another node within lease TTL + "
        "heartbeat (+1 s), and after SIGCONT the database refuses whatever it still tries under its old epoch "
        "(the audit finds no change under a stale epoch); nothing acknowledged is lost"
    )

    def _strike(self, cluster: LocalCluster, node_id: str) -> None:
        sigstop(cluster, node_id, cluster.nodes[node_id].process.pid)

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        sigcont(cluster, self._victim, cluster.nodes[self._victim].process.pid)
        run.note(f"SIGCONT {self._victim}")


class StopRegionDatabase(Fault):
    name = "stop-region-db"
    acts_on = "the first region's local PostgreSQL: stopped (held down), then started again by the supervisor"
    hypothesis = (
        "The first region's database stops (fast shutdown) for the fault window: that region answers UNAVAILABLE, "
        "other regions keep booking, and after the restart its basecamps are writable again within 10 s; "
        "nothing acknowledged is lost"
    )
    recovers_from_injection = False

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        self._region = cluster.spec.regions[0].name
        run.note(f"stop the {self._region} database")
        cluster.stop_database(self._region)  # held down: should this drill die, the supervisor starts it
        return basecamps_of(cluster, self._region)

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        cluster.restart_database(self._region)
        run.note("restarted the database")

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        return 10.0


class _SettlementFault(Fault):
    """A fault on what settlement depends on; recovery: a Book ends paid and confirmed again."""

    recovers_from_injection = False
    mix = {"hold": 1.0, "book": 1.0, "pay": 4.0, "cancel": 1.0}

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        # The breaker's cool-down plus a settlement pass or two.
        return 15.0

    def probe(self, client: ClusterClient, cluster: LocalCluster, basecamp: str, resource: str, night: date) -> str:
        key, night = self._probe_write(basecamp, night)
        # Settling takes a flow run and a gateway call: wait for it longer than a hold probe's deadline.
        with ClusterClient([r.address for r in cluster.nodes.values()], transport=cluster.client_transport("desk"), timeout_seconds=_SETTLE_PROBE_SECONDS) as patient:
            booking = patient.book(basecamp, resource, night, night + timedelta(days=1), 1, "drill-probe", hold_ttl_seconds=60, wait=True, idempotency_key=key)
        if booking.state == pb.BOOKING_STATE_HELD:
            raise _NotYet(f"booking {booking.booking_id[:8]} not settled yet")
        self._probe_done(basecamp)
        if booking.state != pb.BOOKING_STATE_CONFIRMED:  # payment refused, or the hold lapsed: a new Book next try
            raise _NotYet(f"booking {booking.booking_id[:8]} ended {pb.BookingState.Name(booking.state)}")
        return f"a Book at {basecamp} is paid and confirmed again ({booking.booking_id[:8]})"


class GatewayFault(_SettlementFault):
    """The payment gateway misbehaves (its run-time faults) for the fault window."""

    acts_on = "the payment gateway: faults set through its admin API, then cleared"

    def __init__(self, name: str, hypothesis: str, faults: dict[str, object]) -> None:
        super().__init__()
        self.name, self.hypothesis, self._faults = name, hypothesis, faults

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        faults_in_force.record(cluster.state_dir, "gateway-faults", {"lift": "gateway"})
        cluster.set_gateway_faults(self._faults)
        run.note(f"gateway faults {self._faults}")
        return [basecamps_of(cluster, cluster.spec.regions[0].name)[0]]

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        cluster.set_gateway_faults({})
        faults_in_force.lifted(cluster.state_dir, "gateway-faults")
        run.note("gateway faults cleared")


class PrefectDown(_SettlementFault):
    """The Prefect server stops for the fault window and comes back on the same port."""

    name = "prefect-down"
    acts_on = "the cluster's Prefect server: stopped, then started again on its port and database"
    hypothesis = (
        "The Prefect API is down: Book keeps taking holds (they wait in the database), no flow run can start, and "
        "once the API is back settlement catches up: paid bookings confirm within 15 s; money balances"
    )

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        cluster.stop_prefect()
        run.note("stopped the Prefect server")
        return [basecamps_of(cluster, cluster.spec.regions[0].name)[0]]

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        cluster.restart_prefect()
        run.note(f"restarted the Prefect server on {cluster.spec.prefect_api_url}")


class KillCoordinator(Fault):
    name = "kill-coordinator"
    acts_on = "every trek coordinator: SIGKILL, then started again"
    hypothesis = (
        "SIGKILL of every trek coordinator while treks are being planned: after their restart the one that leads "
        "re-drives every unfinished trek; every finished trek has all legs or none (audit 5), money balances (audit 4), "
        "and a new trek commits within 15 s of the restart"
    )
    recovers_from_injection = False
    mix = {"hold": 1.0, "trek": 4.0}

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        if not cluster.coordinators:
            raise RuntimeError("this cluster runs no trek coordinator")
        for node_id in cluster.coordinators:
            cluster.kill_coordinator(node_id)
        run.note(f"SIGKILL every coordinator ({', '.join(cluster.coordinators)})")
        return ["trek"]

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        cluster.restart_coordinator()
        run.note("restarted the coordinators")

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        return 15.0

    def probe(self, client: ClusterClient, cluster: LocalCluster, basecamp: str, resource: str, night: date) -> str:
        assert cluster.coordinators, "a trek probe needs a coordinator"
        key, night = self._probe_write("trek", night)
        # Whichever coordinator leads answers; a paused one is given up on after a few seconds.
        with CoordinatorSet([run.address for run in cluster.coordinators.values()], cluster.client_transport("planner")) as coordinators:
            # Sorted: a repeat of an unfinished probe trek must name the same legs as its key's first.
            camps = sorted(client.list_basecamps().basecamps, key=lambda c: c.basecamp_id)
            # The first and the last region: a cut drill cuts the last one.
            regions = list(dict.fromkeys([cluster.spec.regions[0].name, cluster.spec.regions[-1].name]))
            # A listing answered while a region's nodes are unreachable may lack its basecamps.
            missing = [r for r in regions if not any(c.region == r for c in camps)]
            if missing:
                raise _NotYet(f"no basecamp of {', '.join(missing)} listed yet")
            legs = [
                tpb.TrekLeg(basecamp_id=camp.basecamp_id, resource_id=camp.resources[0].resource_id,
                            nights=night_range(night + timedelta(days=2 * i), night + timedelta(days=2 * i + 1)), party_size=1)
                for i, camp in enumerate([next(c for c in camps if c.region == r) for r in regions])
            ]
            trek = coordinators.stub(attempt_timeout_seconds=_TREK_PROBE_ATTEMPT_SECONDS).PlanTrek(
                tpb.PlanTrekRequest(idempotency_key=key, customer_id="drill-probe", legs=legs, wait=True), timeout=10
            )
        if trek.decision in (tpb.DECISION_UNSPECIFIED, tpb.DECISION_PENDING):
            raise _NotYet(f"trek {trek.trek_id[:8]} not decided yet")
        self._probe_done("trek")
        if trek.decision != tpb.DECISION_COMMIT:  # aborted (a leg unreachable at its deadline): a new trek next try
            raise _NotYet(f"trek {trek.trek_id[:8]} aborted")
        return f"a trek commits again ({trek.trek_id[:8]})"


#: Operations per second of a drill's background load, well within what a local cluster
#: on 2 cores settles (BENCHMARKS.md: ~60 paid bookings/s at best).
DRILL_RATE = 20.0

#: How long a probe Book waits for its settlement.
_SETTLE_PROBE_SECONDS = 8.0
#: How long one coordinator may take over a probe trek before the probe asks another.
_TREK_PROBE_ATTEMPT_SECONDS = 3.0


class CutRegion(KillCoordinator):
    """The last region's nodes vanish from the coordinator's side only (its fault proxies blackhole)."""

    name = "cut-region"
    acts_on = "the coordinator's fault proxies to the last region's nodes: blackhole, then pass (a bounded fault)"
    hypothesis = (
        "The coordinator loses the path to one region (a blackhole: nothing answers, nothing is refused) while desks "
        "still reach it: treks touching it abort at their prepare deadline or wait for their commits, none is left "
        "half-done (audit 5), money balances (audit 4), and a trek through that region commits within 25 s of the path's return (one probe trek may be in flight when it returns)"
    )

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        region = cluster.spec.regions[-1].name
        paths = [cluster.coordinator_paths.get(n.node_id) for n in cluster.spec.regions[-1].nodes]
        if None in paths:
            raise RuntimeError("the coordinator dials the nodes without fault proxies here (a `ridgeline up` older than their control endpoint? restart it)")
        self._paths = [path for path in paths if path is not None]
        # Lifts itself should this process die mid-drill: at the latest when the drill would give up.
        for path in self._paths:
            path.set_mode("blackhole", lasting_seconds=run.times.fault + run.times.recovery_max)
        run.note(f"blackholed the coordinator's path to {region}")
        return ["trek"]

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        for path in self._paths:
            path.set_mode("pass")
        run.note("restored the coordinator's path")

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        # A probe trek planned just before the restore may wait out its prepare deadline
        # (5 s) and its call (10 s) before the next probe can show the path is back.
        return 25.0


class _NotYet(Exception):
    """A probe reached the cluster but the fault's effect is still there."""


def sigstop(cluster: LocalCluster, node_id: str, pid: int) -> None:
    """SIGSTOPs the node or coordinator ``node_id``, on record: should the drill die before
    :func:`sigcont`, ``up``'s supervisor sends the SIGCONT (:mod:`..run.faults_in_force`)."""
    faults_in_force.record(cluster.state_dir, f"stopped-{node_id}", {"lift": "sigcont", "pid": str(pid), "node_id": node_id})
    os.kill(pid, signal.SIGSTOP)


def sigcont(cluster: LocalCluster, node_id: str, pid: int) -> None:
    os.kill(pid, signal.SIGCONT)
    faults_in_force.lifted(cluster.state_dir, f"stopped-{node_id}")


DRILLS: dict[str, Callable[[], Fault]] = {
    "kill-node": KillNode,
    "pause-node": PauseNode,
    "stop-region-db": StopRegionDatabase,
    "kill-coordinator": KillCoordinator,
    "cut-region": CutRegion,
    "gateway-slow": lambda: GatewayFault(
        "gateway-slow",
        "The payment gateway answers in 1.5-2 s (beyond the adapter's timeout): Book keeps answering at once, settlement "
        "retries with the same keys, nothing is charged twice, money balances; paid bookings confirm within 15 s of recovery",
        {"latency_ms": 1500, "jitter_ms": 500},
    ),
    "gateway-flaky": lambda: GatewayFault(
        "gateway-flaky",
        "The payment gateway fails 40% of calls and loses 20% of replies after charging: retries with the same key, no "
        "double charge, every booking ends confirmed or released with nothing standing; clean again within 15 s",
        {"error_rate": 0.4, "lost_reply_rate": 0.2},
    ),
    "gateway-down": lambda: GatewayFault(
        "gateway-down",
        "The payment gateway is down: Book keeps taking holds, the breaker opens, unpaid holds are released or wait, "
        "money balances; paid bookings confirm within 15 s of the gateway's return",
        {"outage": True},
    ),
    "prefect-down": PrefectDown,
    "kill-region-primary": lambda: _database_drill("kill-region-primary"),
    "cut-node-from-database": lambda: _database_drill("cut-node-from-database"),
    "kill-coordinator-leader": lambda: _leader_drill("kill-coordinator-leader"),
    "pause-coordinator-leader": lambda: _leader_drill("pause-coordinator-leader"),
}


def _database_drill(name: str) -> Fault:
    """The region-database drills live in database_drills.py, which builds on this module."""
    from ridgeline.deploy.drills import database_drills

    return database_drills.DATABASE_DRILLS[name]()



def _leader_drill(name: str) -> Fault:
    """The coordinator failover drills (deploy/drills/coordinator_failover.py builds on KillCoordinator here)."""
    from ridgeline.deploy.drills.coordinator_failover import KillCoordinatorLeader, PauseCoordinatorLeader

    drill = {"kill-coordinator-leader": KillCoordinatorLeader, "pause-coordinator-leader": PauseCoordinatorLeader}[name]()
    assert drill.name == name, (drill.name, name)
    return drill


def run_drill(
    fault: Fault,
    cluster: LocalCluster,
    times: DrillTimes,
    *,
    concurrency: int = 4,
    rate: float | None = DRILL_RATE,
    progress: Callable[[str], None] = lambda _: None,
) -> DrillRun:
    """Runs one drill against ``cluster`` and returns what happened (never raises for a failed drill).

    The load is paced (``rate`` operations/s over all desks): a drill measures how the
    cluster recovers from a fault, which an unpaced load beyond the cluster's capacity
    would hide behind its own backlog (measured: settlement behind a saturating load took
    40 s to drain after a 5 s gateway outage; paced, it is back in seconds)."""
    run = DrillRun(fault.name, fault.hypothesis, times)
    seeds = [r.address for r in cluster.nodes.values()]
    total = times.warmup + times.fault + times.recovery_max + times.cooldown
    coordinator = ",".join(run.address for run in cluster.coordinators.values()) or None
    mix = fault.mix if coordinator or "trek" not in fault.mix else {k: v for k, v in fault.mix.items() if k != "trek"}
    generator = LoadGenerator(
        LoadSettings(
            seeds=seeds, transport=cluster.client_transport("desk"), duration_seconds=total, concurrency=concurrency, rate=rate,
            call_timeout_seconds=5.0, mix=mix, coordinator=coordinator, planner=cluster.client_transport("planner"),
        )
    )
    try:
        fault.prepare(cluster, run)
    except Exception as error:  # noqa: BLE001 - a drill reports its own failure
        run.error = f"{type(error).__name__}: {error}"
        fault.finish(cluster, run)
        return run
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
        probes = _Probes(seeds, cluster.client_transport("desk"), affected, run, lambda client, camp, resource, night: fault.probe(client, cluster, camp, resource, night))
        if fault.recovers_from_injection:
            probes.start(run.struck or injected)
        time.sleep(times.fault)
        progress("restore")
        fault.restore(cluster, run)
        if not fault.recovers_from_injection:
            probes.start(time.monotonic())
        # Never give up before the fault's own bound: a recovery inside it is a pass.
        run.recovery_seconds = probes.wait(max(times.recovery_max, run.recovery_bound_seconds))
        run.note("recovered" if len(run.recovery_seconds) == len(affected) else f"NOT recovered in time ({probes.last_failures()})")
        time.sleep(times.cooldown)
    except Exception as error:  # noqa: BLE001 - a drill reports its own failure
        run.error = f"{type(error).__name__}: {error}"
    finally:
        stop.set()
        loader.join(60)
        run.note("load stopped")
        fault.finish(cluster, run)
    run.load = result.get("load")
    progress("audit")
    urls = {r.name: str(r.database_url) for r in cluster.spec.regions}
    # Settlements and treks still in flight are not at rest yet: the audit leaves them out.
    audit = run_audit(
        urls, gateway_url=cluster.spec.gateway_url, gateway_transport=cluster.client_transport("sre"), coordinator_url=cluster.spec.coordinator_database_url, money_grace_seconds=0
    )
    if run.load is not None:
        audit.checks.append(check_acknowledged(urls, run.load.acknowledged))
    run.audit = audit
    run.note("audit " + ("passed" if audit.passed else "FAILED"))
    return run


class _Probes:
    """One probe thread per affected basecamp: the fault's probe every 100 ms until one works."""

    def __init__(self, seeds: list[str], transport: Transport, basecamps: list[str], run: DrillRun, probe: Callable[[ClusterClient, str, str, date], str]) -> None:
        self._seeds, self._transport, self._basecamps, self._run, self._try = seeds, transport, basecamps, run, probe
        self._recovered: dict[str, float] = {}
        #: Per basecamp, how its latest failed try failed: what a drill that did not recover reports.
        self._failures: dict[str, str] = {}
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

    def last_failures(self) -> str:
        """How each probe that never got through failed last (a drill report's only clue to why)."""
        pending = [b for b in self._basecamps if b not in self._recovered]
        return "; ".join(f"{b}: {self._failures.get(b, 'no try finished')}" for b in pending)

    def _probe(self, basecamp: str, since: float) -> None:
        rng = random.Random(basecamp)
        with ClusterClient(self._seeds, transport=self._transport, timeout_seconds=1.0, attempts_max=2) as client:
            resource = None
            while not self._stop.is_set():
                night = date.today() + timedelta(days=300 + rng.randrange(50))
                try:
                    if resource is None:
                        camps = client.list_basecamps().basecamps
                        resource = next((b.resources[0].resource_id for b in camps if b.basecamp_id == basecamp), "")
                    note = self._try(client, basecamp, resource, night)
                except Exception as error:  # noqa: BLE001 - not yet: the fault still bites, or what it left behind does
                    # Anything a try raises is a failed try, never the probe's end: a thread that
                    # died of an unforeseen exception would report "no recovery" and nothing else.
                    self._failures[basecamp] = failure_text(error)
                    time.sleep(0.1)
                    continue
                self._recovered[basecamp] = round(time.monotonic() - since, 2)
                self._run.note(note)
                return


def busiest_node(cluster: LocalCluster) -> tuple[str, list[str]]:
    """The live node holding the most leases in a region with more than one node, and its basecamps."""
    with ClusterClient([r.address for r in cluster.nodes.values()], transport=cluster.client_transport("sre"), timeout_seconds=5) as client:
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


def basecamps_of(cluster: LocalCluster, region: str) -> list[str]:
    with ClusterClient([r.address for r in cluster.nodes.values()], transport=cluster.client_transport("sre"), timeout_seconds=5) as client:
        return sorted(b.basecamp_id for b in client.list_basecamps(region).basecamps)
