"""Two trek coordinator processes over one decision log, a storm of treks, and the checks of its aftermath.

The cluster is tests/trek_cluster.py's (one node per region, the gateway), its nodes
knowing both coordinators. Treks are planned by planner threads through
``routing.coordinator_set`` as a real planner would: every PlanTrek is retried with its
own idempotency key until some coordinator answers it, so a failover costs time, never a
trek. Who leads is read from the lease row itself.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta

import grpc
import httpx
from invariants import query
from trek_cluster import FINAL, TrekCluster, leg, plan_request

from ridgeline.deploy.run.processes import ReadyChild, free_port
from ridgeline.global_coordinator.leadership import STALE_DECISIONS_SQL
from ridgeline.routing.coordinator_set import CoordinatorSet
from ridgeline.v1 import trek_pb2 as tpb

LEASE_TTL_SECONDS = 2.0
HEARTBEAT_SECONDS = 0.5
#: Each leg in a different region: (basecamp, resource).
PLACES = (("argentiere", "argentiere-dorm"), ("abbot-pass", "abbot-bunk"), ("plaza-de-mulas", "mulas-dome"))


@dataclass
class Coordinators:
    """The two coordinator processes, by id, and where each serves."""

    cluster: TrekCluster
    targets: dict[str, str]
    processes: dict[str, ReadyChild] = field(default_factory=dict)
    #: node_id -> its Prometheus endpoint.
    metrics: dict[str, str] = field(default_factory=dict)

    def start(self, node_id: str, *, env: dict[str, str] | None = None) -> ReadyChild:
        self.metrics[node_id] = f"127.0.0.1:{free_port()}"
        timing = ["--lease-ttl", str(LEASE_TTL_SECONDS), "--heartbeat-interval", str(HEARTBEAT_SECONDS), "--metrics-listen", self.metrics[node_id]]
        self.processes[node_id] = self.cluster.start_coordinator(target=self.targets[node_id], extra=["--node-id", node_id, *timing], env=env, leading=False)
        return self.processes[node_id]

    def leader(self) -> tuple[str, int] | None:
        """(holder, epoch) of the valid lease, from the log; None while none is valid."""
        rows = query(self.cluster.coordinator_db_url, "SELECT holder, epoch FROM coordinator_leader WHERE expires_at > clock_timestamp()")
        return (rows[0].holder, int(rows[0].epoch)) if rows else None

    def wait_leader(self, other_than_epoch: int, timeout_seconds: float) -> tuple[str, int, float]:
        """Polls the lease until an epoch above ``other_than_epoch`` is valid; (holder, epoch, seconds waited)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout_seconds:
            leader = self.leader()
            if leader is not None and leader[1] > other_than_epoch:
                return leader[0], leader[1], time.monotonic() - began
            time.sleep(0.02)
        raise AssertionError(f"no new leader within {timeout_seconds} s of the old one's end (lease: {self.leader()})")

    def refused_writes(self, node_id: str) -> int:
        """Log writes the database refused this coordinator for a stale epoch (its own count)."""
        samples = httpx.get(f"http://{self.metrics[node_id]}/metrics", timeout=5).text
        return sum(int(float(line.split()[-1])) for line in samples.splitlines() if line.startswith("ridgeline_coordinator_fence_refused_total "))

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@contextmanager
def two_coordinators(cluster: TrekCluster, more: dict[str, str], *, env: dict[str, str] | None = None) -> Iterator[Coordinators]:
    """coordinator-a (started first: it leads) on the module's port and coordinator-b on ``more``'s."""
    coordinators = Coordinators(cluster, {"coordinator-a": cluster.target, **more})
    try:
        coordinators.start("coordinator-a", env=env)
        coordinators.start("coordinator-b", env=env)
        leader = coordinators.leader()
        assert leader is not None and leader[0] == "coordinator-a", f"the first coordinator started leads: {leader}"
        yield coordinators
    finally:
        coordinators.stop()


def peer_target() -> dict[str, str]:
    return {"coordinator-b": f"127.0.0.1:{free_port()}"}


class TrekStorm:
    """Planner threads planning two-region treks without pause, each retried with its key until answered."""

    def __init__(self, coordinators: Coordinators, threads: int = 4) -> None:
        self._set = CoordinatorSet(list(coordinators.targets.values()), coordinators.cluster.certs.planner)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._plan, args=(i,), daemon=True) for i in range(threads)]
        self._lock = threading.Lock()
        self.keys: list[str] = []
        #: When each PlanTrek was answered with a decision (monotonic): the storm's pulse.
        self.decided_at: list[float] = []
        self.unanswered: list[str] = []

    def __enter__(self) -> TrekStorm:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self._set.close()

    def _plan(self, index: int) -> None:
        rng = random.Random(index)
        stub = self._set.stub(attempt_timeout_seconds=3.0)
        while not self._stop.is_set():
            key = str(uuid.uuid4())
            first, second = rng.sample(PLACES, 2)
            start = date.today() + timedelta(days=20 + rng.randrange(300))
            legs = [leg(*first, start), leg(*second, start + timedelta(days=3))]
            with self._lock:
                self.keys.append(key)
            until = time.monotonic() + 30
            while time.monotonic() < until:
                try:
                    trek = stub.PlanTrek(plan_request(key, legs), timeout=10)
                except grpc.RpcError as error:
                    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), error
                    continue
                if trek.decision != tpb.DECISION_PENDING:
                    with self._lock:
                        self.decided_at.append(time.monotonic())
                break
            else:
                with self._lock:
                    self.unanswered.append(key)

    def first_decision_after(self, instant: float, timeout_seconds: float) -> float:
        """Seconds from ``instant`` to the first PlanTrek answered with a decision after it."""
        until = time.monotonic() + timeout_seconds
        while time.monotonic() < until:
            with self._lock:
                later = [t for t in self.decided_at if t > instant]
            if later:
                return min(later) - instant
            time.sleep(0.02)
        raise AssertionError(f"no trek decided within {timeout_seconds} s")


def wait_all_final(coordinators: Coordinators, keys: list[str], timeout_seconds: float = 40.0) -> list[tpb.Trek]:
    """Every trek the storm planned, once final, read through whichever coordinator leads."""
    db = coordinators.cluster.coordinator_db_url
    rows = query(db, "SELECT idempotency_key, CAST(trek_id AS TEXT) AS trek_id FROM treks WHERE idempotency_key = ANY(%(keys)s)", {"keys": keys})
    ids = {row.idempotency_key: row.trek_id for row in rows}
    assert set(ids) == set(keys), f"{len(set(keys) - set(ids))} planned treks were never recorded"
    until = time.monotonic() + timeout_seconds
    finals: dict[str, tpb.Trek] = {}
    with CoordinatorSet(list(coordinators.targets.values()), coordinators.cluster.certs.planner) as coordinator_set:
        stub = coordinator_set.stub(attempt_timeout_seconds=2.0)
        while len(finals) < len(ids) and time.monotonic() < until:
            for trek_id in sorted(set(ids.values()) - set(finals)):
                trek = stub.GetTrek(tpb.GetTrekRequest(trek_id=trek_id), timeout=5)
                if trek.state in FINAL:
                    finals[trek_id] = trek
            time.sleep(0.2)
    assert len(finals) == len(ids), f"{len(ids) - len(finals)} treks not final after {timeout_seconds} s"
    return list(finals.values())


def stale_decisions(coordinators: Coordinators) -> list:
    """Decisions the log holds that were written under an epoch that no longer led (must be none)."""
    return query(coordinators.cluster.coordinator_db_url, STALE_DECISIONS_SQL)


def decisions_by_epoch(coordinators: Coordinators) -> dict[int, int]:
    rows = query(coordinators.cluster.coordinator_db_url, "SELECT epoch, count(*) AS n FROM trek_decisions GROUP BY epoch")
    return {int(row.epoch): int(row.n) for row in rows}
