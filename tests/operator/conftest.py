"""An eu-alps node with its settlement loop running (real Prefect, real gateway process), and operator stubs per identity."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from certificates import AGENCIES, SessionCerts
from gateway_process import Gateway

from ridgeline.flows.circuit_breaker import CircuitBreaker
from ridgeline.flows.loop import LoopPolicy, SettlementLoop
from ridgeline.flows.payments import PaymentGateway
from ridgeline.flows.runtime import SettlePolicy, build_settlement_runtime, close_settlement_runtime
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.trust.certs import create_client
from ridgeline.trust.identity import Role
from ridgeline.v1 import booking_pb2_grpc as pb_grpc
from ridgeline.v1 import operator_pb2_grpc as opb_grpc

BASECAMPS = ["argentiere", "hoernli", "gouter", "capanna-margherita"]
#: A desk scoped to hoernli only.
SCOPED_DESK = "desk-hoernli"


@dataclass
class Cluster:
    node: RegionalNode
    url: str
    #: OperatorService as a principal, and BookingService as the desk.
    stubs: Callable[[str], tuple[opb_grpc.OperatorServiceStub, pb_grpc.BookingServiceStub]]


@pytest.fixture(scope="session")
def scoped_desk(certs: SessionCerts) -> str:
    create_client(certs.certs, Role.DESK, SCOPED_DESK, scope=["hoernli"])
    return SCOPED_DESK


@pytest.fixture
def operated(alps_db, certs: SessionCerts, scoped_desk: str, prefect_api: str, payment_gateway: Gateway, tmp_path: Path) -> Iterator[Cluster]:
    """A node whose settlement loop retries slowly on its own (30 s), so an operator's retry is what makes it try now."""
    payment_gateway.faults()
    config = NodeConfig(
        region="eu-alps", node_id="op-node", database_url=alps_db.url, workers=16, max_concurrent_rpcs=256,
        certs_dir=certs.dir, operator_refund_grace_seconds=0.5,
    )
    node = RegionalNode(config)
    node.start()
    breaker = CircuitBreaker(failure_threshold=1000, cooldown_seconds=0.1)
    gateway = PaymentGateway(payment_gateway.url, payment_gateway.transport(), timeout_seconds=0.5, attempts_max=1, backoff_base_seconds=0.01, backoff_cap_seconds=0.05, breaker=breaker)
    policy = SettlePolicy(charge_passes_max=50, retry_delay_base_seconds=30, retry_delay_cap_seconds=60, refund_grace_seconds=0.5)
    name = f"op-{uuid.uuid4().hex[:8]}"
    rt = build_settlement_runtime(name, alps_db.url, gateway, tmp_path / "spool", policy=policy, borrowed_basecamps=BASECAMPS, pool_size=20)
    loop = SettlementLoop(name, rt, LoopPolicy(claim_seconds=3, idle_pause_max_seconds=0.2, reconcile_interval_seconds=3600))
    loop.start()
    channels: list[grpc.Channel] = []

    def stubs(principal: str) -> tuple[opb_grpc.OperatorServiceStub, pb_grpc.BookingServiceStub]:
        """OperatorService as ``principal``, and BookingService as the desk that books."""
        channels.extend([certs.client(principal).channel(node.address), certs.desk.channel(node.address)])
        return opb_grpc.OperatorServiceStub(channels[-2]), pb_grpc.BookingServiceStub(channels[-1])

    try:
        yield Cluster(node, alps_db.url, stubs)
    finally:
        for channel in channels:
            channel.close()
        loop.stop()
        close_settlement_runtime(name)
        node.stop(grace_seconds=1)
        payment_gateway.faults()


__all__ = ["AGENCIES", "BASECAMPS", "Cluster", "SCOPED_DESK"]
