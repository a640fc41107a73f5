"""Wires settlement into a node process: engine, gateway adapter, mail spool, Prefect, loop.

The loop settles the basecamps whose leases the node holds (``fence``: the node's lease
keeper's view), so a basecamp's settlements move with its ownership.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ridgeline.flows.circuit_breaker import CircuitBreaker
from ridgeline.flows.loop import LoopPolicy, SettlementLoop
from ridgeline.flows.payments import PaymentGateway
from ridgeline.flows.runtime import SettlePolicy, build_settlement_runtime, close_settlement_runtime
from ridgeline.regional.workflows import versions
from ridgeline.routing.leases import Fence
from ridgeline.trust.credentials import Transport
from ridgeline.trust.identity import node_actor


@dataclass(frozen=True)
class SettlementConfig:
    gateway_url: str
    #: How the node reaches the gateway: its node pair over mutual TLS (or insecure).
    transport: Transport
    outbox_dir: Path
    #: One gateway call: per-attempt timeout and attempts (the adapter retries with the same key).
    payment_timeout_seconds: float = 2.0
    payment_attempts_max: int = 3
    breaker_failures_max: int = 5
    breaker_cooldown_seconds: float = 2.0
    settle: SettlePolicy = field(default_factory=SettlePolicy)
    loop: LoopPolicy = field(default_factory=LoopPolicy)


class NodeSettlement:
    """The settlement half of a node process; start after the node, stop before it."""

    def __init__(
        self,
        config: SettlementConfig,
        *,
        node_id: str,
        database_url: str,
        fence: Callable[[], Fence],
        workflows: Sequence[str] = versions.KNOWN,
        booked: threading.Event | None = None,
    ) -> None:
        """``booked``: the node's event set after each Book commits, which wakes the loop."""
        policy = config.settle
        gateway = PaymentGateway(
            config.gateway_url,
            config.transport,
            timeout_seconds=config.payment_timeout_seconds,
            attempts_max=config.payment_attempts_max,
            backoff_base_seconds=0.05,
            backoff_cap_seconds=0.5,
            breaker=CircuitBreaker(failure_threshold=config.breaker_failures_max, cooldown_seconds=config.breaker_cooldown_seconds),
            connections_max=policy.concurrency_max * config.loop.runs_in_flight_max,
        )
        self._name = f"node:{node_id}"
        self.runtime = build_settlement_runtime(
            self._name, database_url, gateway, config.outbox_dir, policy=policy, fence=fence,
            pool_size=policy.concurrency_max * config.loop.runs_in_flight_max + 2, application_name=f"ridgeline-{node_id}-settle",
            actor=node_actor(node_id), workflows=workflows,
        )
        self.loop = SettlementLoop(self._name, self.runtime, config.loop, wake=booked)

    def start(self) -> None:
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop()
        close_settlement_runtime(self._name)


def settlement_config(
    gateway_url: str,
    transport: Transport,
    outbox_dir: Path,
    *,
    payment_timeout: float,
    payment_attempts: int,
    charge_passes: int,
    claim_seconds: float,
) -> SettlementConfig:
    """The node command's settlement options as a config; the rest keep their defaults."""
    return SettlementConfig(
        gateway_url=gateway_url,
        transport=transport,
        outbox_dir=outbox_dir,
        payment_timeout_seconds=payment_timeout,
        payment_attempts_max=payment_attempts,
        settle=SettlePolicy(charge_passes_max=charge_passes, refund_grace_seconds=payment_timeout * payment_attempts),
        loop=LoopPolicy(claim_seconds=claim_seconds),
    )
