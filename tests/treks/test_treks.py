"""Cross-region treks end to end: real nodes per region, the real gateway, a real coordinator process.

Invariant 5 (treks are atomic) and 4 (money balances) are checked at rest from the
participants' own tables and the gateway's own ledger, never from the coordinator's
word; invariant 7 (idempotency) for PlanTrek.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent import futures

import grpc
import psycopg
import pytest
from certificates import SessionCerts
from drive import night
from invariants import libpq_url, query, snapshot
from trek_cluster import TrekCluster, leg, plan_request, running_cluster

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.deploy.run.processes import ReadyChild, free_port
from ridgeline.v1 import trek_pb2 as tpb

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def cluster(region_servers: dict[str, PostgresServer], fresh_database, certs: SessionCerts) -> Iterator[TrekCluster]:
    with running_cluster(region_servers, fresh_database, certs) as trek_cluster:
        yield trek_cluster


@pytest.fixture
def coordinator(cluster: TrekCluster) -> Iterator[ReadyChild]:
    proc = cluster.start_coordinator()
    yield proc
    proc.stop()


@pytest.fixture
def stub(cluster: TrekCluster, coordinator: ReadyChild) -> Iterator:
    channel, trek_stub = cluster.stub()
    yield trek_stub
    channel.close()


def three_regions(days_ahead: int, party: int = 1) -> list[tpb.TrekLeg]:
    start = night(days_ahead)
    return [
        leg("argentiere", "argentiere-dorm", start, party=party),
        leg("abbot-pass", "abbot-bunk", night(days_ahead + 2), party=party),
        leg("plaza-de-mulas", "mulas-dome", night(days_ahead + 4), party=party),
    ]


def test_a_three_region_trek_commits_every_leg_and_charges_once_per_currency(cluster, stub) -> None:
    trek = stub.PlanTrek(plan_request(str(uuid.uuid4()), three_regions(30)), timeout=20)
    assert trek.state == tpb.TREK_STATE_COMMITTED, (trek.reason, [l.detail for l in trek.legs])
    assert trek.decision == tpb.DECISION_COMMIT
    assert [l.state for l in trek.legs] == [tpb.LEG_STATE_COMMITTED] * 3
    assert {c.currency for c in trek.charges} == {"EUR", "CAD", "USD"}
    assert trek.HasField("decided_at") and trek.HasField("settled_at")
    cluster.assert_atomic_and_paid(trek)
    cancelled = stub.CancelTrek(tpb.CancelTrekRequest(trek_id=trek.trek_id, reason="change of plans"), timeout=10)
    assert cancelled.state in (tpb.TREK_STATE_CANCELLING, tpb.TREK_STATE_CANCELLED)
    final = cluster.wait_final(trek.trek_id)
    assert final.state == tpb.TREK_STATE_CANCELLED and [l.state for l in final.legs] == [tpb.LEG_STATE_CANCELLED] * 3
    cluster.assert_atomic_and_paid(final)
    cluster.assert_inventories()


def test_a_sold_out_leg_aborts_the_trek_and_nothing_stays_held_or_charged(cluster, stub) -> None:
    legs = three_regions(34)
    legs[1] = leg("abbot-pass", "abbot-guide", night(36), party=6)
    first = stub.PlanTrek(plan_request(str(uuid.uuid4()), legs), timeout=20)
    assert first.state == tpb.TREK_STATE_COMMITTED
    second = stub.PlanTrek(plan_request(str(uuid.uuid4()), legs), timeout=20)
    assert second.state == tpb.TREK_STATE_ABORTED, second
    assert "leg 1 refused: RESOURCE_EXHAUSTED" in second.reason
    assert not second.charges
    for trek in (first, second):
        cluster.assert_atomic_and_paid(trek)
    cluster.assert_inventories()


def test_plan_trek_answers_the_trek_exactly_as_the_log_holds_it(cluster, stub) -> None:
    """The drive answers from what it wrote, without reading the trek back: that answer must
    be the log's own record, field for field, for a commit and for an abort (refunds)."""
    committed = stub.PlanTrek(plan_request(str(uuid.uuid4()), three_regions(40)), timeout=20)
    legs = three_regions(44)
    legs[2] = leg("plaza-de-mulas", "mulas-dome", night(48), party=61)  # more than the dome has
    aborted = stub.PlanTrek(plan_request(str(uuid.uuid4()), legs), timeout=20)
    assert (committed.state, aborted.state) == (tpb.TREK_STATE_COMMITTED, tpb.TREK_STATE_ABORTED)
    for answered in (committed, aborted):
        assert stub.GetTrek(tpb.GetTrekRequest(trek_id=answered.trek_id), timeout=10) == answered


def test_duplicate_plan_with_the_same_key_gives_one_trek(cluster, stub) -> None:
    key = str(uuid.uuid4())
    request = plan_request(key, three_regions(40))
    with futures.ThreadPoolExecutor(6) as pool:
        treks = list(pool.map(lambda _: stub.PlanTrek(request, timeout=20), range(6)))
    assert len({t.trek_id for t in treks}) == 1
    final = cluster.wait_final(treks[0].trek_id)
    assert final.state == tpb.TREK_STATE_COMMITTED
    cluster.assert_atomic_and_paid(final)
    with pytest.raises(grpc.RpcError) as reused:
        stub.PlanTrek(plan_request(key, three_regions(41)), timeout=10)
    assert reused.value.code() is Code.INVALID_ARGUMENT
    with cluster.certs.sre.http_client(cluster.gateway_url, timeout_seconds=10) as http:
        charges = http.get("/v1/charges", params={"reference": final.trek_id}).json()["data"]
    assert len(charges) == 3, "one charge per currency, however often the trek was asked for"


def test_bad_requests_get_a_status_and_record_nothing(cluster, stub) -> None:
    cases = [
        (plan_request("", three_regions(30)), Code.INVALID_ARGUMENT),
        (plan_request("k", []), Code.INVALID_ARGUMENT),
        (plan_request("k", [leg("nowhere", "x", night(30))]), Code.NOT_FOUND),
        (plan_request("k", [leg("argentiere", "argentiere-dorm", night(30), nights=0)]), Code.INVALID_ARGUMENT),
        (plan_request("k", [leg("argentiere", "argentiere-dorm", night(30), party=0)]), Code.INVALID_ARGUMENT),
    ]
    for request, code in cases:
        with pytest.raises(grpc.RpcError) as refused:
            stub.PlanTrek(request, timeout=10)
        assert refused.value.code() is code, (request, refused.value.details())
    for call, request in ((stub.GetTrek, tpb.GetTrekRequest(trek_id="not-a-uuid")), (stub.GetTrek, tpb.GetTrekRequest(trek_id=str(uuid.uuid4())))):
        with pytest.raises(grpc.RpcError) as refused:
            call(request, timeout=10)
        assert refused.value.code() in (Code.INVALID_ARGUMENT, Code.NOT_FOUND)
    node_channel, as_node = cluster.stub(cluster.certs.node)  # GetDecision answers only the node role
    with node_channel:
        unknown = as_node.GetDecision(tpb.GetDecisionRequest(trek_id=str(uuid.uuid4())), timeout=10)
    assert unknown.decision == tpb.DECISION_ABORT, "presumed abort for a trek the coordinator never recorded"


def test_the_planner_cli_plans_shows_lists_and_cancels_a_trek(cluster, coordinator) -> None:
    import json
    import os
    import subprocess

    from trek_cluster import RIDGELINE

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COLUMNS": "160"}
        return subprocess.run([RIDGELINE, *cluster.certs.cli_args, "trek", *args, "--target", cluster.target], capture_output=True, text=True, timeout=60, env=env)

    first, second = night(90), night(93)
    planned = cli(
        "plan", "--customer", "alice", "--key", f"cli-{uuid.uuid4()}", "--json",
        "--leg", f"argentiere:argentiere-dorm:{first}:{second}:2",
        "--leg", f"bow-hut:bow-bunk:{second}:{second + (second - first)}",
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    trek = json.loads(planned.stdout)
    assert trek["state"] == "TREK_STATE_COMMITTED" and len(trek["legs"]) == 2
    shown = cli("show", trek["trek_id"])
    assert shown.returncode == 0 and "committed" in shown.stdout and "argentiere-dorm" in shown.stdout
    listed = cli("list", "--state", "committed", "--json")
    assert trek["trek_id"] in [t["trek_id"] for t in json.loads(listed.stdout)]
    assert cli("cancel", trek["trek_id"]).returncode == 0
    assert cluster.wait_final(trek["trek_id"]).state == tpb.TREK_STATE_CANCELLED
    bad = cli("plan", "--customer", "bob", "--leg", "argentiere:argentiere-dorm:tomorrow")
    assert bad.returncode == 2 and "BASECAMP:RESOURCE:FROM:TO" in bad.stderr
    unknown = cli("show", str(uuid.uuid4()))
    assert unknown.returncode == 2 and "NOT_FOUND" in unknown.stderr and "Traceback" not in unknown.stderr


def test_the_coordinator_serves_health_and_reflection(cluster, coordinator) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with cluster.certs.sre.channel(cluster.target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="ridgeline.v1.TrekService"), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"ridgeline.v1.TrekService", "ridgeline.v1.TrekOperatorService"} <= names


def test_a_prepared_leg_past_its_ttl_asks_the_coordinators_and_is_never_guessed(cluster, coordinator) -> None:
    """A leg prepared for a trek its coordinator never recorded is aborted once it outlives
    its TTL (presumed abort, answered by the real coordinator). A leg whose fence names a
    coordinator that does not answer is asked of the cluster's other coordinators, which
    share one decision log (issue 12): the one that leads answers, here ABORT too. (With
    no coordinator answering, the leg stays as it is: treks/test_trek_legs.py.)"""
    from invariants import query

    from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

    orphan, unreachable = str(uuid.uuid4()), str(uuid.uuid4())
    with cluster.certs.node.channel(cluster.region_targets["eu-alps"]) as channel:
        legs = tpb_grpc.TrekLegServiceStub(channel)
        for trek_id, target in ((orphan, cluster.target), (unreachable, f"127.0.0.1:{cluster.silent_coordinator_port}")):
            legs.PrepareLeg(
                tpb.PrepareLegRequest(
                    trek_id=trek_id, leg_index=0, leg=leg("gouter", "gouter-dorm", night(100)), customer_id="ghost",
                    hold_ttl_seconds=10, coordinator_target=target,
                ),
                timeout=10,
            )  # fmt: skip
    url = cluster.region_urls["eu-alps"]
    sql = "SELECT t.trek_id, t.state, b.state AS booking FROM trek_legs t JOIN bookings b USING (booking_id) WHERE t.trek_id IN (%(a)s, %(b)s)"
    until = time.monotonic() + 25
    while True:
        states = {r.trek_id: (r.state, r.booking) for r in query(url, sql, {"a": orphan, "b": unreachable})}
        if set(states.values()) == {("aborted", "released")} or time.monotonic() > until:
            break
        time.sleep(0.2)
    assert states == {orphan: ("aborted", "released"), unreachable: ("aborted", "released")}
    cluster.assert_inventories()


@pytest.mark.parametrize("method", [m.name for m in tpb.DESCRIPTOR.services_by_name["TrekService"].methods])
def test_undecodable_bytes_on_the_coordinator_are_invalid_argument(cluster, coordinator, method: str) -> None:
    # grpcio's default answer would be INTERNAL, the code kept for Ridgeline's own bugs.
    route = f"/ridgeline.v1.TrekService/{method}"
    with cluster.certs.admitted_to(route).channel(cluster.target) as channel:  # past authorization, to the bytes
        call = channel.unary_unary(route, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as raised:
            call(b"\xff\xff\xff", timeout=10)
    assert raised.value.code() == Code.INVALID_ARGUMENT, (method, raised.value.details())
    assert method in raised.value.details()


# -- legs that cannot lie (issue 11, item 10) -------------------------------------------
# Plain calls to a node's TrekLegService must not be able to do what only the coordinator's
# log may decide: confirm a leg of a trek that was never committed, or cancel a leg of a
# trek whose charge stands. Each test below failed before the node checked with its
# coordinator.


def _leg_stub(cluster: TrekCluster, region: str = "eu-alps"):
    """A node's TrekLegService, called as a node (the only role that may; a node with a bug is
    exactly what these tests play)."""
    from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

    channel = cluster.certs.node.channel(cluster.region_targets[region])
    return channel, tpb_grpc.TrekLegServiceStub(channel)


def _prepare(trek_id: str, target: str, *, days_ahead: int, ttl: int = 60) -> tpb.PrepareLegRequest:
    return tpb.PrepareLegRequest(
        trek_id=trek_id, leg_index=0, leg=leg("gouter", "gouter-dorm", night(days_ahead)), customer_id="ghost",
        hold_ttl_seconds=ttl, coordinator_target=target,
    )  # fmt: skip


def _fences(cluster: TrekCluster, trek_id: str, region: str = "eu-alps") -> list:
    return query(
        cluster.region_urls[region],
        "SELECT t.state, b.state AS booking FROM trek_legs t LEFT JOIN bookings b USING (booking_id) WHERE t.trek_id = %(t)s",
        {"t": trek_id},
    )


def test_a_leg_of_a_made_up_trek_is_never_committed(cluster, coordinator) -> None:
    """PrepareLeg + CommitLeg with a trek id the coordinator never recorded: the commit is
    refused (the log presumes abort), so no confirmed booking exists without a trek."""
    made_up = str(uuid.uuid4())
    channel, legs = _leg_stub(cluster)
    with channel:
        assert legs.PrepareLeg(_prepare(made_up, cluster.target, days_ahead=110), timeout=10).state == tpb.LEG_STATE_PREPARED
        with pytest.raises(grpc.RpcError) as refused:
            legs.CommitLeg(tpb.LegRef(trek_id=made_up, leg_index=0), timeout=10)
    assert refused.value.code() is Code.FAILED_PRECONDITION, refused.value.details()
    assert made_up in refused.value.details()
    assert [(r.state, r.booking) for r in _fences(cluster, made_up)] in ([("prepared", "held")], [("aborted", "released")])
    cluster.assert_inventories()


def test_a_prepare_naming_a_coordinator_the_cluster_does_not_know_is_refused_and_writes_nothing(cluster, coordinator) -> None:
    foreign = f"127.0.0.1:{free_port()}"
    trek_id = str(uuid.uuid4())
    channel, legs = _leg_stub(cluster)
    with channel:
        with pytest.raises(grpc.RpcError) as refused:
            legs.PrepareLeg(_prepare(trek_id, foreign, days_ahead=112), timeout=10)
    assert refused.value.code() is Code.FAILED_PRECONDITION, refused.value.details()
    assert foreign in refused.value.details()
    assert _fences(cluster, trek_id) == []
    cluster.assert_inventories()


def test_a_prepare_with_a_trek_id_that_is_no_uuid_is_refused_and_writes_nothing(cluster, coordinator) -> None:
    before = snapshot(cluster.region_urls["eu-alps"])
    channel, legs = _leg_stub(cluster)
    with channel:
        for bad in ("not-a-trek", "trek-fenced", str(uuid.uuid4())[:-1]):
            with pytest.raises(grpc.RpcError) as refused:
                legs.PrepareLeg(_prepare(bad, cluster.target, days_ahead=114), timeout=10)
            assert refused.value.code() is Code.INVALID_ARGUMENT, (bad, refused.value.details())
            assert _fences(cluster, bad) == []
    assert snapshot(cluster.region_urls["eu-alps"]) == before


def test_cancel_leg_of_a_committed_trek_is_refused_while_the_coordinator_shows_it_committed(cluster, stub) -> None:
    """Invariant 4 through the API: a committed trek keeps its legs while its charge stands;
    only the coordinator's own CancelTrek (which moves the log to cancelling first) cancels them."""
    from ridgeline.deploy.drills.audit import run_audit

    trek = stub.PlanTrek(plan_request(str(uuid.uuid4()), three_regions(120)), timeout=20)
    assert trek.state == tpb.TREK_STATE_COMMITTED, (trek.reason, [l.detail for l in trek.legs])
    for status in trek.legs:
        channel, legs = _leg_stub(cluster, status.region)
        with channel:
            with pytest.raises(grpc.RpcError) as refused:
                legs.CancelLeg(tpb.LegRef(trek_id=trek.trek_id, leg_index=status.leg_index), timeout=10)
        assert refused.value.code() is Code.FAILED_PRECONDITION, (status.region, refused.value.details())
        assert [(r.state, r.booking) for r in _fences(cluster, trek.trek_id, status.region)] == [("committed", "confirmed")]
    still = stub.GetTrek(tpb.GetTrekRequest(trek_id=trek.trek_id), timeout=10)
    assert still.state == tpb.TREK_STATE_COMMITTED and still.charges and all(c.refunded_cents == 0 for c in still.charges)
    cluster.assert_atomic_and_paid(still)
    report = run_audit(
        cluster.region_urls, coordinator_url=cluster.coordinator_db_url, gateway_url=cluster.gateway_url, gateway_transport=cluster.certs.sre, money_grace_seconds=0
    )
    assert report.passed and {"4 money balances", "5 treks are atomic"} <= {c.invariant for c in report.checks}, [c for c in report.checks if not c.passed]
    # The coordinator's own cancel still goes through: its log says cancelling first.
    stub.CancelTrek(tpb.CancelTrekRequest(trek_id=trek.trek_id, reason="change of plans"), timeout=10)
    final = cluster.wait_final(trek.trek_id)
    assert final.state == tpb.TREK_STATE_CANCELLED and [l.state for l in final.legs] == [tpb.LEG_STATE_CANCELLED] * 3
    cluster.assert_atomic_and_paid(final)


def test_a_prepared_leg_whose_trek_id_the_coordinator_cannot_read_is_aborted_within_its_ttl(cluster, coordinator) -> None:
    """A fence left with a malformed trek id (written before ids were checked): the
    coordinator answers INVALID_ARGUMENT, which the node takes as presumed abort."""
    trek_id = str(uuid.uuid4())
    channel, legs = _leg_stub(cluster)
    with channel:
        legs.PrepareLeg(_prepare(trek_id, cluster.target, days_ahead=116), timeout=10)
    legacy = f"legacy-{trek_id[:8]}"
    with psycopg.connect(libpq_url(cluster.region_urls["eu-alps"]), autocommit=True) as conn:
        conn.execute("UPDATE trek_legs SET trek_id = %s, decision_deadline = now() WHERE trek_id = %s", (legacy, trek_id))
    until = time.monotonic() + 15
    while _fences(cluster, legacy) == [("prepared", "held")] and time.monotonic() < until:
        time.sleep(0.2)
    assert [(r.state, r.booking) for r in _fences(cluster, legacy)] == [("aborted", "released")]
    cluster.assert_inventories()
