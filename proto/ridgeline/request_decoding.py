"""Requests that do not decode are the caller's error: INVALID_ARGUMENT, never INTERNAL.

grpcio answers a request whose bytes do not parse as the RPC's message with INTERNAL
("Exception deserializing request!"), the code Ridgeline keeps for its own bugs, so an
alert on INTERNAL would fire on any client's garbage. :class:`DecodeGuard` wraps every
unary method's deserializer: bytes that do not parse become an :class:`_Undecodable`
marker, and the behaviour answers it with INVALID_ARGUMENT before the servicer (or any
SQL) runs. It lives in the root package because every server (regional nodes and the
trek coordinator) carries the same contracts and the same rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

__all__ = ["DecodeGuard"]


class _Undecodable:
    """Stands in for the request of a call whose bytes did not parse."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class DecodeGuard(grpc.ServerInterceptor):
    """Answers INVALID_ARGUMENT to a unary call whose request bytes are not its message."""

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        method = details.method
        parse = handler.request_deserializer
        behaviour = handler.unary_unary

        def deserialize(data: bytes) -> Any:
            try:
                return parse(data)
            except (DecodeError, ValueError, TypeError) as error:  # what protobuf raises on bad bytes
                return _Undecodable(type(error).__name__)

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request is not a valid {method.rsplit('/', 1)[-1]} message ({request.reason}); "
                    "send the message this RPC's .proto defines",
                )
            return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=deserialize, response_serializer=handler.response_serializer
        )
