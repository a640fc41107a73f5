"""A real gRPC server on loopback that serves every Ridgeline, health and reflection RPC with a
do-nothing servicer behind the real Authenticator and real mutual TLS, for the trust tests."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from ridgeline.trust.certs import CertsDir
from ridgeline.trust.credentials import Transport
from ridgeline.trust.fair_share import FairShare
from ridgeline.trust.server_auth import Authenticator
from ridgeline.v1 import booking_pb2, cluster_pb2, trek_pb2

SERVICE_MODULES = (booking_pb2, cluster_pb2, trek_pb2, health_pb2, reflection_pb2)
CALL_TIMEOUT_SECONDS = 5.0


def methods() -> dict[str, MethodDescriptor]:
    """Every method a Ridgeline server serves, by its route (``/package.Service/Method``)."""
    return {f"/{s.full_name}/{m.name}": m for module in SERVICE_MODULES for s in module.DESCRIPTOR.services_by_name.values() for m in s.methods}


@dataclass
class Served:
    """Routes the servicer ran, in order: a refused call never gets here."""

    routes: list[str] = field(default_factory=list)


def _handler(route: str, method: MethodDescriptor, served: Served) -> grpc.RpcMethodHandler:
    """The method's empty reply (one per request for a bidirectional stream), noting that it ran."""
    request, reply = message_factory.GetMessageClass(method.input_type), message_factory.GetMessageClass(method.output_type)

    def unary(_request: Any, _context: grpc.ServicerContext) -> Any:
        served.routes.append(route)
        return reply()

    def to_stream(_request: Any, _context: grpc.ServicerContext) -> Iterator[Any]:
        served.routes.append(route)
        yield reply()

    def from_stream(requests: Iterator[Any], _context: grpc.ServicerContext) -> Any:
        for _ in requests:
            pass
        served.routes.append(route)
        return reply()

    def stream_to_stream(requests: Iterator[Any], _context: grpc.ServicerContext) -> Iterator[Any]:
        for _ in requests:
            served.routes.append(route)
            yield reply()

    kinds = {
        (False, False): (grpc.unary_unary_rpc_method_handler, unary),
        (False, True): (grpc.unary_stream_rpc_method_handler, to_stream),
        (True, False): (grpc.stream_unary_rpc_method_handler, from_stream),
        (True, True): (grpc.stream_stream_rpc_method_handler, stream_to_stream),
    }
    make, behaviour = kinds[(method.client_streaming, method.server_streaming)]
    return make(behaviour, request_deserializer=request.FromString, response_serializer=reply.SerializeToString)


@contextmanager
def serving(certs: CertsDir, *, fair_share: FairShare | None = None, workers: int = 8) -> Iterator[tuple[str, Served]]:
    """The server's ``127.0.0.1:port`` and what it served, presenting ``certs``' node pair (re-read on change)."""
    served = Served()
    transport = Transport.from_dir(certs.path)
    server = grpc.server(ThreadPoolExecutor(workers), interceptors=[Authenticator(transport.ca_pem, fair_share=fair_share)])
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for route, method in methods().items():
        by_service.setdefault(method.containing_service.full_name, {})[method.name] = _handler(route, method, served)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(name, handlers) for name, handlers in by_service.items()])
    port = transport.bind(server, "127.0.0.1:0")
    assert port > 0, "the test server must bind"
    server.start()
    try:
        yield f"127.0.0.1:{port}", served
    finally:
        server.stop(grace=None)


def call(channel: grpc.Channel, route: str, *, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    """One call of ``route`` with an empty request, whatever its kind; raises grpc.RpcError when refused."""
    method = methods()[route]
    request, reply = message_factory.GetMessageClass(method.input_type), message_factory.GetMessageClass(method.output_type)
    serialize, deserialize = request.SerializeToString, reply.FromString
    kind = (method.client_streaming, method.server_streaming)
    args: dict[str, Any] = {"timeout": CALL_TIMEOUT_SECONDS, "metadata": metadata}
    if kind == (False, False):
        channel.unary_unary(route, request_serializer=serialize, response_deserializer=deserialize)(request(), **args)
    elif kind == (False, True):
        list(channel.unary_stream(route, request_serializer=serialize, response_deserializer=deserialize)(request(), **args))
    elif kind == (True, False):
        channel.stream_unary(route, request_serializer=serialize, response_deserializer=deserialize)(iter([request()]), **args)
    else:
        list(channel.stream_stream(route, request_serializer=serialize, response_deserializer=deserialize)(iter([request()]), **args))


def presented_serial(certs: CertsDir, address: str, principal: str) -> int:
    """The serial of the certificate the server presents in a fresh TLS handshake, seen from a client."""
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.load_cert_chain(str(certs.client_cert(principal)), str(certs.client_key(principal)))
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=CALL_TIMEOUT_SECONDS) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def serial_on_disk(certs: CertsDir) -> int:
    return x509.load_pem_x509_certificate(certs.node_cert.read_bytes()).serial_number
