"""Wires and runs the global coordinator process (deploy/ is the composition root).

The coordinator imports only routing and proto; here it is given what it may not import:
the decision log's engine and retry helper (``regional.db``), the payment adapter
(``flows.payments``) behind the coordinator's :class:`Payments` shape, and the routing
client (``RoutedParticipants``) that finds each leg's owner from seed nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import start_http_server
from sqlalchemy import Connection, Engine

from ridgeline.deploy.run.termination import Termination
from ridgeline.flows import payments as gateway
from ridgeline.global_coordinator import schema
from ridgeline.global_coordinator.errors import StoreUnavailable
from ridgeline.global_coordinator.participants import RoutedParticipants
from ridgeline.global_coordinator.payments import LedgerCharge, PaymentRefused, PaymentUnknown
from ridgeline.global_coordinator.protocol import CoordinatorConfig
from ridgeline.global_coordinator.server import CoordinatorServer
from ridgeline.regional.errors import BookingError
from ridgeline.regional.storage.db import make_engine, run_transaction
from ridgeline.trust.credentials import Transport

_log = logging.getLogger(__name__)
T = TypeVar("T")


class GatewayPayments:
    """The coordinator's Payments over the flows' gateway adapter (retries, breaker, keys)."""

    def __init__(self, base_url: str, transport: Transport) -> None:
        self._gateway = gateway.PaymentGateway(base_url, transport, timeout_seconds=2.0, attempts_max=3, backoff_cap_seconds=0.2)

    def charge(self, idempotency_key: str, amount_cents: int, currency: str, reference: str) -> str:
        try:
            return self._gateway.charge(idempotency_key, amount_cents, currency, reference).charge_id
        except gateway.PaymentDeclined as error:
            raise PaymentRefused(str(error)) from error
        except gateway.PaymentError as error:  # unavailable, or a conflict we cannot judge here
            raise PaymentUnknown(str(error)) from error

    def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> None:
        try:
            self._gateway.refund(idempotency_key, charge_id, amount_cents)
        except gateway.PaymentError as error:
            raise PaymentUnknown(str(error)) from error

    def charges_for(self, reference: str) -> list[LedgerCharge]:
        try:
            return [
                LedgerCharge(c.charge_id, c.status == "succeeded", c.amount_cents, c.refunded_cents, c.currency)
                for c in self._gateway.list_charges(reference=reference)
            ]
        except gateway.PaymentError as error:
            raise PaymentUnknown(str(error)) from error

    def close(self) -> None:
        self._gateway.close()


def transactor(engine: Engine) -> Callable[[Callable[[Connection], T]], T]:
    """``run_transaction`` on the log's engine, its failures as the coordinator's StoreUnavailable."""

    def transact(work: Callable[[Connection], T]) -> T:
        try:
            return run_transaction(engine, work)
        except BookingError as error:
            raise StoreUnavailable(f"decision log: {error}") from error

    return transact


def serve_until_signalled(
    database_url: str,
    listen: str,
    seeds: list[str],
    gateway_url: str,
    config: CoordinatorConfig,
    *,
    transport: Transport,
    workers: int = 32,
    metrics_listen: str = "127.0.0.1:0",
    dial: dict[str, str] | None = None,
) -> None:
    """Migrates the log, serves TrekService, prints ``READY coordinator host:port``, blocks until a signal.

    ``transport`` is how it reaches the payment gateway (the node pair over mutual TLS)."""
    # One INFO line per gateway request costs more than the request's own CPU here.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # A coordinator paused (SIGSTOP, a stalled VM) inside a log transaction holds the leader
    # lease's share lock: the server ends that transaction within half a lease, so the
    # takeover waits at most that long, and the paused process cannot commit once it resumes.
    engine = make_engine(
        database_url, pool_size=workers + config.drive_workers + 2, application_name=f"ridgeline-{config.node_id}",
        idle_in_transaction_timeout_ms=max(500, int(config.lease_ttl_seconds * 500)),
    )
    schema.migrate(engine)
    payments = GatewayPayments(gateway_url, transport)
    metrics_host, metrics_port = metrics_listen.rsplit(":", 1)
    metrics, _ = start_http_server(int(metrics_port), addr=metrics_host)
    participants = RoutedParticipants(seeds, transport=transport, dial=dial)
    server = CoordinatorServer(config, listen, transactor(engine), participants, payments, transport=transport, workers=workers)
    termination = Termination()
    server.start()
    _log.info("coordinator metrics on http://%s:%d/metrics", metrics_host, metrics.server_port)
    epoch = server.coordinator.leadership.epoch
    _log.info("coordinator %s %s", config.node_id, f"leads with epoch {epoch}" if epoch else "follows")
    print(f"READY coordinator {server.address}", flush=True)
    try:
        termination.wait()
    finally:
        server.stop()
        metrics.shutdown()
        payments.close()
        engine.dispose()
