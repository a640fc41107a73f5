"""Bytes that are not the RPC's request message get INVALID_ARGUMENT, on every RPC, and write nothing.

Without the decode guard grpcio answers INTERNAL ("Exception deserializing request!"),
the code kept for Ridgeline's own bugs. Every unary method of every service a node
serves (booking, cluster, trek legs, health) is called with raw bytes that do not
parse; the region database must not move. The coordinator's TrekService gets the same
treatment in test_treks.py, beside its real cluster.
"""

from __future__ import annotations

import grpc
import pytest
from certificates import SessionCerts
from grpc_health.v1 import health_pb2
from invariants import query, snapshot

from ridgeline.regional.node import RegionalNode
from ridgeline.v1 import booking_pb2, cluster_pb2, trek_pb2

#: Not a protobuf message of any type: a field tag whose varint never ends.
UNDECODABLE = b"\xff\xff\xff"

_NODE_SERVICES = [
    booking_pb2.DESCRIPTOR.services_by_name["BookingService"],
    cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"],
    trek_pb2.DESCRIPTOR.services_by_name["TrekLegService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
]
NODE_METHODS = [
    f"/{service.full_name}/{method.name}"
    for service in _NODE_SERVICES
    for method in service.methods
    if not method.client_streaming and not method.server_streaming
]


def call_raw(target: str, method: str, payload: bytes, certs: SessionCerts) -> grpc.RpcError:
    """Sends ``payload`` as the request of ``method``, as a role it admits (so the call gets past
    authorization to the bytes), and returns the error it must end with."""
    with certs.admitted_to(method).channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as raised:
            call(payload, timeout=10)
    return raised.value


def other_rows(url: str) -> tuple[int, int]:
    """Rows the snapshot does not count: settlement rows and trek leg fences."""
    row = query(url, "SELECT (SELECT count(*) FROM settlements) AS settlements, (SELECT count(*) FROM trek_legs) AS legs")[0]
    return tuple(row)


def test_the_node_lists_every_unary_method_it_serves() -> None:
    # A guard against this test silently covering nothing after a contract change.
    assert "/ridgeline.v1.BookingService/PlaceHold" in NODE_METHODS
    assert "/ridgeline.v1.TrekLegService/PrepareLeg" in NODE_METHODS
    assert len(NODE_METHODS) >= 15


@pytest.mark.parametrize("method", NODE_METHODS)
def test_undecodable_bytes_on_a_node_are_invalid_argument_and_write_nothing(alps_node: RegionalNode, alps_db, certs: SessionCerts, method: str) -> None:
    before, before_other = snapshot(alps_db.url), other_rows(alps_db.url)
    error = call_raw(alps_node.address, method, UNDECODABLE, certs)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, error.code(), error.details())
    assert method.rsplit("/", 1)[-1] in error.details()
    assert "Traceback" not in error.details()
    assert snapshot(alps_db.url) == before
    assert other_rows(alps_db.url) == before_other


def test_a_well_formed_request_still_passes_the_guard(alps_node: RegionalNode, certs: SessionCerts) -> None:
    with certs.desk.channel(alps_node.address) as channel:
        call = channel.unary_unary("/ridgeline.v1.BookingService/ListBasecamps", request_serializer=None, response_deserializer=None)
        reply = booking_pb2.ListBasecampsResponse.FromString(call(booking_pb2.ListBasecampsRequest().SerializeToString(), timeout=10))
    assert reply.basecamps
