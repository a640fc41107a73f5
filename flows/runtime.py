"""What a settlement flow run works with, looked up by name inside the run.

Flow parameters travel to the Prefect API as JSON, so an engine or an HTTP client cannot
be one. The process that triggers flow runs (the node's settlement loop, a benchmark,
a test) registers its runtime under a name once and passes the name; a flow run looks
it up in the same process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from ridgeline.flows.outbox import SpoolSink
from ridgeline.flows.payments import PaymentGateway
from ridgeline.routing.leases import Fence


@dataclass(frozen=True)
class SettlePolicy:
    """Bounds of one settlement; every wait and retry has one."""

    #: Passes that may fail with the payment outcome unknown before settlement gives up,
    #: releases the hold and makes sure nothing stays charged.
    charge_passes_max: int = 3
    retry_delay_base_seconds: float = 0.5
    retry_delay_cap_seconds: float = 10.0
    #: No charge is started for a hold that lapses sooner than this: confirm would fail.
    confirm_margin_seconds: float = 1.0
    #: How long after giving up the refund step looks for a charge, so that a charge call
    #: the gateway is still working on (a timed-out one) has landed; the adapter's whole
    #: call budget (timeout x attempts) is enough.
    refund_grace_seconds: float = 2.0
    #: Bookings of one flow run settled at once (gateway calls overlap their latency).
    concurrency_max: int = 32
    #: Outbox messages delivered per flow run.
    deliver_batch_max: int = 500

    def retry_delay_seconds(self, attempts: int) -> float:
        return min(self.retry_delay_cap_seconds, self.retry_delay_base_seconds * 2 ** max(attempts - 1, 0))


@dataclass(frozen=True)
class SettlementRuntime:
    engine: Engine
    gateway: PaymentGateway
    spool: SpoolSink
    clock: Callable[[], datetime]
    policy: SettlePolicy
    #: The basecamp leases the process holds now (basecamp_id -> epoch): settlement claims
    #: and moves only those bookings, and every move carries the epoch (invariant 6).
    fence: Callable[[], Fence]


_lock = threading.Lock()
_runtimes: dict[str, SettlementRuntime] = {}


def register(name: str, runtime: SettlementRuntime) -> None:
    with _lock:
        _runtimes[name] = runtime


def unregister(name: str) -> None:
    with _lock:
        _runtimes.pop(name, None)


def lookup(name: str) -> SettlementRuntime:
    with _lock:
        found = _runtimes.get(name)
    if found is None:
        raise LookupError(f"no settlement runtime {name!r} in this process")
    return found
