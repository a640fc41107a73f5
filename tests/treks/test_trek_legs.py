"""The participant side of a trek leg over real gRPC: fences, idempotency, no guessing.

Try-confirm-cancel with a fence row per (trek, leg) (ARCHITECTURE.md §5): a late prepare
after an abort is refused, an abort before any prepare is a no-op that leaves the fence,
a prepared leg is not expired by the sweep and is resolved by asking the coordinator.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent import futures
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from certificates import SessionCerts
from drive import night
from invariants import assert_history_consistent, assert_inventory_matches_bookings, query, snapshot

from ridgeline.deploy.run.processes import free_port
from ridgeline.regional.booking.sweeper import sweep_once
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.regional.storage.db import make_engine
from ridgeline.regional.trek_legs import participant as legs
from ridgeline.regional.trek_legs.coordinators import KnownCoordinators
from ridgeline.regional.trek_legs.resolver import resolve_in_doubt
from ridgeline.routing import night_range
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

Code = grpc.StatusCode
#: The trek coordinator the node knows; the scripted one serves it.
COORDINATOR = f"127.0.0.1:{free_port()}"


class ScriptedCoordinator(tpb_grpc.TrekServiceServicer):
    """A TrekService whose GetDecision answers what the test wrote in ``answers`` (over real
    gRPC); a trek it was not told about is answered as the real coordinator answers an
    unknown trek (ABORT, no state), or with ``unknown_code`` when set."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, int]] = {}
        self.asked: list[str] = []
        self.unknown_code: grpc.StatusCode | None = None
        self.server: grpc.Server | None = None

    def GetDecision(self, request: tpb.GetDecisionRequest, context: grpc.ServicerContext) -> tpb.GetDecisionResponse:
        self.asked.append(request.trek_id)
        if request.trek_id not in self.answers and self.unknown_code is not None:
            context.abort(self.unknown_code, f"no trek {request.trek_id}")
        decision, state = self.answers.get(request.trek_id, (tpb.DECISION_ABORT, tpb.TREK_STATE_UNSPECIFIED))
        return tpb.GetDecisionResponse(trek_id=request.trek_id, decision=decision, state=state)


@pytest.fixture
def coordinator(certs: SessionCerts) -> Iterator[ScriptedCoordinator]:
    """Serves with the cluster's node pair, as the real coordinator does: the node dials it over mutual TLS."""
    scripted = ScriptedCoordinator()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    tpb_grpc.add_TrekServiceServicer_to_server(scripted, server)
    assert certs.node.bind(server, COORDINATOR) != 0, f"cannot serve the scripted coordinator on {COORDINATOR}"
    server.start()
    scripted.server = server
    yield scripted
    server.stop(0)


@pytest.fixture
def alps_node(alps_db, coordinator, certs: SessionCerts) -> Iterator[RegionalNode]:
    """conftest's node, knowing the scripted coordinator (the only one its legs may name)."""
    config = NodeConfig(region="eu-alps", node_id="test-node", database_url=alps_db.url, workers=16, max_concurrent_rpcs=256, coordinator_targets=(COORDINATOR,), certs_dir=certs.dir)
    node = RegionalNode(config)
    node.start()
    yield node
    node.stop(grace_seconds=1)


@pytest.fixture
def leg_stub(alps_node, certs: SessionCerts):
    """The node's TrekLegService, called as the coordinator calls it (the node role)."""
    with certs.node.channel(alps_node.address) as channel:
        yield tpb_grpc.TrekLegServiceStub(channel)


def prepare_request(
    trek_id: str, leg_index: int = 0, *, party: int = 2, ttl: int = 60, resource: str = "argentiere-dorm", target: str = ""
) -> tpb.PrepareLegRequest:
    """``target``: the coordinator the leg names (default: the one the node knows)."""
    start = night(20)
    return tpb.PrepareLegRequest(
        trek_id=trek_id,
        leg_index=leg_index,
        leg=tpb.TrekLeg(basecamp_id="argentiere", resource_id=resource, nights=night_range(start, start + timedelta(days=2)), party_size=party),
        customer_id="planner",
        hold_ttl_seconds=ttl,
        coordinator_target=target or COORDINATOR,
    )


def ref(trek_id: str, leg_index: int = 0) -> tpb.LegRef:
    return tpb.LegRef(trek_id=trek_id, leg_index=leg_index)


def test_prepare_then_commit_confirms_the_hold_and_repeats_answer_the_same(leg_stub, alps_db, coordinator) -> None:
    trek = str(uuid.uuid4())
    prepared = leg_stub.PrepareLeg(prepare_request(trek))
    assert prepared.state == tpb.LEG_STATE_PREPARED and prepared.booking.state == pb.BOOKING_STATE_HELD
    assert leg_stub.PrepareLeg(prepare_request(trek)).booking.booking_id == prepared.booking.booking_id
    coordinator.answers[trek] = (tpb.DECISION_COMMIT, tpb.TREK_STATE_COMMITTING)
    committed = leg_stub.CommitLeg(ref(trek))
    assert committed.state == tpb.LEG_STATE_COMMITTED and committed.booking.state == pb.BOOKING_STATE_CONFIRMED
    assert leg_stub.CommitLeg(ref(trek)).booking == committed.booking
    with pytest.raises(grpc.RpcError) as refused:
        leg_stub.AbortLeg(ref(trek))
    assert refused.value.code() is Code.FAILED_PRECONDITION
    coordinator.answers[trek] = (tpb.DECISION_COMMIT, tpb.TREK_STATE_CANCELLING)
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
        assert sweep_once(engine, now=later, batch_max=100, actor="node:test-sweeper") == 0, "the sweep expired a prepared leg"
        answers = {commit_trek: tpb.DECISION_COMMIT, abort_trek: tpb.DECISION_ABORT, pending_trek: tpb.DECISION_PENDING}
        asked: list[str] = []

        def ask(target: str, trek_id: str) -> int:
            asked.append(trek_id)
            return answers[trek_id]

        fence = dict(alps_node.keeper.ownership.fence())  # resolved under the node's leases, as its resolver does
        assert resolve_in_doubt(engine, fence=fence, now=later, batch_max=100, ask=ask, actor="node:test-resolver") == 2
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


# -- legs that cannot lie (issue 11, item 10): each failed before the node asked its coordinator


def _fence(url: str, trek_id: str) -> list[tuple[str, str]]:
    return [(r.state, r.booking) for r in query(
        url, "SELECT t.state, b.state AS booking FROM trek_legs t LEFT JOIN bookings b USING (booking_id) WHERE t.trek_id = %(t)s", {"t": trek_id})]  # fmt: skip


@pytest.mark.parametrize(
    "answer",
    [None, (tpb.DECISION_PENDING, tpb.TREK_STATE_PREPARING), (tpb.DECISION_ABORT, tpb.TREK_STATE_ABORTING), (tpb.DECISION_ABORT, tpb.TREK_STATE_ABORTED)],
    ids=["unknown-trek", "preparing", "aborting", "aborted"],
)
def test_commit_leg_is_refused_unless_the_coordinator_decided_commit_and_writes_nothing(leg_stub, alps_db, coordinator, answer) -> None:
    trek = str(uuid.uuid4())
    leg_stub.PrepareLeg(prepare_request(trek))
    if answer is not None:
        coordinator.answers[trek] = answer
    before = snapshot(alps_db.url)
    with pytest.raises(grpc.RpcError) as refused:
        leg_stub.CommitLeg(ref(trek))
    assert refused.value.code() is Code.FAILED_PRECONDITION, refused.value.details()
    assert trek in refused.value.details() and "coordinator" in refused.value.details()
    assert coordinator.asked == [trek]
    assert _fence(alps_db.url, trek) == [("prepared", "held")]
    assert snapshot(alps_db.url) == before
    assert not query(alps_db.url, "SELECT 1 FROM bookings WHERE state = 'confirmed'"), "a leg became a confirmed booking without a committed trek"


def test_a_repeated_commit_answers_as_it_is_without_asking_again(leg_stub, alps_db, coordinator) -> None:
    trek = str(uuid.uuid4())
    leg_stub.PrepareLeg(prepare_request(trek))
    coordinator.answers[trek] = (tpb.DECISION_COMMIT, tpb.TREK_STATE_COMMITTING)
    first = leg_stub.CommitLeg(ref(trek))
    assert first.state == tpb.LEG_STATE_COMMITTED and coordinator.asked == [trek]
    coordinator.answers[trek] = (tpb.DECISION_ABORT, tpb.TREK_STATE_UNSPECIFIED)  # would refuse, were it asked
    assert leg_stub.CommitLeg(ref(trek)) == first
    assert coordinator.asked == [trek], "a repeated commit asked the coordinator again"


def test_cancel_leg_of_a_committed_trek_is_refused_until_the_coordinator_shows_it_cancelling(leg_stub, alps_db, coordinator) -> None:
    trek = str(uuid.uuid4())
    leg_stub.PrepareLeg(prepare_request(trek))
    coordinator.answers[trek] = (tpb.DECISION_COMMIT, tpb.TREK_STATE_COMMITTING)
    leg_stub.CommitLeg(ref(trek))
    for state in (tpb.TREK_STATE_COMMITTING, tpb.TREK_STATE_COMMITTED):
        coordinator.answers[trek] = (tpb.DECISION_COMMIT, state)
        before = snapshot(alps_db.url)
        with pytest.raises(grpc.RpcError) as refused:
            leg_stub.CancelLeg(ref(trek))
        assert refused.value.code() is Code.FAILED_PRECONDITION, refused.value.details()
        assert _fence(alps_db.url, trek) == [("committed", "confirmed")]
        assert snapshot(alps_db.url) == before
    coordinator.answers[trek] = (tpb.DECISION_COMMIT, tpb.TREK_STATE_CANCELLING)
    assert leg_stub.CancelLeg(ref(trek)).state == tpb.LEG_STATE_CANCELLED
    assert _fence(alps_db.url, trek) == [("cancelled", "cancelled")]
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)


def test_an_unreachable_coordinator_makes_commit_leg_unavailable_and_changes_nothing(leg_stub, alps_db, coordinator) -> None:
    trek = str(uuid.uuid4())
    leg_stub.PrepareLeg(prepare_request(trek))
    coordinator.server.stop(0)
    with pytest.raises(grpc.RpcError) as unavailable:
        leg_stub.CommitLeg(ref(trek), timeout=10)
    assert unavailable.value.code() is Code.UNAVAILABLE, unavailable.value.details()
    assert _fence(alps_db.url, trek) == [("prepared", "held")]


def test_prepare_refuses_a_foreign_coordinator_and_a_trek_id_that_is_no_uuid_and_writes_nothing(leg_stub, alps_db) -> None:
    before = snapshot(alps_db.url)
    cases = [
        (prepare_request(str(uuid.uuid4()), target="127.0.0.1:1"), Code.FAILED_PRECONDITION),
        (prepare_request(str(uuid.uuid4()), target=f"127.0.0.1:{free_port()}"), Code.FAILED_PRECONDITION),
        (prepare_request("trek-fenced"), Code.INVALID_ARGUMENT),
        (prepare_request(str(uuid.uuid4()) + "x"), Code.INVALID_ARGUMENT),
    ]
    for request, code in cases:
        with pytest.raises(grpc.RpcError) as refused:
            leg_stub.PrepareLeg(request)
        assert refused.value.code() is code, (request.trek_id, request.coordinator_target, refused.value.details())
    for call in (leg_stub.CommitLeg, leg_stub.AbortLeg, leg_stub.CancelLeg):
        with pytest.raises(grpc.RpcError) as refused:
            call(ref("trek-fenced"))
        assert refused.value.code() is Code.INVALID_ARGUMENT
    assert snapshot(alps_db.url) == before
    assert not query(alps_db.url, "SELECT 1 FROM trek_legs")


@pytest.mark.parametrize("code", [Code.NOT_FOUND, Code.INVALID_ARGUMENT])
def test_a_prepared_leg_whose_coordinator_says_there_is_no_such_trek_is_aborted(leg_stub, alps_node, alps_db, coordinator, certs, code) -> None:
    """Presumed abort: an answer that the trek does not exist ends the leg within its TTL."""
    trek = str(uuid.uuid4())
    leg_stub.PrepareLeg(prepare_request(trek, ttl=10, party=1))
    coordinator.unknown_code = code
    later = datetime.now(timezone.utc) + timedelta(seconds=60)
    engine = make_engine(alps_db.url, pool_size=2)
    asker = KnownCoordinators((COORDINATOR,), certs.node)
    try:
        assert resolve_in_doubt(engine, fence=dict(alps_node.keeper.ownership.fence()), now=later, batch_max=100, ask=asker, actor="node:test-resolver") == 1
    finally:
        asker.close()
        engine.dispose()
    assert coordinator.asked == [trek]
    assert _fence(alps_db.url, trek) == [("aborted", "released")]
    assert_inventory_matches_bookings(alps_db.url)
