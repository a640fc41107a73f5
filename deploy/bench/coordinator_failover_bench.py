"""Coordinator failover for ``ridgeline bench cluster``: SIGKILL of the leading coordinator to the next trek decided.

Two coordinators over one decision log (deploy/bench/bench_stack.py: one node per region,
the gateway). Two planner threads plan two-region treks without pause through
``routing.coordinator_set`` (a follower's hint or the next coordinator, each PlanTrek
retried with its own key). A sample: the coordinator that answers is SIGKILLed; the time
from the kill to the first PlanTrek answered with a decision after it. The killed one is
started again (it follows) and the next sample kills whichever leads then. Goal: ≤ 3 s
with the lease TTL of 2 s and heartbeat of 0.5 s (the bound is TTL + heartbeat plus a
trek's own prepare and commit).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import threading
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import grpc
from rich.console import Console

from ridgeline.deploy.bench.bench_stack import LEGS, BenchStack, bench_stack
from ridgeline.deploy.bench.security import BenchSecurity
from ridgeline.routing import night_range
from ridgeline.routing.coordinator_set import CoordinatorSet
from ridgeline.v1 import trek_pb2 as tpb

GOAL_SECONDS = 3.0
LEASE_TTL_SECONDS = 2.0
HEARTBEAT_SECONDS = 0.5
#: The longest one sample may take before the run gives up on it.
_SAMPLE_MAX_SECONDS = 30.0
_PLANNERS = 2

_err = Console(stderr=True)


def measure_coordinator_failovers(samples: int, *, secure: bool) -> list[float]:
    """``samples`` seconds from SIGKILL of the leading coordinator to the next trek decision, on a throwaway stack."""
    from ridgeline.deploy.run.postgres import PostgresServer, PostgresSettings

    assert samples > 0, samples
    root = Path(tempfile.mkdtemp(prefix="ridgeline-bench-coordinators-"))
    server = PostgresServer(root / "pg", settings=PostgresSettings(durable=False))
    try:
        server.start()
        security = BenchSecurity.made_in(root) if secure else BenchSecurity.plaintext()
        timing = ["--lease-ttl", str(LEASE_TTL_SECONDS), "--heartbeat-interval", str(HEARTBEAT_SECONDS)]
        with bench_stack(server, security, root / "coordinators", coordinators=("coordinator-1", "coordinator-2"), coordinator_options=timing) as running:
            with _Planners(running, security) as planners:
                return [_one_failover(running, planners, sample, samples) for sample in range(samples)]
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _one_failover(running: BenchStack, planners: _Planners, sample: int, samples: int) -> float:
    planners.decided_after(time.monotonic(), _SAMPLE_MAX_SECONDS)  # the storm is deciding treks
    time.sleep(1.0)
    leader = next(node_id for node_id, child in running.coordinators.items() if child.address == planners.coordinators.leader)
    os.kill(running.coordinators[leader].pid, signal.SIGKILL)
    killed = time.monotonic()
    took = planners.decided_after(killed, _SAMPLE_MAX_SECONDS)
    _err.print(f"[dim]coordinator failover {sample + 1}/{samples}: SIGKILL {leader}, next trek decided after {took:.2f} s[/]")
    running.coordinators[leader].process.wait(10)
    running.start_coordinator(leader)  # back as a follower
    return took


class _Planners:
    """Planner threads planning two-region treks through the coordinator set; when each decision came back."""

    def __init__(self, running: BenchStack, security: BenchSecurity) -> None:
        self.coordinators = CoordinatorSet(running.coordinator_addresses, security.client("planner"))
        self._decided: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._plan, args=(i,), daemon=True) for i in range(_PLANNERS)]

    def __enter__(self) -> _Planners:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self.coordinators.close()

    def decided_after(self, instant: float, timeout_seconds: float) -> float:
        """Seconds from ``instant`` to the first decision answered after it."""
        until = time.monotonic() + timeout_seconds
        while time.monotonic() < until:
            with self._lock:
                later = [t for t in self._decided if t > instant]
            if later:
                return min(later) - instant
            time.sleep(0.005)
        raise RuntimeError(f"no trek was decided within {timeout_seconds:.0f} s")

    def _plan(self, index: int) -> None:
        rng = random.Random(index)
        stub = self.coordinators.stub(attempt_timeout_seconds=3.0)
        while not self._stop.is_set():
            legs = []
            for _, camp, resource in rng.sample(LEGS, 2):
                night = date.today() + timedelta(days=3 + rng.randrange(360))
                legs.append(tpb.TrekLeg(basecamp_id=camp, resource_id=resource, nights=night_range(night, night + timedelta(days=1)), party_size=1))
            request = tpb.PlanTrekRequest(idempotency_key=str(uuid.uuid4()), customer_id=f"bench-{index}", legs=legs, wait=True)
            try:
                trek = stub.PlanTrek(request, timeout=10)
            except grpc.RpcError:
                continue  # no coordinator answered in time: a takeover is under way
            if trek.decision != tpb.DECISION_PENDING:
                with self._lock:
                    self._decided.append(time.monotonic())
