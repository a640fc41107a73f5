"""What a settlement flow run works with, looked up by name inside the run.

Flow parameters travel to the Prefect API as JSON, so an engine or an HTTP client cannot
be one. The process that triggers flow runs (the node's settlement loop, the CLI's flow
commands, a benchmark, a test) builds its runtime once with
:func:`build_settlement_runtime`, which registers it under a name, and passes the name;
a flow run looks it up in the same process. :func:`close_settlement_runtime` ends it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from sqlalchemy import Engine

from ridgeline.flows import prefect_settings
from ridgeline.flows.outbox import SpoolSink
from ridgeline.flows.payments import PaymentGateway
from ridgeline.regional.storage.db import make_engine, read_transaction
from ridgeline.regional.workflows import versions
from ridgeline.routing import leases
from ridgeline.routing.leases import Fence
from ridgeline.trust.identity import node_actor


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
    #: Charged bookings confirmed in one transaction (one set-based statement); a smaller
    #: transaction is retried more cheaply when a concurrent write conflicts with it.
    confirm_batch_max: int = 64
    #: Outbox messages delivered per flow run.
    deliver_batch_max: int = 500
    #: settle@2: how long after a declined (or unknown) balance charge it is tried again,
    #: until the grace period ends.
    balance_retry_seconds: float = 6 * 3600.0

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
    #: Who the record names beside what these runs change (``node:<id>``): settlement acts
    #: by itself, on no caller's behalf.
    actor: str
    #: The workflow versions this process runs: it claims and advances only bookings of
    #: these, and leaves every other one alone (ARCHITECTURE.md §11).
    workflows: frozenset[str] = frozenset(versions.KNOWN)


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


def build_settlement_runtime(
    name: str,
    database_url: str,
    gateway: PaymentGateway,
    outbox_dir: Path,
    *,
    policy: SettlePolicy = SettlePolicy(),
    fence: Callable[[], Fence] | None = None,
    borrowed_basecamps: Sequence[str] = (),
    pool_size: int = 4,
    application_name: str = "ridgeline-settle",
    actor: str | None = None,
    workflows: Sequence[str] = versions.KNOWN,
) -> SettlementRuntime:
    """The runtime for this process's settlement flow runs, registered under ``name``.

    It owns a new engine on ``database_url`` (``pool_size`` connections: one per booking
    settled at once, per flow run in flight) and ``gateway``; both are closed by
    :func:`close_settlement_runtime`. Prefect's lean client settings are installed first
    (:func:`.prefect_settings.install`; ``PREFECT_API_URL`` must be set), since every
    process that builds a runtime runs flows. Which bookings it may move (invariant 6):

    * ``fence``: the leases the process holds itself (a node: its lease keeper's view);
    * ``borrowed_basecamps``: settling for a serving node from outside it (a benchmark's
      baseline, a test): the valid leases of these basecamps, read at every use;
    * neither: no lease, so nothing moves (the sweep and reconcile commands).

    ``actor``: how the record names the changes its runs make; a node passes its own
    (``node:<node id>``), any other process is named after ``application_name``.
    ``workflows``: the versions it runs (a node: the ones it advertises).
    """
    assert fence is None or not borrowed_basecamps, "a runtime holds its own leases or borrows a node's, not both"
    assert pool_size >= 1, "a runtime needs at least one connection"
    prefect_settings.install()
    engine = make_engine(database_url, pool_size=pool_size, application_name=application_name)
    if borrowed_basecamps:
        fence = partial(borrowed_fence, engine, list(borrowed_basecamps))
    actor = actor or node_actor(application_name)
    runtime = SettlementRuntime(
        engine, gateway, SpoolSink(outbox_dir), partial(datetime.now, timezone.utc), policy, fence or dict, actor, frozenset(workflows)
    )
    register(name, runtime)
    return runtime


def close_settlement_runtime(name: str) -> None:
    """Unregisters the runtime and closes what it owns: the gateway adapter and the engine."""
    with _lock:
        runtime = _runtimes.pop(name)
    runtime.gateway.close()
    runtime.engine.dispose()


def borrowed_fence(engine: Engine, basecamp_ids: Sequence[str]) -> Fence:
    """The epochs of the basecamps' valid leases now: for code that settles on behalf of a
    serving node from outside it, never for a node, which writes under its own leases."""
    return read_transaction(engine, lambda conn: leases.valid_epochs(conn, basecamp_ids))
