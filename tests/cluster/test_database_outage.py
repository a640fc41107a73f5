"""A region database that stops and comes back: calls answer UNAVAILABLE meanwhile, never
INTERNAL, nothing acknowledged is lost, and the node serves again without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from certificates import SessionCerts
from drive import night, outcome

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.deploy.run.region import prepare_region_database
from ridgeline.regional.booking.catalog import load_catalog
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing.client import BookingClient
from ridgeline.v1 import booking_pb2 as pb


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[tuple[PostgresServer, str]]:
    """A region database on its own server, so that stopping it disturbs no other test."""
    server = PostgresServer(tmp_path / "outage-pg")
    server.start()
    try:
        url = server.create_database("outage")
        prepare_region_database(url, "eu-alps", load_catalog(), advance_booking_days=NodeConfig.advance_booking_days)
        yield server, url
    finally:
        server.stop()


def _hold(client: BookingClient, key: str) -> pb.Booking:
    return client.place_hold("argentiere", "argentiere-dorm", night(12), night(13), 1, "outage-guest", idempotency_key=key)


def test_database_outage_answers_unavailable_and_recovers_without_losing_holds(own_database, certs: SessionCerts) -> None:  # noqa: ANN001
    server, url = own_database
    node = RegionalNode(NodeConfig(region="eu-alps", node_id="outage", database_url=url, certs_dir=certs.dir))
    node.start()
    try:
        with BookingClient(node.address, transport=certs.desk, timeout_seconds=10, attempts_max=1) as client:
            before = _hold(client, "before-outage")

            server.stop()
            during = [
                outcome(lambda: _hold(client, "during-outage")),
                outcome(lambda: client.get_booking(before.booking_id)),
                outcome(lambda: client.confirm(before.booking_id, idempotency_key="confirm-during")),
                outcome(lambda: client.availability("argentiere", night(12), night(13))),
            ]
            assert [o.code for o in during] == [grpc.StatusCode.UNAVAILABLE] * len(during), [(o.code, o.details) for o in during]
            assert all("database unreachable" in o.details for o in during), [o.details for o in during]

            server.start()
            assert client.get_booking(before.booking_id) == before
            retried = _hold(client, "during-outage")
            assert retried.state == pb.BOOKING_STATE_HELD
            assert client.confirm(before.booking_id, idempotency_key="confirm-during").state == pb.BOOKING_STATE_CONFIRMED
    finally:
        node.stop(grace_seconds=1)
