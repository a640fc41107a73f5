"""A node serves the standard gRPC health and reflection services, and sheds load it cannot take."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import psycopg
from certificates import SessionCerts
from drive import Outcome, night, outcome
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from invariants import bookings_by_id, libpq_url
from sqlalchemy import event

from ridgeline.deploy.cluster.scrape import scrape
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import BOOKING_SERVICE, RegionalNode
from ridgeline.routing.client import BookingClient
from ridgeline.trust.credentials import Transport
from ridgeline.v1.cluster_pb2 import GetClusterInfoRequest
from ridgeline.v1.cluster_pb2_grpc import ClusterServiceStub


def test_health_reports_serving_for_the_node_and_the_booking_service(alps_node: RegionalNode, certs: SessionCerts) -> None:
    with certs.sre.channel(alps_node.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", BOOKING_SERVICE):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_booking_service(alps_node: RegionalNode, certs: SessionCerts) -> None:
    with certs.sre.channel(alps_node.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {service.name for reply in replies for service in reply.list_services_response.service}
    assert {BOOKING_SERVICE, "grpc.health.v1.Health"} <= names


def test_overload_is_refused_with_resource_exhausted_not_queued(alps_db, certs: SessionCerts) -> None:  # noqa: ANN001
    """ARCHITECTURE.md §3: beyond max_concurrent_rpcs a node refuses at once; refusals have no effect."""
    node = RegionalNode(NodeConfig(region="eu-alps", node_id="small", database_url=alps_db.url, workers=2, max_concurrent_rpcs=2, certs_dir=certs.dir))
    node.start()
    try:
        # Another session locks the night, so the calls that get in stay in flight.
        with psycopg.connect(libpq_url(alps_db.url)) as blocker:
            blocker.execute("SELECT 1 FROM inventory WHERE resource_id = 'argentiere-dorm' AND night = %s FOR UPDATE", (night(25),))
            with ThreadPoolExecutor(8) as pool:
                calls = [pool.submit(_hold_one, node.address, certs.desk, index) for index in range(8)]
                time.sleep(2.0)
                blocker.rollback()
                outcomes = [call.result(timeout=30) for call in calls]
    finally:
        node.stop(grace_seconds=1)
    refused = [o for o in outcomes if o.code is grpc.StatusCode.RESOURCE_EXHAUSTED]
    placed = [o for o in outcomes if o.ok]
    assert refused and placed, [o.code for o in outcomes]
    assert len(refused) + len(placed) == len(outcomes), [o.code for o in outcomes]
    assert len(bookings_by_id(alps_db.url)) == len(placed)


def _hold_one(address: str, transport: Transport, index: int) -> Outcome:
    with BookingClient(address, transport=transport, timeout_seconds=20, attempts_max=1) as client:
        return outcome(lambda: client.place_hold("argentiere", "argentiere-dorm", night(25), night(26), 1, f"guest-{index}"))


def test_unknown_ids_do_not_turn_every_request_into_catalog_queries(alps_db) -> None:  # noqa: ANN001
    """A caller sending made-up basecamp ids gets NOT_FOUND, and the catalog is re-read at most
    once per reload interval, not once per request."""
    from ridgeline.regional.booking.catalog import CatalogView
    from ridgeline.regional.storage.db import make_engine

    engine = make_engine(alps_db.url, pool_size=1)
    reads: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: reads.append(args[2]))
    try:
        catalog = CatalogView(engine, "eu-alps", reload_interval_seconds=60)
        reads.clear()
        for index in range(50):
            assert catalog.basecamp(f"no-such-camp-{index}") is None
        assert catalog.basecamp("argentiere") is not None
        assert reads == [], f"{len(reads)} catalog queries for 50 unknown ids"
    finally:
        engine.dispose()


def test_the_node_serves_prometheus_metrics_and_cluster_info_says_where(alps_node, alps_client, certs) -> None:
    alps_client.place_hold("argentiere", "argentiere-dorm", night(25), night(26), 1, "metrics-guest")
    outcome(lambda: alps_client.place_hold("argentiere", "argentiere-dorm", night(25), night(26), 999, "too-many"))
    with certs.sre.channel(alps_node.address) as channel:
        info = ClusterServiceStub(channel).GetClusterInfo(GetClusterInfoRequest(), timeout=10)
    assert [m.metrics_address for m in info.members] == [alps_node.metrics_address]
    text = httpx.get(f"http://{alps_node.metrics_address}/metrics", timeout=10).text
    assert 'ridgeline_rpc_duration_seconds_count{code="OK",method="PlaceHold"}' in text
    assert 'ridgeline_rpc_duration_seconds_count{code="INVALID_ARGUMENT",method="PlaceHold"}' in text
    assert "ridgeline_leases_held 4.0" in text
    figures = scrape(alps_node.metrics_address)
    assert figures is not None and figures.rpcs >= 2 and figures.errors >= 1 and figures.hold_p99_seconds is not None
    # An address that is not a Prometheus endpoint (here: the gRPC port) shows blank in status, never a traceback.
    assert scrape(alps_node.address, timeout_seconds=2) is None
