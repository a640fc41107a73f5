"""The participant side of a trek leg over real gRPC: fences, idempotency, no guessing.

Try-confirm-cancel with a fence row per (trek, leg) (ARCHITECTURE.md §5): a late prepare
after an abort is refused, an abort before any prepare is a no-op that leaves the fence,
a prepared leg is not expired by the sweep and is resolved by asking the coordinator.
"""

from __future__ import annotations

import uuid
from concurrent import futures
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from drive import night
from invariants import assert_history_consistent, assert_inventory_matches_bookings, query

from ridgeline.regional.booking.sweeper import sweep_once
from ridgeline.regional.storage.db import make_engine
from ridgeline.regional.trek_legs import participant as legs
from ridgeline.regional.trek_legs.resolver import resolve_in_doubt
from ridgeline.routing import night_range
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

Code = grpc.StatusCode


@pytest.fixture
def leg_stub(alps_node):
    with grpc.insecure_channel(alps_node.address) as channel:
        yield tpb_grpc.TrekLegServiceStub(channel)


def prepare_request(trek_id: str, leg_index: int = 0, *, party: int = 2, ttl: int = 60, resource: str = "argentiere-dorm") -> tpb.PrepareLegRequest:
    start = night(20)
    return tpb.PrepareLegRequest(
        trek_id=trek_id,
        leg_index=leg_index,
        leg=tpb.TrekLeg(basecamp_id="argentiere", resource_id=resource, nights=night_range(start, start + timedelta(days=2)), party_size=party),
        customer_id="planner",
        hold_ttl_seconds=ttl,
        coordinator_target="127.0.0.1:1",
    )


def ref(trek_id: str, leg_index: int = 0) -> tpb.LegRef:
    return tpb.LegRef(trek_id=trek_id, leg_index=leg_index)


def test_prepare_then_commit_confirms_the_hold_and_repeats_answer_the_same(leg_stub, alps_db) -> None:
    trek = str(uuid.uuid4())
    prepared = leg_stub.PrepareLeg(prepare_request(trek))
    assert prepared.state == tpb.LEG_STATE_PREPARED and prepared.booking.state == pb.BOOKING_STATE_HELD
    assert leg_stub.PrepareLeg(prepare_request(trek)).booking.booking_id == prepared.booking.booking_id
    committed = leg_stub.CommitLeg(ref(trek))
    assert committed.state == tpb.LEG_STATE_COMMITTED and committed.booking.state == pb.BOOKING_STATE_CONFIRMED
    assert leg_stub.CommitLeg(ref(trek)).booking == committed.booking
    with pytest.raises(grpc.RpcError) as refused:
        leg_stub.AbortLeg(ref(trek))
    assert refused.value.code() is Code.FAILED_PRECONDITION
    cancelled = leg_stub.CancelLeg(ref(trek))
    assert cancelled.state == tpb.LEG_STATE_CANCELLED and cancelled.booking.state == pb.BOOKING_STATE_CANCELLED
    assert query(alps_db.url, "SELECT count(*) AS n FROM bookings")[0].n == 1
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)


def test_late_prepare_after_abort_is_refused(leg_stub, alps_db) -> None:
    trek = str(uuid.uuid4())
    leg_stub.PrepareLeg(prepare_request(trek))
    aborted = leg_stub.AbortLeg(ref(trek))
    assert aborted.state == tpb.LEG_STATE_ABORTED and aborted.booking.state == pb.BOOKING_STATE_RELEASED
    with pytest.raises(grpc.RpcError) as late:
        leg_stub.PrepareLeg(prepare_request(trek))
    assert late.value.code() is Code.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as commit:
        leg_stub.CommitLeg(ref(trek))
    assert commit.value.code() is Code.FAILED_PRECONDITION
    assert query(alps_db.url, "SELECT count(*) AS n FROM bookings WHERE state = 'held'")[0].n == 0
    assert_inventory_matches_bookings(alps_db.url)


def test_abort_before_prepare_is_a_no_op_that_fences_the_leg(leg_stub, alps_db) -> None:
    trek = str(uuid.uuid4())
    before = query(alps_db.url, "SELECT sum(held) AS held, sum(booked) AS booked FROM inventory")[0]
    empty = leg_stub.AbortLeg(ref(trek, 1))
    assert empty.state == tpb.LEG_STATE_ABORTED and not empty.HasField("booking")
    assert leg_stub.AbortLeg(ref(trek, 1)) == empty
    with pytest.raises(grpc.RpcError) as late:
        leg_stub.PrepareLeg(prepare_request(trek, 1))
    assert late.value.code() is Code.FAILED_PRECONDITION
    assert query(alps_db.url, "SELECT count(*) AS n FROM bookings")[0].n == 0
    assert query(alps_db.url, "SELECT sum(held) AS held, sum(booked) AS booked FROM inventory")[0] == before


def test_prepare_and_abort_racing_leave_either_a_hold_released_or_nothing(leg_stub, alps_db) -> None:
    treks = [str(uuid.uuid4()) for _ in range(24)]
    with futures.ThreadPoolExecutor(16) as pool:
        calls = [pool.submit(leg_stub.PrepareLeg, prepare_request(t, party=1)) for t in treks]
        calls += [pool.submit(leg_stub.AbortLeg, ref(t)) for t in treks]
        futures.wait(calls)
    rows = query(alps_db.url, "SELECT state FROM trek_legs")
    assert len(rows) == len(treks) and {r.state for r in rows} == {"aborted"}
    assert query(alps_db.url, "SELECT count(*) AS n FROM bookings WHERE state = 'held'")[0].n == 0
    assert_inventory_matches_bookings(alps_db.url)


def test_sold_out_prepare_votes_no_and_takes_nothing(leg_stub, alps_db) -> None:
    trek = str(uuid.uuid4())
    leg_stub.PrepareLeg(prepare_request(str(uuid.uuid4()), resource="argentiere-guide", party=6))
    with pytest.raises(grpc.RpcError) as full:
        leg_stub.PrepareLeg(prepare_request(trek, resource="argentiere-guide", party=1))
    assert full.value.code() is Code.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as again:
        leg_stub.PrepareLeg(prepare_request(trek, resource="argentiere-guide", party=1))
    assert again.value.code() is Code.FAILED_PRECONDITION, "a retried prepare answers the recorded no"
    assert_inventory_matches_bookings(alps_db.url)


def test_a_prepared_leg_past_its_ttl_is_not_swept_but_resolved_by_the_coordinators_answer(leg_stub, alps_node, alps_db) -> None:
    commit_trek, abort_trek, pending_trek = (str(uuid.uuid4()) for _ in range(3))
    for trek in (commit_trek, abort_trek, pending_trek):
        leg_stub.PrepareLeg(prepare_request(trek, ttl=10, party=1))
    later = datetime.now(timezone.utc) + timedelta(seconds=60)
    engine = make_engine(alps_db.url, pool_size=2)
    try:
        assert sweep_once(engine, now=later, batch_max=100) == 0, "the sweep expired a prepared leg"
        answers = {commit_trek: tpb.DECISION_COMMIT, abort_trek: tpb.DECISION_ABORT, pending_trek: tpb.DECISION_PENDING}
        asked: list[str] = []

        def ask(target: str, trek_id: str) -> int:
            asked.append(trek_id)
            return answers[trek_id]

        fence = dict(alps_node.keeper.ownership.fence())  # resolved under the node's leases, as its resolver does
        assert resolve_in_doubt(engine, fence=fence, now=later, batch_max=100, ask=ask) == 2
        assert sorted(asked) == sorted(answers)
        states = {r.trek_id: (r.state, r.booking_state) for r in query(
            alps_db.url, "SELECT t.trek_id, t.state, b.state AS booking_state FROM trek_legs t JOIN bookings b USING (booking_id)")}
        assert states == {commit_trek: ("committed", "confirmed"), abort_trek: ("aborted", "released"), pending_trek: ("prepared", "held")}
        with engine.connect() as conn:
            assert [k.trek_id for k, _ in legs.in_doubt(conn, basecamps=list(fence), now=later, batch_max=10)] == [pending_trek]
    finally:
        engine.dispose()
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)
