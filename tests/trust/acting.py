"""Calls to an in-process node as a chosen identity, for the scoped rules and the actor tests.

Tests only: a node built inside :func:`acting_node` serves each call as the identity its
``x-test-identity`` metadata names (``role:principal`` or ``role:principal:scope,scope``),
through a small interceptor innermost on the node's server, exactly where the real
Authenticator installs the identity it verified (``ridgeline.trust.identity.acting_as``).
Calls without the header are served as the server found them (insecure: anonymous).
No production code reads this header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.trust.identity import Identity, Role, acting_as
from ridgeline.v1 import booking_pb2_grpc as pb_grpc

HEADER = "x-test-identity"


def as_identity(identity: Identity) -> tuple[tuple[str, str], ...]:
    """Call metadata that makes the test node serve the call as ``identity``."""
    scope = ",".join(sorted(identity.scope))
    return ((HEADER, f"{identity.role.value}:{identity.principal}" + (f":{scope}" if scope else "")),)


def _identity(metadata: Any) -> Identity | None:
    for key, value in metadata or ():
        if key == HEADER:
            role, principal, *scope = value.split(":")
            return Identity(principal, Role(role), frozenset(scope[0].split(",")) if scope else frozenset())
    return None


class _ActAs(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: grpc.HandlerCallDetails):  # noqa: ANN201
        handler = continuation(details)
        identity = _identity(details.invocation_metadata)
        if handler is None or identity is None or handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary

        def run(request: Any, context: grpc.ServicerContext) -> Any:
            with acting_as(identity):
                return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(run, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)


@contextmanager
def acting_node(config: NodeConfig) -> Iterator[RegionalNode]:
    """A started node whose calls run as the identity their metadata names; stopped on leaving."""
    real = grpc.server

    def server(*args: Any, interceptors: Any = (), **kwargs: Any) -> grpc.Server:
        return real(*args, interceptors=[*interceptors, _ActAs()], **kwargs)

    grpc.server = server  # only while the node builds its server, in this thread
    try:
        node = RegionalNode(config)
    finally:
        grpc.server = real
    node.start()
    try:
        yield node
    finally:
        node.stop(grace_seconds=1)


@contextmanager
def stub_to(node: RegionalNode) -> Iterator[pb_grpc.BookingServiceStub]:
    with grpc.insecure_channel(node.address) as channel:
        yield pb_grpc.BookingServiceStub(channel)
