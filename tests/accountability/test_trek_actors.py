"""The decision log names who planned, decided and cancelled each trek (issue 11, item 4).

A real coordinator (protocol and decision log on a real PostgreSQL database) with
participants that always answer: the coordinator's own decisions name ``node:<id>``, a
CancelTrek names its planner as who cancelled and, for an undecided trek, who decided.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine
from trek_stand_ins import LandingLegs, LandingParticipants

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.global_coordinator import decision_log as log
from ridgeline.global_coordinator import schema
from ridgeline.global_coordinator.convert import trek_pb
from ridgeline.global_coordinator.decision_log import LegPlan, TrekState
from ridgeline.global_coordinator.payments import LedgerCharge
from ridgeline.global_coordinator.protocol import Coordinator, CoordinatorConfig, TrekRequest
from ridgeline.regional.storage.db import make_engine, run_transaction
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb

PLANNER = "planner:bob"


class _AgreeingLegs(LandingLegs):
    """A participant stub that prepares every leg (free of charge) and lands every move."""

    def PrepareLeg(self, request: tpb.PrepareLegRequest, timeout: float) -> tpb.TrekLegReply:  # noqa: N802 - the RPC's name
        booking = pb.Booking(booking_id=str(uuid.uuid4()), total_price_cents=0, currency="EUR")
        return tpb.TrekLegReply(trek_id=request.trek_id, leg_index=request.leg_index, state=tpb.LEG_STATE_PREPARED, booking=booking)


class _NoPayments:
    def charge(self, idempotency_key: str, amount_cents: int, currency: str, reference: str) -> str:
        raise AssertionError("a free trek is not charged")

    def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> None:
        raise AssertionError("nothing to refund")

    def charges_for(self, reference: str) -> list[LedgerCharge]:
        return []


@pytest.fixture
def engine(region_servers: dict[str, PostgresServer]) -> Iterator[Engine]:
    made = make_engine(region_servers["eu-alps"].create_database(f"coordinator_{uuid.uuid4().hex[:12]}"), pool_size=4)
    schema.migrate(made)
    yield made
    made.dispose()


@pytest.fixture
def coordinator(engine: Engine) -> Iterator[Coordinator]:
    config = CoordinatorConfig(advertise_target="127.0.0.1:1", node_id="coordinator-test", redrive_interval_seconds=3600)
    made = Coordinator(config, lambda work: run_transaction(engine, work), LandingParticipants(_AgreeingLegs()), _NoPayments())
    made.start()
    yield made
    made.stop()


def _request() -> TrekRequest:
    start = date.today() + timedelta(days=30)
    return TrekRequest(str(uuid.uuid4()), "trekker", (LegPlan("eu-alps", "argentiere", "argentiere-dorm", start, start + timedelta(days=1), 1),))


def test_the_coordinator_names_itself_on_its_decisions_and_the_planner_on_plan_and_cancel(coordinator: Coordinator) -> None:
    committed = coordinator.plan(_request(), wait_seconds=10, actor=PLANNER)
    assert committed.state is TrekState.COMMITTED
    assert (committed.planned_by, committed.decided_by, committed.cancelled_by) == (PLANNER, "node:coordinator-test", None)

    cancelled = coordinator.cancel(committed.trek_id, "", actor="planner:carol")
    assert (cancelled.planned_by, cancelled.decided_by, cancelled.cancelled_by) == (PLANNER, "node:coordinator-test", "planner:carol")
    shown = trek_pb(coordinator.get(committed.trek_id))
    assert (shown.planned_by, shown.decided_by, shown.cancelled_by) == (PLANNER, "node:coordinator-test", "planner:carol")


def test_a_cancel_of_an_undecided_trek_is_the_planners_decision(coordinator: Coordinator, engine: Engine) -> None:
    request, now = _request(), coordinator._clock()
    trek = log.planned(trek_id=str(uuid.uuid4()), customer_id="trekker", legs=request.legs, now=now, prepare_deadline=now + timedelta(hours=1), planned_by=PLANNER)
    run_transaction(engine, lambda conn: log.new_trek(conn, trek, key=request.idempotency_key, fingerprint=request.fingerprint()))

    aborted = coordinator.cancel(trek.trek_id, "change of plans", actor="planner:carol")
    assert aborted.decision is log.Decision.ABORT
    assert (aborted.planned_by, aborted.decided_by, aborted.cancelled_by) == (PLANNER, "planner:carol", "planner:carol")


def test_a_trek_overdue_at_get_decision_is_aborted_by_the_coordinator(coordinator: Coordinator, engine: Engine) -> None:
    request, now = _request(), coordinator._clock()
    trek = log.planned(trek_id=str(uuid.uuid4()), customer_id="trekker", legs=request.legs, now=now - timedelta(hours=1), prepare_deadline=now - timedelta(minutes=1), planned_by=PLANNER)
    run_transaction(engine, lambda conn: log.new_trek(conn, trek, key=request.idempotency_key, fingerprint=request.fingerprint()))

    assert coordinator.decision_for(trek.trek_id)[0] is log.Decision.ABORT
    assert coordinator.get(trek.trek_id).decided_by == "node:coordinator-test"
