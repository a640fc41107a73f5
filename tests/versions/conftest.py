"""Fixtures of the workflow-version tests: a node and settlement in this process on a clock the test advances."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from certificates import SessionCerts
from gateway_process import Gateway
from versioning import rollout

from ridgeline.flows import runtime as runtimes
from ridgeline.flows.loop import LoopPolicy, SettlementLoop
from ridgeline.flows.payments import PaymentGateway
from ridgeline.flows.runtime import SettlementRuntime, SettlePolicy, build_settlement_runtime, close_settlement_runtime
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode

BASECAMPS = ["argentiere", "hoernli", "gouter", "capanna-margherita"]


@dataclass
class AdvancingClock:
    """The wall clock plus an offset the test moves forward: timers fall due without waiting days."""

    offset: timedelta = field(default=timedelta())

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance_to(self, instant: datetime) -> None:
        assert instant > self(), "a clock only moves forward"
        self.offset = instant - datetime.now(timezone.utc)

    def reset(self) -> None:
        """Back to the wall clock: only between examples whose bookings are all at rest."""
        self.offset = timedelta()


@pytest.fixture
def clock() -> AdvancingClock:
    return AdvancingClock()


@pytest.fixture
def alps_node(alps_db, certs: SessionCerts, clock: AdvancingClock) -> Iterator[RegionalNode]:
    """The root conftest's node, on the test's advancing clock (the wall clock until a test moves it)."""
    node = RegionalNode(
        NodeConfig(region="eu-alps", node_id="test-node", database_url=alps_db.url, workers=16, max_concurrent_rpcs=256, certs_dir=certs.dir), clock=clock
    )
    node.start()
    yield node
    node.stop(grace_seconds=1)


@dataclass
class Settling:
    name: str
    runtime: SettlementRuntime
    clock: AdvancingClock
    url: str
    spool: Path
    loop: SettlementLoop


@pytest.fixture
def settling(
    alps_db, alps_node: RegionalNode, clock: AdvancingClock, prefect_api: str, payment_gateway: Gateway, certs: SessionCerts, tmp_path: Path
) -> Iterator[Settling]:
    """settle@2 rolled out to every new Book of the test's node, and a settlement loop for the
    node's basecamps (it writes under the node's leases) on an advancing clock."""
    payment_gateway.faults()
    rollout(certs, alps_node.address, "settle@2", 100)
    gateway = PaymentGateway(payment_gateway.url, payment_gateway.transport(), timeout_seconds=0.5, attempts_max=2, backoff_base_seconds=0.01, backoff_cap_seconds=0.05)
    name = f"versions-{uuid.uuid4().hex[:8]}"
    policy = SettlePolicy(charge_passes_max=2, retry_delay_base_seconds=0.2, refund_grace_seconds=1.0, balance_retry_seconds=3600.0)
    built = build_settlement_runtime(name, alps_db.url, gateway, tmp_path / "spool", policy=policy, borrowed_basecamps=BASECAMPS, pool_size=12)
    runtimes.register(name, dataclasses.replace(built, clock=clock))
    loop = SettlementLoop(name, runtimes.lookup(name), LoopPolicy(claim_seconds=3, idle_pause_max_seconds=0.2, reconcile_interval_seconds=3600))
    loop.start()
    yield Settling(name, runtimes.lookup(name), clock, alps_db.url, tmp_path / "spool", loop)
    loop.stop()
    close_settlement_runtime(name)
    payment_gateway.faults()
