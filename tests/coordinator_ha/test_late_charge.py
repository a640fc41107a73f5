"""Invariant 4 for a planner whose charge lands after its trek was aborted and ended.

The race a starved or SIGSTOPped leader runs into (seen under a loaded machine in the
pause-coordinator-leader drill): coordinator A prepares a trek and charges it, then
stalls; B takes the lease, presumes abort, finds nothing to refund at the provider and
ends the trek aborted; A's charge goes through, A leads again, and its fenced decision
write succeeds but finds B's abort standing. Before the fix the trek stayed ``aborted``
with A's charge recorded and standing: money taken for no booking. Now the write that
records the charge sends the trek back to ``aborting``, and a coordinator's redrive
refunds it at the real gateway and ends it again. Real PostgreSQL for the log, the real
gateway process for the money; the participants are stand-ins whose aborts land (every
leg was already aborted by B).
"""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta, timezone

from gateway_process import Gateway
from sqlalchemy import Engine, text
from trek_stand_ins import LandingParticipants, drive_until_final

from ridgeline.deploy.run.coordinator_process import GatewayPayments, transactor
from ridgeline.global_coordinator import decision_log as log
from ridgeline.global_coordinator import leadership
from ridgeline.global_coordinator.protocol import Coordinator, CoordinatorConfig
from ridgeline.regional.storage.db import run_transaction

TTL_SECONDS = 0.5
PRICE_CENTS = 10200


def _grant(engine: Engine, holder: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the other holder's lease lapses after TTL_SECONDS
        granted = run_transaction(engine, lambda conn: leadership.acquire(conn, holder=holder, incarnation=f"{holder}-1", address=f"{holder}:1", ttl_seconds=TTL_SECONDS, lock_wait_ms=5000))
        if granted is not None:
            return granted[0]
        time.sleep(0.1)
    raise AssertionError(f"{holder} was never granted the lease")


def _charges(engine: Engine, trek_id: str) -> list:
    return run_transaction(engine, lambda conn: conn.execute(text("SELECT amount_cents, refunded_cents FROM trek_charges WHERE trek_id = :t"), {"t": trek_id}).all())


def test_a_charge_recorded_after_another_leader_ended_the_trek_aborted_is_refunded(log_engine: Engine, payment_gateway: Gateway) -> None:
    now = datetime.now(timezone.utc)
    legs = [log.LegPlan("eu-alps", "argentiere", "argentiere-dorm", date(2027, 4, 1), date(2027, 4, 3), 2)]
    trek = log.planned(trek_id=str(uuid.uuid4()), customer_id="c", legs=legs, now=now - timedelta(seconds=30), prepare_deadline=now - timedelta(seconds=25), planned_by="planner:test")
    run_transaction(log_engine, lambda conn: log.new_trek(conn, trek, key=trek.trek_id, fingerprint="f"))

    # B leads, presumes abort, aborts the leg and ends the trek: the provider held nothing yet.
    b_epoch = _grant(log_engine, "coordinator-b")

    def b_aborts(conn):  # noqa: ANN001, ANN202
        assert log.decide(conn, trek.trek_id, log.Decision.ABORT, "presumed abort", datetime.now(timezone.utc), "node:coordinator-b", epoch=b_epoch) is log.Decision.ABORT
        log.set_legs(conn, trek.trek_id, [0], log.LegState.ABORTED)
        assert log.move(conn, trek.trek_id, [log.TrekState.ABORTING], log.TrekState.ABORTED, datetime.now(timezone.utc))

    run_transaction(log_engine, b_aborts)

    # A's charge goes through now, and A leads again: its decision write is fenced by its new epoch.
    payments = GatewayPayments(payment_gateway.url, payment_gateway.transport())
    try:
        charge_id = payments.charge(f"trek:{trek.trek_id}:EUR", PRICE_CENTS, "EUR", trek.trek_id)
        a_epoch = _grant(log_engine, "coordinator-a")
        outcome = log.PrepareOutcome(0, True, str(uuid.uuid4()), PRICE_CENTS, "EUR")
        charge = log.ChargeRecord("EUR", PRICE_CENTS, charge_id, 0)
        standing = run_transaction(
            log_engine,
            lambda conn: log.record_decision(conn, trek, [outcome], [charge], log.Decision.COMMIT, "paid", datetime.now(timezone.utc), "node:coordinator-a", epoch=a_epoch),
        )
        assert (standing.decision, standing.state) == (log.Decision.ABORT, log.TrekState.ABORTING), "B's abort stands, and the trek is not at rest while A's charge stands"
        assert trek.trek_id in run_transaction(log_engine, lambda conn: log.unfinished(conn, limit=1000)), "the redriver will find it"

        # A coordinator that leads next (after A's lease lapses) redrives it: refund, then aborted again.
        config = CoordinatorConfig(advertise_target="127.0.0.1:1", node_id="coordinator-c", redrive_interval_seconds=0.2, lease_ttl_seconds=TTL_SECONDS, heartbeat_interval_seconds=0.1)
        ended = drive_until_final(Coordinator(config, transactor(log_engine), LandingParticipants(), payments), trek.trek_id, 30)
        assert ended.state is log.TrekState.ABORTED, ended
        ledger = payments.charges_for(trek.trek_id)
        assert [(c.amount_cents, c.refunded_cents) for c in ledger] == [(PRICE_CENTS, PRICE_CENTS)], f"the provider refunded the late charge: {ledger}"
        assert [(r.amount_cents, r.refunded_cents) for r in _charges(log_engine, trek.trek_id)] == [(PRICE_CENTS, PRICE_CENTS)], "and the log says so"
    finally:
        payments.close()
