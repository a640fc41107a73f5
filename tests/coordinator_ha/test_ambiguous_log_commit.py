"""A decision-log write whose COMMIT is cut (outcome unknown) is resolved by running it again, never assumed.

A deferred constraint trigger ends the database session at COMMIT of the first two
decision inserts, so the coordinator sees its connection drop during COMMIT twice running
(whatever the retry helper does with the first, the second reaches the coordinator). The coordinator runs the
same keyed write again: the decision lands exactly once, under the epoch that leads, and
the trek ends aborted. The other half of "unknown" (it did commit, the reply was lost) is
the same write run twice: the second finds the first's row and answers it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

from prometheus_client import REGISTRY
from sqlalchemy import Engine, text
from trek_stand_ins import LandingParticipants, drive_until_final

from ridgeline.deploy.run.coordinator_process import transactor
from ridgeline.global_coordinator import decision_log as log
from ridgeline.global_coordinator import leadership
from ridgeline.global_coordinator.payments import LedgerCharge
from ridgeline.global_coordinator.protocol import Coordinator, CoordinatorConfig
from ridgeline.regional.storage.db import run_transaction

_CUT_COMMITS = (
    "CREATE SEQUENCE commit_cuts",
    """
    CREATE FUNCTION cut_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF nextval('commit_cuts') <= 2 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE CONSTRAINT TRIGGER cut_commit AFTER INSERT ON trek_decisions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cut_commit()",
)


class _NoCharges:
    def charge(self, idempotency_key: str, amount_cents: int, currency: str, reference: str) -> str:
        raise AssertionError("an aborted trek is not charged")

    def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> None:
        raise AssertionError("nothing to refund")

    def charges_for(self, reference: str) -> list[LedgerCharge]:
        return []


def _overdue_trek(engine: Engine) -> log.TrekRecord:
    now = datetime.now(timezone.utc)
    legs = [log.LegPlan("eu-alps", "argentiere", "argentiere-dorm", date(2027, 3, 1), date(2027, 3, 2), 1)]
    trek = log.planned(trek_id=str(uuid.uuid4()), customer_id="c", legs=legs, now=now - timedelta(minutes=5), prepare_deadline=now - timedelta(minutes=4), planned_by="planner:test")
    run_transaction(engine, lambda conn: log.new_trek(conn, trek, key=trek.trek_id, fingerprint="f"))
    return trek


def _unknown_outcomes() -> float:
    return REGISTRY.get_sample_value("ridgeline_coordinator_log_outcome_unknown_total") or 0.0


def test_a_decision_whose_commit_is_cut_twice_lands_once_when_the_coordinator_runs_it_again(log_engine: Engine) -> None:
    trek = _overdue_trek(log_engine)
    with log_engine.begin() as conn:
        for statement in _CUT_COMMITS:
            conn.execute(text(statement))
    before = _unknown_outcomes()
    config = CoordinatorConfig(advertise_target="127.0.0.1:1", node_id="coordinator-test", redrive_interval_seconds=3600)
    # It takes the lease and re-drives the overdue trek at once: presumed abort.
    ended = drive_until_final(Coordinator(config, transactor(log_engine), LandingParticipants(), _NoCharges()), trek.trek_id, 20)
    assert ended.state is log.TrekState.ABORTED and ended.decision is log.Decision.ABORT, ended
    rows = run_transaction(log_engine, lambda conn: conn.execute(text("SELECT epoch FROM trek_decisions WHERE trek_id = :t"), {"t": trek.trek_id}).all())
    assert [row.epoch for row in rows] == [1], "one decision, under the leading epoch"
    cuts = run_transaction(log_engine, lambda conn: conn.execute(text("SELECT last_value FROM commit_cuts")).scalar_one())
    assert cuts == 3, "two COMMITs were cut, the third attempt landed"
    # The retry helper may resolve the first cut itself (a reconnect) or report it as unknown;
    # at least the second reaches the coordinator, which runs the keyed write again.
    assert 1 <= _unknown_outcomes() - before <= 2, "the coordinator ran the write again after an unknown outcome"


def test_a_decision_written_twice_answers_the_first_so_a_retry_after_a_lost_reply_changes_nothing(log_engine: Engine) -> None:
    trek = _overdue_trek(log_engine)
    granted = run_transaction(log_engine, lambda conn: leadership.acquire(conn, holder="c", incarnation="c-1", address="c:1", ttl_seconds=30, lock_wait_ms=1000))
    assert granted is not None
    epoch, _ = granted
    outcome = log.PrepareOutcome(0, True, str(uuid.uuid4()), 4200, "EUR")
    charge = log.ChargeRecord("EUR", 4200, "ch_1", 0)

    def write(conn):  # noqa: ANN001, ANN202 - the same write a retry sends again
        return log.record_decision(conn, trek, [outcome], [charge], log.Decision.COMMIT, "paid", datetime.now(timezone.utc), "node:c", epoch=epoch)

    first = run_transaction(log_engine, write)
    again = run_transaction(log_engine, write)
    assert (again.decision, again.state, again.charges) == (first.decision, first.state, first.charges) == (log.Decision.COMMIT, log.TrekState.COMMITTING, (charge,))
    counts = run_transaction(
        log_engine,
        lambda conn: conn.execute(
            text("SELECT (SELECT count(*) FROM trek_decisions WHERE trek_id = :t) AS d, (SELECT count(*) FROM trek_charges WHERE trek_id = :t) AS c"), {"t": trek.trek_id}
        ).one(),
    )
    assert (counts.d, counts.c) == (1, 1)
