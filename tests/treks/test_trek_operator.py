"""TrekOperatorService on the real coordinator: an SRE aborts an undecided trek or redrives one.

The trek is held undecided by a participant that does not answer (its node process
SIGSTOPped while the trek prepares): the abort is decided by the SRE, every leg is
released once the node is back, and no charge stands (checked from the participants'
and the gateway's own tables). A committed trek is never aborted; repeats with one key,
even racing, answer one outcome; only the sre role may act.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from certificates import SessionCerts
from drive import night
from invariants import query
from trek_cluster import TrekCluster, leg, plan_request, running_cluster

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.deploy.run.processes import ReadyChild, free_port
from ridgeline.routing.coordinator_set import LEADER_METADATA_KEY
from ridgeline.trust.identity import Role
from ridgeline.v1 import operator_pb2 as opb
from ridgeline.v1 import operator_pb2_grpc as opb_grpc
from ridgeline.v1 import trek_pb2 as tpb

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def cluster(region_servers: dict[str, PostgresServer], fresh_database, certs: SessionCerts) -> Iterator[TrekCluster]:
    with running_cluster(region_servers, fresh_database, certs, node_process_regions=("sa-andes",)) as trek_cluster:
        yield trek_cluster


@pytest.fixture(scope="module")
def coordinator(cluster: TrekCluster) -> Iterator[ReadyChild]:
    proc = cluster.start_coordinator()
    # A first trek over the route, so the coordinator has placed its basecamps before a node is stopped.
    channel, stub = cluster.stub()
    with channel:
        assert stub.PlanTrek(plan_request(str(uuid.uuid4()), route(30)), timeout=20).state == tpb.TREK_STATE_COMMITTED
    yield proc
    proc.stop()


@pytest.fixture
def operator(cluster: TrekCluster, coordinator: ReadyChild) -> Iterator[opb_grpc.TrekOperatorServiceStub]:
    with cluster.certs.sre.channel(cluster.target) as channel:
        yield opb_grpc.TrekOperatorServiceStub(channel)


def route(days_ahead: int) -> list[tpb.TrekLeg]:
    return [leg("gouter", "gouter-dorm", night(days_ahead)), leg("bow-hut", "bow-bunk", night(days_ahead + 2)), leg("refugio-frey", "frey-bunk", night(days_ahead + 4))]


def action(trek_id: str, key: str | None = None) -> opb.TrekActionRequest:
    return opb.TrekActionRequest(idempotency_key=key or str(uuid.uuid4()), trek_id=trek_id, reason="guest called: trip off")


def test_abort_of_an_undecided_trek_releases_every_leg_and_keeps_no_charge_and_racing_repeats_answer_one_outcome(cluster, operator) -> None:
    andes = cluster.node_processes["sa-andes"].process
    andes.send_signal(signal.SIGSTOP)  # its leg's prepare hangs: the trek stays undecided until its deadline (5 s)
    try:
        channel, stub = cluster.stub()
        with channel:
            planned = stub.PlanTrek(plan_request(str(uuid.uuid4()), route(40), wait=False), timeout=10)
        key = str(uuid.uuid4())
        with futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: operator.AbortTrek(action(planned.trek_id, key), timeout=3), range(4)))
    finally:
        andes.send_signal(signal.SIGCONT)
    assert {a.result for a in answers} == {opb.ACTION_RESULT_APPLIED}, [a.detail for a in answers]
    assert len({(a.detail, a.actor, a.at.ToNanoseconds()) for a in answers}) == 1, "every repeat answers the first outcome"
    first = answers[0]
    assert first.action == opb.OPERATOR_ACTION_ABORT_TREK and first.actor.startswith("sre:")
    assert first.trek.decision == tpb.DECISION_ABORT and first.trek.decided_by == first.actor, first.trek
    trek = cluster.wait_final(planned.trek_id, timeout_seconds=30)
    assert trek.state == tpb.TREK_STATE_ABORTED and trek.decided_by == first.actor
    for region in ("eu-alps", "na-rockies", "sa-andes"):
        rows = query(cluster.region_urls[region], "SELECT b.state FROM trek_legs t LEFT JOIN bookings b USING (booking_id) WHERE t.trek_id = %(t)s", {"t": trek.trek_id})
        assert all(r.state in (None, "released") for r in rows), f"{region} still holds a leg of the aborted trek: {rows}"
    cluster.assert_atomic_and_paid(trek)
    cluster.assert_inventories()
    recorded = query(cluster.coordinator_db_url, "SELECT action, actor, result FROM trek_operator_actions WHERE idempotency_key = %(k)s", {"k": key})
    assert [(r.action, r.actor, r.result) for r in recorded] == [("abort", first.actor, "applied")]
    again = operator.AbortTrek(action(planned.trek_id, key), timeout=5)
    assert (again.result, again.detail, again.trek.state) == (first.result, first.detail, tpb.TREK_STATE_ABORTED), "a later repeat too"
    # Another key on the trek now aborted: nothing to do. A redrive of a final trek: the same.
    assert operator.AbortTrek(action(planned.trek_id), timeout=5).result == opb.ACTION_RESULT_ALREADY_DONE
    assert operator.RedriveTrek(action(planned.trek_id), timeout=5).result == opb.ACTION_RESULT_ALREADY_DONE


def test_abort_of_a_committed_trek_is_refused_and_the_trek_stays_whole(cluster, operator) -> None:
    channel, stub = cluster.stub()
    with channel:
        trek = stub.PlanTrek(plan_request(str(uuid.uuid4()), route(50)), timeout=20)
    assert trek.state == tpb.TREK_STATE_COMMITTED, trek.reason
    key = str(uuid.uuid4())
    for _ in range(2):  # the repeat is refused alike
        with pytest.raises(grpc.RpcError) as refused:
            operator.AbortTrek(action(trek.trek_id, key), timeout=5)
        assert refused.value.code() is Code.FAILED_PRECONDITION and "decided commit" in refused.value.details(), refused.value.details()
    after = cluster.wait_final(trek.trek_id)
    assert after.state == tpb.TREK_STATE_COMMITTED and after.decided_by.startswith("node:")
    cluster.assert_atomic_and_paid(after)
    with pytest.raises(grpc.RpcError) as reused:
        operator.RedriveTrek(action(trek.trek_id, key), timeout=5)
    assert reused.value.code() is Code.INVALID_ARGUMENT, "a key first used to abort is not a redrive's"


def test_redrive_drives_a_trek_whose_participant_is_back(cluster, operator) -> None:
    andes = cluster.node_processes["sa-andes"].process
    andes.send_signal(signal.SIGSTOP)
    try:
        channel, stub = cluster.stub()
        with channel:
            planned = stub.PlanTrek(plan_request(str(uuid.uuid4()), route(60), wait=False), timeout=10)
            time.sleep(6)  # past the prepare deadline: the silent leg voted no, the abort cannot reach it
            stuck = stub.GetTrek(tpb.GetTrekRequest(trek_id=planned.trek_id), timeout=5)
        assert stuck.state == tpb.TREK_STATE_ABORTING, stuck
        pending = operator.RedriveTrek(action(planned.trek_id), timeout=3)
        assert pending.result == opb.ACTION_RESULT_STILL_PENDING and pending.trek.state == tpb.TREK_STATE_ABORTING, pending
    finally:
        andes.send_signal(signal.SIGCONT)
    key = str(uuid.uuid4())
    with futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: operator.RedriveTrek(action(planned.trek_id, key), timeout=15), range(3)))
    assert len({(a.result, a.detail, a.at.ToNanoseconds()) for a in answers}) == 1, [a.detail for a in answers]
    driven = answers[0]
    assert driven.result in (opb.ACTION_RESULT_APPLIED, opb.ACTION_RESULT_ALREADY_DONE), driven.detail  # the redriver may be first
    assert all(a.trek.state == tpb.TREK_STATE_ABORTED for a in answers)
    cluster.assert_atomic_and_paid(driven.trek)
    cluster.assert_inventories()


@pytest.mark.parametrize("role", [Role.DESK, Role.PLANNER])
def test_only_sre_may_act_on_treks(cluster, coordinator, role: Role) -> None:
    with cluster.certs.as_role(role).channel(cluster.target) as channel:
        stub = opb_grpc.TrekOperatorServiceStub(channel)
        for call in (stub.AbortTrek, stub.RedriveTrek):
            with pytest.raises(grpc.RpcError) as denied:
                call(action(str(uuid.uuid4())), timeout=5)
            assert denied.value.code() is Code.PERMISSION_DENIED


def test_unknown_trek_and_bad_requests(operator) -> None:
    with pytest.raises(grpc.RpcError) as unknown:
        operator.AbortTrek(action(str(uuid.uuid4())), timeout=5)
    assert unknown.value.code() is Code.NOT_FOUND
    with pytest.raises(grpc.RpcError) as bad:
        operator.RedriveTrek(opb.TrekActionRequest(trek_id="not-a-uuid", idempotency_key="k"), timeout=5)
    assert bad.value.code() is Code.INVALID_ARGUMENT


def test_a_follower_sends_operator_actions_to_the_leader_and_writes_nothing(cluster, coordinator) -> None:
    target = f"127.0.0.1:{free_port()}"
    follower = cluster.start_coordinator(target=target, extra=["--node-id", "coordinator-follower"], leading=False)
    try:
        channel, stub = cluster.stub()
        with channel:
            trek = stub.PlanTrek(plan_request(str(uuid.uuid4()), route(70)), timeout=20)
        with cluster.certs.sre.channel(target) as channel:
            operator = opb_grpc.TrekOperatorServiceStub(channel)
            for call in (operator.AbortTrek, operator.RedriveTrek):
                with pytest.raises(grpc.RpcError) as sent:
                    call(action(trek.trek_id), timeout=5)
                assert sent.value.code() is Code.UNAVAILABLE and cluster.target in sent.value.details(), sent.value.details()
                assert (LEADER_METADATA_KEY, cluster.target) in tuple(sent.value.trailing_metadata())
    finally:
        follower.stop()
    recorded = query(cluster.coordinator_db_url, "SELECT count(*) AS n FROM trek_operator_actions WHERE trek_id = %(t)s", {"t": trek.trek_id})
    assert recorded[0].n == 0
