"""A node serves the standard gRPC health and reflection services beside BookingService."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ridgeline.regional.node import BOOKING_SERVICE, RegionalNode


def test_health_reports_serving_for_the_node_and_the_booking_service(alps_node: RegionalNode) -> None:
    with grpc.insecure_channel(alps_node.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", BOOKING_SERVICE):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_booking_service(alps_node: RegionalNode) -> None:
    with grpc.insecure_channel(alps_node.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {service.name for reply in replies for service in reply.list_services_response.service}
    assert {BOOKING_SERVICE, "grpc.health.v1.Health"} <= names
