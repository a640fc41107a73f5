"""Workflow versions as data: every booking records its version when it is created, the
rollout (cluster state in the region database) decides what new Books get, per request
key, and the rollout refuses what would strand a booking. A real node in this process
over mutual TLS; every verdict is read back from SQL."""

from __future__ import annotations

import grpc
import psycopg
import pytest
from certificates import ROLE_PRINCIPALS, SessionCerts
from drive import night
from invariants import libpq_url, query
from versioning import rollout, versions_of, workflows

from ridgeline.regional.workflows.versions import rollout_bucket
from ridgeline.routing.client import BookingClient
from ridgeline.trust.identity import Role
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import cluster_pb2 as cpb
from ridgeline.v1 import cluster_pb2_grpc as cpb_grpc

DESK_ACTOR = f"desk:{ROLE_PRINCIPALS[Role.DESK]}"


def _book(client: BookingClient, key: str, days_ahead: int = 40) -> pb.Booking:
    return client.book("argentiere", "argentiere-dorm", night(days_ahead), night(days_ahead + 1), 1, f"guest-{key}", hold_ttl_seconds=600, idempotency_key=key)


def test_every_booking_records_its_version_and_reads_and_filters_show_it(alps_client: BookingClient, alps_db) -> None:
    booked = _book(alps_client, "k-book")
    held = alps_client.place_hold("argentiere", "argentiere-dorm", night(41), night(42), 1, "plain")
    assert (booked.workflow, held.workflow) == ("settle@1", "hold@1"), "the default rollout: settle@1 for a Book"
    assert workflows(alps_db.url, [booked.booking_id, held.booking_id]) == {booked.booking_id: "settle@1", held.booking_id: "hold@1"}
    assert _book(alps_client, "k-book").workflow == "settle@1", "a repeat answers the first result, version included"
    assert alps_client.get_booking(booked.booking_id).workflow == "settle@1"

    listed = alps_client.list_bookings(pb.ListBookingsRequest(workflow="hold@1")).bookings
    assert [b.booking_id for b in listed] == [held.booking_id]
    for bad, code in (("settle", grpc.StatusCode.INVALID_ARGUMENT), ("settle@9", grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as refused:
            alps_client.list_bookings(pb.ListBookingsRequest(workflow=bad))
        assert refused.value.code() is code, bad


def test_the_database_refuses_a_booking_without_a_registered_version(alps_db) -> None:
    """The version is never NULL and always a registered one (a hand-written row is hold@1)."""
    row = "INSERT INTO bookings (booking_id, basecamp_id, resource_id, first_night, end_night, party_size, customer_id, state, version," \
          " total_price_cents, currency, created_at, updated_at, expires_at, reserved_nights, created_by{col})" \
          " VALUES (gen_random_uuid(), 'argentiere', 'argentiere-dorm', current_date + 50, current_date + 51, 1, 'x', 'released', 1," \
          " 0, 'EUR', now(), now(), now(), 1, 'desk:x'{val})"
    for col, val, error in ((", workflow", ", NULL", psycopg.errors.NotNullViolation), (", workflow", ", 'settle@9'", psycopg.errors.ForeignKeyViolation)):
        with psycopg.connect(libpq_url(alps_db.url)) as conn, pytest.raises(error):
            conn.execute(row.format(col=col, val=val))


def test_a_rollout_gives_new_books_the_version_their_key_falls_in_and_a_retry_the_same(
    alps_node, alps_client: BookingClient, alps_db, certs: SessionCerts
) -> None:
    before = _book(alps_client, "before-rollout")
    reply = rollout(certs, alps_node.address, "settle@2", 50)
    assert [(r.target, r.previous, r.percent) for r in reply.rollouts] == [("settle@2", "settle@1", 50)]
    keys = [f"ramp-{i}" for i in range(30)]
    booked = {key: _book(alps_client, key, 60 + i) for i, key in enumerate(keys)}
    for key, b in booked.items():
        expected = "settle@2" if rollout_bucket(f"{DESK_ACTOR}/{key}") < 50 else "settle@1"
        assert b.workflow == expected == workflows(alps_db.url, [b.booking_id])[b.booking_id], key
    assert {b.workflow for b in booked.values()} == {"settle@1", "settle@2"}, "half the buckets: both versions appear"
    for key, b in booked.items():
        again = _book(alps_client, key, 60 + keys.index(key))
        assert (again.booking_id, again.workflow) == (b.booking_id, b.workflow), "a retry gets its first booking and version"

    rollout(certs, alps_node.address, "settle@2", 100)
    assert {_book(alps_client, f"full-{i}", 100 + i).workflow for i in range(5)} == {"settle@2"}
    back = rollout(certs, alps_node.address, "settle", rollback=True)
    assert [(r.target, r.percent) for r in back.rollouts] == [("settle@1", 100)]
    assert {_book(alps_client, f"back-{i}", 110 + i).workflow for i in range(5)} == {"settle@1"}
    recorded = workflows(alps_db.url, [b.booking_id for b in booked.values()] + [before.booking_id])
    assert recorded == {**{b.booking_id: b.workflow for b in booked.values()}, before.booking_id: "settle@1"}, "no rollout rewrites a booking's version"
    counts = {v.version: v.in_flight for v in versions_of(certs, alps_node.address).versions}
    assert counts["settle@2"] == sum(b.workflow == "settle@2" for b in booked.values()) + 5, counts


def test_rollout_refusals_keep_every_booking_runnable(alps_node, alps_client: BookingClient, alps_db, certs: SessionCerts) -> None:
    address = alps_node.address

    def refused(version: str, percent: int = 0, *, rollback: bool = False, retire: bool = False) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as error, certs.sre.channel(address) as channel:
            stub = cpb_grpc.ClusterServiceStub(channel)
            if retire:
                stub.RetireWorkflowVersion(cpb.RetireWorkflowVersionRequest(version=version), timeout=10)
            else:
                stub.SetRollout(cpb.SetRolloutRequest(version=version, percent=percent, rollback=rollback), timeout=10)
        return error.value.code()

    failed = grpc.StatusCode.FAILED_PRECONDITION
    assert refused("settle", rollback=True) is failed, "nothing to roll back to"
    assert refused("settle@2", 0) is grpc.StatusCode.INVALID_ARGUMENT
    assert refused("settle@7", 10) is grpc.StatusCode.NOT_FOUND
    assert refused("hold@1", retire=True) is failed, "a version that is not rolled out is its workflow's only one"
    rollout(certs, address, "settle@2", 10)
    assert refused("settle@1", 50) is failed, "a partial ramp must finish or roll back first"
    assert refused("settle@2", retire=True) is failed, "new bookings can get it"
    rollout(certs, address, "settle@2", 100)
    in_flight = _book(alps_client, "in-flight")
    assert in_flight.workflow == "settle@2"
    rollout(certs, address, "settle@2", rollback=True)
    assert refused("settle@2", retire=True) is failed, "a booking in flight runs it"
    assert query(alps_db.url, "SELECT count(retired_at) AS n FROM workflow_versions")[0].n == 0

    listed = versions_of(certs, address)
    settle_2 = next(v for v in listed.versions if v.version == "settle@2")
    assert (settle_2.in_flight, list(settle_2.nodes), settle_2.retired) == (1, ["test-node"], False)
    assert [sorted(m.workflows) for m in listed.members] == [["hold@1", "settle@1", "settle@2", "trek@1"]]
    with pytest.raises(grpc.RpcError) as desk, certs.desk.channel(address) as channel:
        cpb_grpc.ClusterServiceStub(channel).SetRollout(cpb.SetRolloutRequest(version="settle@2", percent=100), timeout=10)
    assert desk.value.code() is grpc.StatusCode.PERMISSION_DENIED, "rollout needs the sre role"


def test_a_version_nothing_uses_retires_and_then_takes_no_new_bookings(alps_node, alps_db, certs: SessionCerts) -> None:
    with certs.sre.channel(alps_node.address) as channel:
        reply = cpb_grpc.ClusterServiceStub(channel).RetireWorkflowVersion(cpb.RetireWorkflowVersionRequest(version="settle@2"), timeout=10)
    assert next(v for v in reply.versions if v.version == "settle@2").retired
    assert query(alps_db.url, "SELECT retired_by FROM workflow_versions WHERE version = 'settle@2'")[0].retired_by == "sre:sre"
    with pytest.raises(grpc.RpcError) as refused:
        rollout(certs, alps_node.address, "settle@2", 10)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "retired" in (refused.value.details() or "")
