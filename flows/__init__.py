"""Booking workflows after the hold: settlement, sweeps and reconciliation as Prefect flows.

A process that runs flows builds one runtime with :func:`.runtime.build_settlement_runtime`
(engine, payment gateway adapter, outbox spool, bounds, fence) and passes its name to the
flows. The flows, imported on use because they load Prefect: :mod:`.settle` (charge,
confirm, deliver: one flow run per micro-batch), :mod:`.sweep` (expire lapsed holds on
demand), :mod:`.reconcile` (the gateway's ledger against the bookings) and :mod:`.loop`
(the node's settlement loop that runs them). Beside them: the payment gateway adapter
(:mod:`.payments`, with :mod:`.circuit_breaker`), the mail spool (:mod:`.outbox`), lean
Prefect client settings (:mod:`.prefect_settings`) and the settlement's crash points for
tests (:mod:`.crash_points`).
"""

from ridgeline.flows.circuit_breaker import BreakerState, CircuitBreaker
from ridgeline.flows.payments import PaymentGateway
from ridgeline.flows.runtime import SettlementRuntime, SettlePolicy, build_settlement_runtime, close_settlement_runtime

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "PaymentGateway",
    "SettlePolicy",
    "SettlementRuntime",
    "build_settlement_runtime",
    "close_settlement_runtime",
]
