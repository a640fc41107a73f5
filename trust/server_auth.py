"""The server side of the trust boundary: who is calling, may they, and at what rate.

One interceptor for every Ridgeline gRPC server. Before the servicer runs it takes the
caller's identity (a bearer token in the call's metadata, else the verified client
certificate), asks the authorization table (:mod:`.policy`), charges the principal's
fair share (:mod:`.fair_share`), and serves the call as that identity
(:func:`.identity.current`). A refusal ends the call there: UNAUTHENTICATED,
PERMISSION_DENIED or RESOURCE_EXHAUSTED with a retry delay, a readable message, nothing
written. Refusals are counted by role and code, never by principal (bounded labels).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Counter

from ridgeline.trust import policy, tokens
from ridgeline.trust.certs import CertificateError, identity_of
from ridgeline.trust.fair_share import FairShare
from ridgeline.trust.identity import Identity, acting_as

__all__ = ["Authenticator", "REFUSALS"]

_log = logging.getLogger(__name__)

REFUSALS = Counter(
    "ridgeline_auth_refusals_total",
    "Calls refused before they ran, by the caller's role ('none' when unidentified) and the status code.",
    ["role", "code"],
)
_BEARER = "bearer "
_CERT_CACHE_MAX = 1024


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, role: str, retry_after_seconds: float = 0.0) -> None:
        super().__init__(message)
        self.code, self.role, self.retry_after_seconds = code, role, retry_after_seconds


class Authenticator(grpc.ServerInterceptor):
    """Identifies, authorizes and rate-limits every call to the server it is installed on."""

    def __init__(self, ca_pem: Callable[[], bytes], *, fair_share: FairShare | None = None) -> None:
        self._ca_pem = ca_pem  # read per token check: a rotated CA file is picked up too
        self._fair_share = fair_share if fair_share is not None else FairShare()
        self._identities: dict[bytes, Identity] = {}
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        route = details.method
        wrapped = self._handlers.get(route)
        if wrapped is not None:
            return wrapped
        handler = continuation(details)
        if handler is None:
            return None

        def admit(context: grpc.ServicerContext) -> Identity | None:
            try:
                return self._admit(route, context.invocation_metadata(), context)
            except _Refused as refusal:
                REFUSALS.labels(refusal.role, refusal.code.name).inc()
                if refusal.retry_after_seconds > 0:
                    context.abort_with_status(rpc_status.to_status(_retry_status(refusal)))
                context.abort(refusal.code, str(refusal))
            raise AssertionError("unreachable: abort raises")

        # One wrapped handler per method, built on its first call: the hold path pays for
        # the checks, not for new closures on every call (the handler below is per method).
        wrapped = self._handlers[route] = _wrap(handler, admit)
        return wrapped

    def _admit(self, route: str, metadata: Any, context: grpc.ServicerContext) -> Identity | None:
        identity = self._identify(metadata, context)
        role = identity.role.value if identity is not None else "none"
        try:
            rule = policy.authorize(identity, route)
        except policy.Unauthenticated as error:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, str(error), role) from None
        except policy.PermissionDenied as error:
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED, str(error), role) from None
        if identity is not None and not rule.public:
            wait = self._fair_share.admit(identity)
            if wait > 0:
                raise _Refused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{identity.actor} is over its fair share of calls; retry in {wait:.2f} s",
                    role,
                    retry_after_seconds=wait,
                )
        return identity

    def _identify(self, metadata: Any, context: grpc.ServicerContext) -> Identity | None:
        for key, value in metadata or ():
            if key == tokens.METADATA_KEY:
                text = value.decode() if isinstance(value, bytes) else value
                if not text.lower().startswith(_BEARER):
                    raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "the authorization metadata must be 'Bearer <token>'", "none")
                try:
                    return tokens.verify(self._ca_pem(), text[len(_BEARER) :].strip())
                except tokens.TokenError as error:
                    raise _Refused(grpc.StatusCode.UNAUTHENTICATED, str(error), "none") from None
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            return None
        pem = pems[0]
        identity = self._identities.get(pem)
        if identity is None:
            try:
                identity = identity_of(pem)
            except CertificateError as error:
                raise _Refused(grpc.StatusCode.UNAUTHENTICATED, str(error), "none") from None
            if len(self._identities) >= _CERT_CACHE_MAX:
                self._identities.clear()
            self._identities[pem] = identity
        return identity


def _retry_status(refusal: _Refused) -> status_pb2.Status:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(refusal.retry_after_seconds * 1e9))
    detail = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=str(refusal))
    detail.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return detail


def _wrap(handler: grpc.RpcMethodHandler, admit: Callable[[grpc.ServicerContext], Identity | None]) -> grpc.RpcMethodHandler:
    """The same handler, each behaviour run as the admitted identity."""

    def unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            with acting_as(admit(context)):
                return behaviour(request, context)

        return run

    def streaming(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            with acting_as(admit(context)):
                yield from behaviour(request, context)

        return run

    kinds = {
        "unary_unary": (grpc.unary_unary_rpc_method_handler, unary),
        "unary_stream": (grpc.unary_stream_rpc_method_handler, streaming),
        "stream_unary": (grpc.stream_unary_rpc_method_handler, unary),
        "stream_stream": (grpc.stream_stream_rpc_method_handler, streaming),
    }
    for attribute, (make, wrap) in kinds.items():
        behaviour = getattr(handler, attribute)
        if behaviour is not None:
            return make(wrap(behaviour), request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    raise AssertionError(f"a method handler with no behaviour: {handler!r}")
